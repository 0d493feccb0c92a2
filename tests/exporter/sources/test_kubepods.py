"""Pure parsing of what cgroups and the Kubernetes API say about students' pods."""

from __future__ import annotations

import json

import pytest

from dlcourse_exporter.model import Attribution, Evidence, StudentPods
from dlcourse_exporter.sources.kubepods import (
    KubernetesResponseError,
    Pod,
    PodDirectory,
    ResourceVersionGone,
    parse_event,
    parse_pod,
    parse_pod_list,
    pod_uid,
)
from dlcourse_exporter.sources.owners import PodOwners
from dlcourse_exporter.sources.roster import SharedRoster

UID = "6fcb1644-f088-4c60-88fb-5417898eb050"
SYSTEMD_UID = UID.replace("-", "_")
CID = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "lines",
    [
        # cgroup v1, cgroupfs driver, containerd/docker container ids
        [
            f"4:memory:/kubepods/burstable/pod{UID}/{CID}",
            f"3:cpuset:/kubepods/burstable/pod{UID}/{CID}",
        ],
        [f"11:pids:/kubepods/besteffort/pod{UID}/{CID}"],
        [f"5:cpu,cpuacct:/kubepods/pod{UID}/{CID}"],  # guaranteed QoS
        # cgroup v2, systemd driver: containerd, CRI-O, docker scopes
        [
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{SYSTEMD_UID}.slice/cri-containerd-{CID}.scope"
        ],
        [f"0::/kubepods.slice/kubepods-pod{SYSTEMD_UID}.slice/crio-{CID}.scope"],
        [
            "0::/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{SYSTEMD_UID}.slice/docker-{CID}.scope"
        ],
        # v1 systemd driver, hybrid layout with the v2 line at /
        [
            "12:memory:/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{SYSTEMD_UID}.slice/cri-containerd-{CID}.scope",
            "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{SYSTEMD_UID}.slice/cri-containerd-{CID}.scope",
            "0::/",
        ],
        # inside the exporter's own cgroup namespace: relative to its root
        [f"0::/../../pod{UID}/{CID}"],
        [f"0::/../../kubepods-besteffort-pod{SYSTEMD_UID}.slice/crio-{CID}.scope"],
        # a kubelet with --cgroup-root, upper-case hex
        [f"4:memory:/custom/kubepods/burstable/pod{UID.upper()}/{CID}"],
    ],
)
def test_every_kubelet_layout_names_the_pod(lines):
    assert pod_uid(lines) == UID


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["0::/"],
        ["0::/system.slice/jupyter-ana.service"],
        [f"0::/user.slice/podman-{CID}.scope"],
        [f"0::/kubepods/burstable/pod{UID[:-1]}/{CID}"],  # not a whole UID
        [f"0::/kubepods/burstable/xpod{UID}/{CID}"],  # not a path component
        [f"0::/kubepods/burstable/pod{UID}x/{CID}"],
        # lines naming two pods name none
        [f"4:memory:/kubepods/pod{UID}/{CID}", f"0::/kubepods/pod{UID[:-1]}1/{CID}"],
    ],
)
def test_anything_else_names_no_pod(lines):
    assert pod_uid(lines) is None


def test_a_cgroup_made_inside_a_pod_cannot_name_another():
    other = "11111111-2222-3333-4444-555555555555"
    assert pod_uid([f"0::/kubepods/pod{UID}/{CID}/pod{other}"]) == UID


def pod(labels=None, annotations=None, uid=UID, version="7"):
    metadata = {"uid": uid, "resourceVersion": version, "name": "jupyter-ana"}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"kind": "Pod", "metadata": metadata}


SINGLEUSER = {"component": "singleuser-server"}


def test_a_singleuser_pod_names_its_raw_hub_user():
    found = parse_pod(pod(SINGLEUSER, {"hub.jupyter.org/username": "Ana.Lima@uni.example"}))
    assert found == Pod(UID, "Ana.Lima@uni.example")


