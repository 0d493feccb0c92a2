"""A small fake Kubernetes API server on loopback: pods, listed and watched, over real HTTP.

It serves what the exporter asks of a real one, in the API's JSON shapes (kubernetes/website
``content/en/docs/reference/using-api/api-concepts.md``): ``GET /api/v1[/namespaces/NS]/pods``
with ``fieldSelector=spec.nodeName=X`` and ``labelSelector=k=v``, as a ``PodList`` in pages
(``limit``/``continue``) with a ``resourceVersion``, or with ``watch=1`` as a chunked stream
of newline-delimited ``{"type", "object"}`` events after a resourceVersion, ended after
``timeoutSeconds``. A resourceVersion older than the retained history gets an ERROR event
with a 410 Status, as the API server answers a watch from a compacted version. Every
request needs ``Authorization: Bearer <token>`` (401 otherwise).

The test drives it: ``add_pod``/``delete_pod`` (events), ``compact`` (a pod deleted unseen,
the watches ended and the history dropped: the client must list again), ``go_down``/
``come_back`` (connections refused and open ones cut, then the same port again),
``token`` (the one accepted). ``requests`` records what was asked, with the token used.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    token: str
    accept_encoding: str | None = None


@dataclass
class FakeKubeApi:
    token: str
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uid
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.version = 1
        self.history: list[tuple[int, str, dict[str, Any]]] = []  # (version, type, pod)
        self.oldest = 1  # watches from before this version get 410
        self.changed = threading.Condition()
        self.generation = 0  # bumped to end every open watch
        self.connections: set[socket.socket] = set()
        self.port = 0
        self._start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what the test does -------------------------------------------------------------

    def add_pod(
        self,
        node: str,
        namespace: str = "jhub",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        uid: str | None = None,
    ) -> str:
        uid = uid or str(uuid.uuid4())
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": f"jupyter-{uid[:8]}",
                "namespace": namespace,
                "uid": uid,
                "labels": labels or {},
                "annotations": annotations or {},
            },
            "spec": {"nodeName": node, "containers": [{"name": "notebook"}]},
            "status": {"phase": "Running"},
        }
        self._change("ADDED", pod)
        return uid

    def delete_pod(self, uid: str) -> None:
        self._change("DELETED", self.pods[uid])

    def compact(self, deleting: str) -> None:
        """Deletes a pod unseen: the open watches end (as on their timeout) and the history
        is compacted past the deletion, so a watch from before it gets 410 Gone."""
        with self.changed:
            self._end_watches()
            self.version += 1
            self.pods.pop(deleting)
            self.oldest = self.version + 1
            self.history.clear()

    def go_down(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.changed:
            self._end_watches()
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def come_back(self) -> None:
        self._start(self.port)

    def close(self) -> None:
        self.go_down()

    # --- the server -----------------------------------------------------------------------

    def _change(self, kind: str, pod: dict[str, Any]) -> None:
        with self.changed:
            self.version += 1
            pod = json.loads(json.dumps(pod))
            pod["metadata"]["resourceVersion"] = str(self.version)
            if kind == "DELETED":
                self.pods.pop(pod["metadata"]["uid"], None)
            else:
                self.pods[pod["metadata"]["uid"]] = pod
            self.history.append((self.version, kind, pod))
            self.changed.notify_all()

    def _end_watches(self) -> None:
        self.generation += 1
        self.changed.notify_all()

    def _start(self, port: int = 0) -> None:
        api = self

        class Handler(_Handler):
            fake = api

        self.server = _Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # come_back() binds the same port again

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection cut by go_down(): expected, not worth a traceback


def matches(pod: dict[str, Any], namespace: str | None, query: dict[str, str]) -> bool:
    metadata = pod["metadata"]
    if namespace and metadata["namespace"] != namespace:
        return False
    for selector, values in (
        ("fieldSelector", {"spec.nodeName": pod["spec"]["nodeName"]}),
        ("labelSelector", metadata["labels"]),
    ):
        for term in filter(None, query.get(selector, "").split(",")):
            key, _, wanted = term.partition("=")
            if values.get(key) != wanted:
                return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeKubeApi

    def setup(self) -> None:
        super().setup()
        self.fake.connections.add(self.connection)

    def finish(self) -> None:
        self.fake.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        encoding = self.headers.get("Accept-Encoding")
        self.fake.requests.append(Seen(parts.path, query, token, encoding))
        segments = parts.path.strip("/").split("/")
        if segments[:2] != ["api", "v1"] or segments[-1] != "pods":
            return self._json(404, status(404, "NotFound"))
        namespace = segments[3] if len(segments) == 5 and segments[2] == "namespaces" else None
        if token != self.fake.token:
            return self._json(401, status(401, "Unauthorized"))
        if query.get("watch") in ("1", "true"):
            return self._watch(namespace, query)
        return self._list(namespace, query)

    def _list(self, namespace: str | None, query: dict[str, str]) -> None:
        with self.fake.changed:
            items = [p for p in self.fake.pods.values() if matches(p, namespace, query)]
            version = str(self.fake.version)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or len(items) or 1)
        more = start + limit < len(items)
        metadata = {"resourceVersion": version, "continue": str(start + limit) if more else ""}
        self._json(
            200,
            {
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": metadata,
                "items": items[start : start + limit],
            },
        )

    def _watch(self, namespace: str | None, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        after = int(query.get("resourceVersion") or 0)
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        with self.fake.changed:
            generation = self.fake.generation
            if after < self.fake.oldest - 1:
                gone = status(410, "Expired", "too old resource version")
                self._chunk({"type": "ERROR", "object": gone})
                return self._end()
        while time.monotonic() < deadline:
            with self.fake.changed:
                if self.fake.generation != generation:
                    break
                events = [(v, t, p) for v, t, p in self.fake.history if v > after]
                if not events:
                    self.fake.changed.wait(0.2)
                    continue
            for version, kind, pod in events:
                if matches(pod, namespace, query):
                    self._chunk({"type": kind, "object": pod})
                after = version
        self._end()

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def status(code: int, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message or reason,
        "reason": reason,
        "code": code,
    }
