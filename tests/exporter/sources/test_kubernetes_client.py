"""The Kubernetes source against the fake API server (real HTTP on loopback, in threads)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from dlcourse_exporter.sources import kubernetes
from dlcourse_exporter.sources.kubepods import KubernetesError, PodDirectory
from dlcourse_exporter.sources.kubernetes import (
    KubernetesAuthError,
    KubernetesClient,
    KubernetesSource,
    KubernetesUnreachable,
)
from dlcourse_testing.exporter import free_port
from dlcourse_testing.kube_api import FakeKubeApi
from dlcourse_testing.secret_files import REASONS, finishes_within, hostile_secret_files

NODE = "gpu-node-1"
SINGLEUSER = {"component": "singleuser-server"}


@pytest.fixture
def api():
    fake = FakeKubeApi(token="first-token")
    yield fake
    fake.close()


@pytest.fixture
def token_file(tmp_path, api):
    path = tmp_path / "token"
    path.write_text(api.token + "\n")
    return path


def client_for(
    api: FakeKubeApi, token_file, url: str | None = None, user_namespaces: bool = False
) -> KubernetesClient:
    return KubernetesClient(
        url or api.url, NODE, "jhub", token_file, token_file.parent / "ca", user_namespaces
    )


def student(api: FakeKubeApi, name: str, namespace: str = "jhub", **extra) -> str:
    return api.add_pod(
        NODE,
        namespace=namespace,
        labels=SINGLEUSER,
        annotations={"hub.jupyter.org/username": name, **extra},
    )


def list_pods(client: KubernetesClient):
    async def run():
        async with client.connect() as http:
            return await client.list_pods(http)

    return asyncio.run(run())


def first_watch_error(client: KubernetesClient, version: str) -> Exception:
    async def run():
        async with client.connect() as http:
            async for _ in client.watch(http, version):
                pass

    with pytest.raises(KubernetesError) as caught:
        asyncio.run(asyncio.wait_for(run(), 30))
    return caught.value


def test_lists_the_node_s_student_pods_page_by_page(api, token_file, monkeypatch):
    monkeypatch.setattr(kubernetes, "PAGE_SIZE", 2)
    ana, ben = student(api, "ana"), student(api, "ben")
    api.add_pod(NODE, labels=SINGLEUSER)  # no annotation
    api.add_pod("gpu-node-2", labels=SINGLEUSER, annotations={"hub.jupyter.org/username": "dan"})
    api.add_pod(NODE, namespace="other", labels=SINGLEUSER)
    pods, version = list_pods(client_for(api, token_file))
    assert pods.students == {ana: "ana", ben: "ben"}
    assert version == str(api.version)
    assert [r.query.get("continue") for r in api.requests] == [None, "2"]
    assert api.requests[0].query["labelSelector"] == "component=singleuser-server"
    # Uncompressed: the API server gzips large answers for clients that accept it.
    assert {r.accept_encoding for r in api.requests} == {"identity"}


def test_the_token_is_read_from_its_file_for_every_request(api, token_file):
    client = client_for(api, token_file)
    list_pods(client)
    api.token = "rotated-token"
    with pytest.raises(KubernetesAuthError, match=r"refused the token \(401\)"):
        list_pods(client)
    token_file.write_text("rotated-token")
    list_pods(client)
    assert [r.token for r in api.requests] == ["first-token", "first-token", "rotated-token"]


def test_a_missing_token_file_is_one_line(api, tmp_path):
    with pytest.raises(KubernetesAuthError, match="cannot read the token file"):
        list_pods(client_for(api, tmp_path / "absent"))


@pytest.mark.parametrize("what", sorted(REASONS))
def test_a_token_file_that_would_hang_or_flood_is_one_line(api, tmp_path, what):
    """The token is read for every request (the kubelet rotates it): a FIFO or /dev/zero
    there must not hold or flood the exporter."""
    path = hostile_secret_files(tmp_path / "hostile")[what]
    with pytest.raises(KubernetesAuthError) as error:
        finishes_within(10, lambda: list_pods(client_for(api, path)))
    assert str(error.value) == f"cannot read the token file {path}: {REASONS[what]}"
    assert api.requests == []


def test_an_api_that_is_not_there(api, token_file):
    with pytest.raises(KubernetesUnreachable, match="unreachable"):
        list_pods(client_for(api, token_file, f"http://127.0.0.1:{free_port()}"))


def test_a_watch_event_over_the_cap_is_refused(api, token_file, monkeypatch):
    monkeypatch.setattr(kubernetes, "MAX_EVENT_BYTES", 10_000)
    client = client_for(api, token_file)
    _, version = list_pods(client)
    student(api, "ana", padding="x" * 20_000)
    assert "over 10000 bytes: refused" in str(first_watch_error(client, version))


def test_a_list_page_over_the_cap_is_refused(api, token_file, monkeypatch):
    monkeypatch.setattr(kubernetes, "MAX_PAGE_BYTES", 5_000)
    student(api, "ana", padding="x" * 6_000)
    with pytest.raises(KubernetesError, match="over 5000 bytes: refused"):
        list_pods(client_for(api, token_file))


def test_more_pods_than_the_cap_are_refused(api, token_file, monkeypatch):
    monkeypatch.setattr(kubernetes, "MAX_PODS", 2)
    for name in ("ana", "ben", "eve"):
        student(api, name)
    with pytest.raises(KubernetesError, match="more than 2 pods"):
        list_pods(client_for(api, token_file))


def test_a_watch_from_a_compacted_version_asks_for_a_new_list(api, token_file):
    client = client_for(api, token_file)
    gone = student(api, "ana")
    _, version = list_pods(client)
    api.compact(deleting=gone)
    assert "410 Gone" in str(first_watch_error(client, version))


def test_the_source_follows_the_pods_and_forgets_them_while_the_api_is_down(api, token_file):
    pods = PodDirectory()
    source = KubernetesSource(client_for(api, token_file), pods)
    ana = student(api, "ana")

    async def poll_until(condition, what: str):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                result = await source.poll()
            except KubernetesError as exc:
                result = exc
            if condition(result):
                return result
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last: {result!r}")

    async def scenario():
        try:
            first = await source.poll()
        except KubernetesError as exc:
            first = exc
        assert "not listed yet" in str(first)
        await poll_until(lambda r: getattr(r, "students", None) == {ana: "ana"}, "the list")
        ben = student(api, "ben")
        await poll_until(lambda r: getattr(r, "students", {}).get(ben) == "ben", "ben watched")
        api.go_down()
        down = await poll_until(lambda r: isinstance(r, KubernetesError), "the API down")
        assert "unreachable" in str(down) and pods.current is None
        api.delete_pod(ana)
        api.come_back()
        await poll_until(lambda r: getattr(r, "students", None) == {ben: "ben"}, "relisted")
        source.close()

    asyncio.run(scenario())


def test_with_user_namespaces_only_the_hub_s_namespaces_name_students(api, token_file):
    """Old behaviour (the chart's clusterWide): a singleuser-labelled pod with a username
    annotation in any namespace named that student, e.g. one another tenant made."""
    ana, ben = student(api, "ana"), student(api, "ben", namespace="jhub-ben")
    student(api, "ana", namespace="other-team")  # another tenant's pod claiming ana
    student(api, "cy", namespace="jhubx-cy")  # not "<hub namespace>-"
    client = client_for(api, token_file, user_namespaces=True)
    pods, _ = list_pods(client)
    assert pods.students == {ana: "ana", ben: "ben"}
    assert api.requests[-1].path == "/api/v1/pods"  # every namespace: a ClusterRole

    source = KubernetesSource(client, PodDirectory())

    async def students_after(change) -> dict[str, str]:
        """The students the source follows once the pod count has changed by `change`."""
        wanted, deadline = len(pods.students) + change, time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(KubernetesError):
                found = (await source.poll()).students
                if len(found) == wanted:
                    return dict(found)
            await asyncio.sleep(0.05)
        raise AssertionError("the source never followed the change")

    async def watched() -> tuple[str, dict[str, str]]:
        await students_after(0)  # listed
        student(api, "dan", namespace="other-team")  # watched, not believed
        dan = student(api, "dan", namespace="jhub-dan")
        found = await students_after(1)
        source.close()
        return dan, found

    dan, found = asyncio.run(watched())
    assert found == {ana: "ana", ben: "ben", dan: "dan"}
