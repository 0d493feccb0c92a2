"""The Kubernetes API: the students' pods on this node, listed once, then watched.

In the background, as client-go's reflector does: list the pods (``GET /api/v1[/namespaces/
NS]/pods?fieldSelector=spec.nodeName=NODE&labelSelector=component=singleuser-server``, in
pages; every namespace only with ``user_namespaces``, of which only the hub's count:
``kubepods.hub_namespace``), then watch from the list's resourceVersion; when the server
ends a watch (``timeoutSeconds``), watch again from the last version seen; on ``410 Gone``
list again a second later; on any other failure forget every pod (nobody is a student while
the API cannot say who is), back off (1 s doubling to 30 s) and list again. The pods are in a
``kubepods.PodDirectory`` that the attribution rules read (``owners.PodOwners``);
``poll()`` only reports the state, so the source's health series say whether the API is
followed.

Bounded: a list page at most ``MAX_PAGE_BYTES``, a watch event (one line) at most
``MAX_EVENT_BYTES``, at most ``MAX_PODS`` pods; past a cap the answer is refused, the
source fails with one line saying so, and it lists again after the backoff. Each list
request has a deadline as a whole; a watch that sends nothing for longer than it was
asked to last is dropped. The token is read from its file for every request: the kubelet
rotates the projected service-account token (client-go re-reads it every minute).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from dlcourse_secretfile import SecretFileError, read_secret

from ..backoff import Backoff
from ..model import StudentPods
from ..untrusted import (
    IDENTITY,
    TooLarge,
    Unreadable,
    decoded_chunks,
    log_text,
    read_capped,
    redact_url,
)
from .base import Source
from .kubepods import (
    LABEL_SELECTOR,
    KubernetesError,
    KubernetesResponseError,
    Pod,
    PodDirectory,
    ResourceVersionGone,
    WatchEvent,
    hub_namespace,
    parse_event,
    parse_pod_list,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 250
MAX_PAGES = 20
MAX_PODS = 5_000  # a node runs at most 110 pods by default
MAX_PAGE_BYTES = 8 * 1024 * 1024  # a pod is 5-20 KB of JSON
MAX_EVENT_BYTES = 2 * 1024 * 1024  # etcd refuses objects over 1.5 MiB
REQUEST_SECONDS = 10.0
WATCH_SECONDS = 300  # asked of the server; client-go asks 5-10 minutes
FIRST_RETRY_SECONDS = 1.0
LAST_RETRY_SECONDS = 30.0


class KubernetesUnreachable(KubernetesError):
    """No HTTP answer: refused, reset, timed out."""


class KubernetesAuthError(KubernetesError):
    """No token, or the API refused it (401) or the request (403)."""


def read_token(path: Path) -> str:
    try:
        return read_secret(path)
    except SecretFileError as exc:  # a FIFO, /dev/zero, over 4 KiB, empty...
        raise KubernetesAuthError(f"cannot read the token file {exc}") from exc


async def bounded_lines(response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed body; KubernetesResponseError past limit bytes."""
    pending = b""
    try:
        async for chunk in decoded_chunks(response):
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > limit or any(len(line) > limit for line in lines):
                raise KubernetesResponseError(
                    f"the pod watch sent an event over {limit} bytes: refused"
                )
            for line in lines:
                if line.strip():
                    yield line
    except Unreadable as exc:
        raise KubernetesResponseError(f"the pod watch: {exc}") from exc
    if pending.strip():
        yield pending