@pytest.mark.parametrize(
    "labels, annotations",
    [
        (SINGLEUSER, None),  # annotation missing
        (SINGLEUSER, {"hub.jupyter.org/username": ""}),
        (SINGLEUSER, {"hub.jupyter.org/username": 42}),
        ({"component": "hub"}, {"hub.jupyter.org/username": "ana"}),  # not a server pod
        (None, {"hub.jupyter.org/username": "ana"}),
        ("garbage", "garbage"),
    ],
)
def test_other_pods_name_nobody(labels, annotations):
    assert parse_pod(pod(labels, annotations)) == Pod(UID, None)


def test_long_or_broken_names_are_clean_label_values():
    found = parse_pod(pod(SINGLEUSER, {"hub.jupyter.org/username": "a\ud800" + "b" * 500}))
    assert found.student is not None and len(found.student) == 128
    assert "\ud800" not in found.student


@pytest.mark.parametrize("bad", [None, [], {"metadata": {}}, pod(uid="not-a-uid"), pod(uid=7)])
def test_a_pod_without_a_uid_is_an_error(bad):
    with pytest.raises(KubernetesResponseError):
        parse_pod(bad)


def test_a_pod_list_page():
    body = {
        "kind": "PodList",
        "metadata": {"resourceVersion": "10245", "continue": "next"},
        "items": [pod(SINGLEUSER, {"hub.jupyter.org/username": "ana"})],
    }
    page = parse_pod_list(json.dumps(body).encode())
    assert page.pods == (Pod(UID, "ana"),)
    assert (page.resource_version, page.continue_token) == ("10245", "next")


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[[[" * 100_000, b"{}", b'{"items": [], "metadata": {}}', b'{"items": 3}'],
)
def test_a_malformed_list_is_an_error(body):
    with pytest.raises(KubernetesResponseError):
        parse_pod_list(body)


def event(kind, obj):
    return json.dumps({"type": kind, "object": obj}).encode()


def test_watch_events():
    added = parse_event(event("ADDED", pod(SINGLEUSER, {"hub.jupyter.org/username": "ana"})))
    assert (added.kind, added.pod, added.resource_version) == ("ADDED", Pod(UID, "ana"), "7")
    bookmark = parse_event(event("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "9"}}))
    assert (bookmark.pod, bookmark.resource_version) == (None, "9")


def test_a_410_error_event_asks_for_a_new_list():
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    with pytest.raises(ResourceVersionGone):
        parse_event(event("ERROR", gone))


@pytest.mark.parametrize(
    "line",
    [event("ERROR", {"code": 500}), event("RENAMED", pod()), b"{", event("ADDED", pod(version=""))],
)
def test_other_odd_events_are_errors(line):
    with pytest.raises(KubernetesResponseError):
        parse_event(line)


def test_pod_owners_believe_only_the_pod():
    pods = PodDirectory()
    owners = PodOwners(pods, SharedRoster(hub_configured=False, prefix=""))
    in_pod = Evidence(account="jovyan", environ_user="ben", pod_uid=UID)
    claims = Evidence(unit_user="ben", account="jupyter-ben", environ_user="ben")
    assert owners.judge(in_pod) is None  # not listed yet: nobody is a student
    pods.current = StudentPods({UID: "ana"})
    assert owners.judge(in_pod) == Attribution("ana", "pod")
    assert owners.judge(claims) is None  # unit, account and JUPYTERHUB_USER count for nothing
    pods.current = None  # the API is unreachable
    assert owners.judge(in_pod) is None


def test_with_a_hub_pod_owners_believe_only_its_users():
    """Old behaviour: any annotated student pod counted, hub or not."""
    pods, roster = PodDirectory(), SharedRoster(hub_configured=True, prefix="")
    owners = PodOwners(pods, roster)
    pods.current = StudentPods({UID: "ana"})
    in_pod = Evidence(pod_uid=UID)
    assert owners.judge(in_pod) is None  # the hub not read yet: nobody is a student
    roster.update([("ben", "ben")])
    assert owners.judge(in_pod) is None and not owners.keep("ana", 0.0, 1.0)
    roster.update([("ana", "ana"), ("ben", "ben")])
    assert owners.judge(in_pod) == Attribution("ana", "pod") and owners.keep("ana", 0.0, 1.0)
    without_hub = PodOwners(pods, SharedRoster(hub_configured=False, prefix=""))
    assert without_hub.judge(in_pod) == Attribution("ana", "pod")
