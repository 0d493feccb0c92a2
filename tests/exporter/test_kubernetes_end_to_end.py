"""`dlcourse-exporter --attribution=kubernetes` as a subprocess, against a fake API server.

GPU processes (stand-in NVML) are real processes in real cgroups named like the kubelet's
pod cgroups where root may make them (``testing.pod_cgroups``); the pods come from a fake
API server on loopback (``testing.kube_api``) that lists and watches over real HTTP and
checks the bearer token.
"""

from __future__ import annotations

import uuid

import pytest

from dlcourse_testing.exporter import log_lines, value
from dlcourse_testing.kube_api import FakeKubeApi
from dlcourse_testing.pod_cgroups import PodProcesses
from fakenvml import Gpu, Process, Scenario

pytestmark = pytest.mark.live

GIB = 1024**3
NODE = "gpu-node-1"
SINGLEUSER = {"component": "singleuser-server"}
GPU = {"gpu": "0"}


def student_pod(api: FakeKubeApi, name: str, node: str = NODE) -> str:
    return api.add_pod(node, labels=SINGLEUSER, annotations={"hub.jupyter.org/username": name})


def container_id() -> str:
    return uuid.uuid4().hex * 2


@pytest.fixture
def pod_processes(tmp_path):
    processes = PodProcesses(tmp_path / "proc")
    yield processes
    processes.close()


@pytest.fixture
def api():
    fake = FakeKubeApi(token=f"token-{uuid.uuid4().hex}")
    yield fake
    fake.close()


def users(samples) -> dict[str, float]:
    """Per-student GPU memory on GPU 0, by student."""
    return {
        dict(labels)["user"]: v
        for (name, labels), v in samples.items()
        if name == "dlcourse_user_gpu_memory_used_bytes" and dict(labels)["gpu"] == "0"
    }


def test_gpu_processes_belong_to_the_students_of_their_pods(
    run_exporter, scenario_path, pod_processes, api, tmp_path
):
    tag = uuid.uuid4().hex[:6]
    ana, ben, eve = (f"{name}-{tag}@uni.example" for name in ("ana", "ben", "eve"))
    ana_pod, ben_pod = student_pod(api, ana), student_pod(api, ben)
    eve_uid = str(uuid.uuid4())  # her pod is made while the exporter runs
    no_annotation = api.add_pod(NODE, labels=SINGLEUSER)
    hub_pod = api.add_pod(
        NODE, labels={"component": "hub"}, annotations={"hub.jupyter.org/username": ana}
    )
    elsewhere = student_pod(api, f"dan-{tag}", node="gpu-node-2")

    # Every layout of the kubelet and runtimes, on whichever hierarchies are mounted.
    start = pod_processes.start
    systemd_ben = ben_pod.replace("-", "_")
    pids = {
        "ana": start("memory", f"kubepods/burstable/pod{ana_pod}/{container_id()}"),
        "ben": start(
            "pids",
            "kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{systemd_ben}.slice/cri-containerd-{container_id()}.scope",
        ),
        "eve": start("v2", f"kubepods/pod{eve_uid}/crio-{container_id()}.scope"),
        "no annotation": start("memory", f"kubepods/pod{no_annotation}/{container_id()}"),
        "hub pod": start("v2", f"kubepods/besteffort/pod{hub_pod}/docker-{container_id()}.scope"),
        "other node": start("memory", f"kubepods/pod{elsewhere}/{container_id()}"),
        # JUPYTERHUB_USER names nobody on Kubernetes (a student can set it).
        "environment only": start("memory", "system.slice/x.service", {"JUPYTERHUB_USER": ana}),
    }
    memory = {"ana": 4, "ben": 2, "eve": 1}
    Scenario(
        gpus=[
            Gpu(
                processes=[
                    Process(pid, memory.get(who, 1) * GIB, sm_util=10) for who, pid in pids.items()
                ]
            )
        ]
    ).write(scenario_path)
    token_file = tmp_path / "token"
    token_file.write_text(api.token + "\n")

    exporter = run_exporter(
        "--attribution=kubernetes",
        f"--kubernetes.node-name={NODE}",
        "--kubernetes.namespace=jhub",
        f"--kubernetes.api-url={api.url}",
        f"--kubernetes.token-file={token_file}",
        *pod_processes.exporter_args,
    )

    def attributed(expected: dict[str, int], unattributed: int, what: str, following: bool = True):
        # The processes collector reads the pods as soon as a list lands; the kubernetes
        # collector's health series follow at that source's next poll (up to 5 s later).
        wanted = {user: gib * GIB for user, gib in expected.items()}
        return exporter.wait_for(
            lambda s: (
                users(s) == wanted
                and value(s, "dlcourse_gpu_unattributed_memory_bytes", **GPU) == unattributed * GIB
                and value(s, "dlcourse_collector_success", collector="kubernetes") == following
            ),
            what=what,
        )

    samples = attributed({ana: 4, ben: 2}, 5, "ana and ben attributed, the rest not")
    assert value(samples, "dlcourse_gpu_unattributed_processes", **GPU) == 5
    assert value(samples, "dlcourse_user_gpu_processes", user=ana, **GPU) == 1
    asked = api.requests[0]
    assert asked.path == "/api/v1/namespaces/jhub/pods"
    assert asked.query["fieldSelector"] == f"spec.nodeName={NODE}"

    api.add_pod(NODE, labels=SINGLEUSER, annotations={"hub.jupyter.org/username": eve}, uid=eve_uid)
    attributed({ana: 4, ben: 2, eve: 1}, 4, "eve's pod added: watched")
    api.delete_pod(ben_pod)
    attributed({ana: 4, eve: 1}, 6, "ben's pod deleted: watched")

    # The API goes away: nobody is a student, and the health series says why.
    api.go_down()
    samples = attributed({}, 11, "every GPU process unattributed while the API is down", False)
    assert value(samples, "dlcourse_collector_success", collector="processes") == 1
    # Logged at the source's next poll, which may come after the processes collector's.
    exporter.wait_for(lambda _: log_lines(exporter, "source kubernetes failed"), 60, "the log")

    # It comes back with a rotated token; meanwhile the unannotated pod got its annotation.
    api.token = f"token-{uuid.uuid4().hex}"
    token_file.write_text(api.token)
    cat = f"cat-{tag}"
    api.add_pod(
        NODE, labels=SINGLEUSER, annotations={"hub.jupyter.org/username": cat}, uid=no_annotation
    )
    api.come_back()
    attributed({ana: 4, eve: 1, cat: 1}, 5, "attribution back after the API returned")
    assert api.requests[-1].token == api.token  # the new token, read from the file again

    # The history is compacted past a deletion it never sent: 410 Gone, and a new list.
    lists_before = sum(1 for r in api.requests if "watch" not in r.query)
    api.compact(deleting=eve_uid)
    attributed({ana: 4, cat: 1}, 6, "eve's pod gone after the relist")
    assert sum(1 for r in api.requests if "watch" not in r.query) > lists_before
    assert log_lines(exporter, "410 Gone")