class KubernetesClient:
    """Lists and watches the singleuser pods of one node."""

    def __init__(
        self,
        api_url: str,
        node: str,
        namespace: str,
        token_file: Path,
        ca_file: Path,
        user_namespaces: bool = False,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.node = node
        self.namespace = namespace
        self.user_namespaces = user_namespaces
        self.token_file = token_file
        self.ca_file = ca_file
        self.watch_seconds = watch_seconds
        where = "" if user_namespaces else f"/namespaces/{namespace}"
        self.pods_url = f"{self.api_url}/api/v1{where}/pods"
        self.selectors = {"fieldSelector": f"spec.nodeName={node}", "labelSelector": LABEL_SELECTOR}

    def connect(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self.api_url.startswith("https:"):
            try:
                verify = ssl.create_default_context(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise KubernetesError(f"cannot read the CA bundle {self.ca_file}: {exc}") from exc
        timeout = httpx.Timeout(REQUEST_SECONDS, read=self.watch_seconds + REQUEST_SECONDS)
        # The API server compresses answers over 128 KiB for clients that accept gzip
        # (APIResponseCompression); asked for identity, it does not.
        return httpx.AsyncClient(verify=verify, timeout=timeout, headers=IDENTITY)

    def student(self, pod: Pod) -> str | None:
        """The student a pod names, if the hub made it (a pod in another namespace may
        carry the same labels)."""
        believed = hub_namespace(pod.namespace, self.namespace, self.user_namespaces)
        return pod.student if believed else None

    async def list_pods(self, http: httpx.AsyncClient) -> tuple[StudentPods, str]:
        """Every student pod on the node, and the resourceVersion to watch from."""
        students: dict[str, str] = {}
        params: dict[str, Any] = {**self.selectors, "limit": PAGE_SIZE}
        seen = 0
        for _ in range(MAX_PAGES):
            page = parse_pod_list(await self._get_page(http, params))
            seen += len(page.pods)
            if seen > MAX_PODS:
                raise KubernetesResponseError(f"more than {MAX_PODS} pods on the node: refused")
            students.update(
                (pod.uid, student) for pod in page.pods if (student := self.student(pod))
            )
            if not page.continue_token:
                return StudentPods(students), page.resource_version
            params["continue"] = page.continue_token
        raise KubernetesResponseError(f"the pod list has more than {MAX_PAGES} pages: refused")

    async def _get_page(self, http: httpx.AsyncClient, params: dict[str, Any]) -> bytes:
        async def get() -> bytes:
            async with self._stream(http, params) as response:
                try:
                    return await read_capped(response, MAX_PAGE_BYTES)
                except TooLarge as exc:
                    raise KubernetesResponseError(
                        f"the pod list sent a page over {MAX_PAGE_BYTES} bytes: refused"
                    ) from exc
                except Unreadable as exc:
                    raise KubernetesResponseError(f"the pod list: {exc}") from exc

        try:  # a deadline for the whole request: an API that trickles bytes cannot hold it
            return await asyncio.wait_for(get(), REQUEST_SECONDS)
        except asyncio.TimeoutError as exc:
            raise KubernetesUnreachable(
                f"the Kubernetes API {redact_url(self.api_url)} did not list the pods "
                f"within {REQUEST_SECONDS:g} s"
            ) from exc

    async def watch(self, http: httpx.AsyncClient, version: str) -> AsyncIterator[WatchEvent]:
        params = {
            **self.selectors,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_seconds),
        }
        async with self._stream(http, params) as response:
            async for line in bounded_lines(response, MAX_EVENT_BYTES):
                yield parse_event(line)

    @asynccontextmanager
    async def _stream(
        self, http: httpx.AsyncClient, params: dict[str, Any]
    ) -> AsyncIterator[httpx.Response]:
        """GET the pods; every failure, while connecting or later while the body streams, is
        a KubernetesError with one stable line."""
        headers = {"Authorization": f"Bearer {read_token(self.token_file)}"}
        try:
            async with http.stream("GET", self.pods_url, params=params, headers=headers) as answer:
                check_status(answer.status_code)
                yield answer
        except httpx.TransportError as exc:  # timeouts included
            log.debug("Kubernetes API request failed: %s", log_text(repr(exc)))
            raise KubernetesUnreachable(
                f"the Kubernetes API {redact_url(self.api_url)} is unreachable"
            ) from exc


def check_status(status: int) -> None:
    if status < 400:
        return
    if status == 410:
        raise ResourceVersionGone("the pod watch's resourceVersion expired (410 Gone)")
    if status == 401:
        raise KubernetesAuthError(
            "the Kubernetes API refused the token (401): check --kubernetes.token-file"
        )
    if status == 403:
        raise KubernetesAuthError(
            "the Kubernetes API forbids listing or watching pods (403): check the service "
            "account's Role"
        )
    raise KubernetesError(f"the Kubernetes API answered HTTP {status} to the pod list")


class KubernetesSource(Source):
    """Follows the node's student pods in a background task; ``poll`` says how that goes."""

    name = "kubernetes"

    def __init__(self, client: KubernetesClient, pods: PodDirectory, interval: float = 5.0):
        self.client = client
        self.pods = pods
        self.interval = interval
        self.backoff = Backoff(FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS)
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = None

    async def poll(self) -> StudentPods:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="kubernetes-pods")
        pods = self.pods.current
        if pods is None:
            raise KubernetesError(self._error or "the node's pods are not listed yet")
        return pods

    async def _follow(self) -> None:
        while True:
            try:
                async with self.client.connect() as http:
                    await self._list_and_watch(http)
            except ResourceVersionGone:
                log.info("the pod watch's resourceVersion expired (410 Gone): listing again")
                await asyncio.sleep(
                    FIRST_RETRY_SECONDS
                )  # an API that always says 410 is not hammered
                continue
            except KubernetesError as exc:
                self._failed(str(exc))
            except Exception as exc:  # a bug here must not end the following for good
                log.exception("following the pods failed")
                self._failed(f"{type(exc).__name__}: {log_text(exc)}")
            await asyncio.sleep(self.backoff.remaining())

    async def _list_and_watch(self, http: httpx.AsyncClient) -> None:
        pods, version = await self.client.list_pods(http)
        self.pods.current, self._error = pods, None
        self.backoff.succeeded()
        while True:  # the server ends each watch after WATCH_SECONDS
            began = time.monotonic()
            async for event in self.client.watch(http, version):
                self._apply(event)
                version = event.resource_version
            if time.monotonic() - began < FIRST_RETRY_SECONDS:  # one that ends at once
                await asyncio.sleep(FIRST_RETRY_SECONDS)

    def _apply(self, event: WatchEvent) -> None:
        if event.pod is None:  # a bookmark: only the version moves on
            return
        students = dict(self.pods.current.students if self.pods.current else {})
        uid, student = event.pod.uid, self.client.student(event.pod)
        if event.kind == "DELETED" or student is None:
            if students.pop(uid, None) is None:
                return
        elif uid not in students and len(students) >= MAX_PODS:
            log.warning("more than %d student pods on the node: pod %s left out", MAX_PODS, uid)
            return
        else:
            students[uid] = student
        self.pods.current = StudentPods(students)

    def _failed(self, error: str) -> None:
        self.pods.current, self._error = None, error
        self.backoff.failed()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
