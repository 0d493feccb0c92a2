"""The processes collector: NVML's processes joined to the process table's owners."""

from __future__ import annotations

from dataclasses import replace

from dlcourse_exporter.collectors.processes import (
    Assignment,
    ProcessesCollector,
    assignments,
    split_by_owner,
    sum_by_user,
)
from dlcourse_exporter.model import (
    Attribution,
    Evidence,
    Gpu,
    GpuProcess,
    GpuProcessList,
    NvmlSnapshot,
    ProcessEntry,
    ProcessIdentity,
    ProcessTable,
)


def test_sum_by_user_adds_per_user_and_gpu():
    procs = [
        ("alice", GpuProcess(0, "GPU-a", 1, 1000, 0.5)),
        ("alice", GpuProcess(0, "GPU-a", 2, None, 0.7)),  # memory not available
        ("alice", GpuProcess(1, "GPU-b", 3, 50, 0.1)),
        ("bob", GpuProcess(0, "GPU-a", 4, 200, 0.0)),
    ]
    uses = {(u.user, u.gpu_index): u for u in sum_by_user(procs)}
    assert uses["alice", 0].memory_used_bytes == 1000
    assert uses["alice", 0].utilization_ratio == 1.0  # capped
    assert uses["alice", 0].processes == 2
    assert uses["alice", 1].memory_used_bytes == 50
    assert uses["bob", 0].processes == 1


def entry(pid: int, owner: str | None) -> ProcessEntry:
    identity = ProcessIdentity(1000, ("0::/",), {}, ("python",), Evidence())
    attribution = Attribution(owner, "account") if owner else None
    return ProcessEntry(pid, 1, 1, "S", 0.0, 0, identity, attribution)


def test_processes_nobody_owns_or_gone_before_the_walk_are_unattributed():
    gpu = GpuProcessList(
        0,
        "GPU-a",
        (
            GpuProcess(0, "GPU-a", 10, 2 << 30, 0.5),
            GpuProcess(0, "GPU-a", 11, 1 << 30, 0.0),  # a process nobody owns
            GpuProcess(0, "GPU-a", 12, 4 << 30, 0.0),  # gone before /proc was walked
        ),
    )
    table = ProcessTable({10: entry(10, "alice"), 11: entry(11, None)})
    view = split_by_owner([gpu], table)
    assert [(u.user, u.memory_used_bytes, u.processes) for u in view.users] == [
        ("alice", 2 << 30, 1)
    ]
    [lost] = view.unattributed
    assert (lost.memory_used_bytes, lost.processes) == (5 << 30, 2)


def test_the_view_changes_only_with_what_is_shown():
    gpu = GpuProcessList(0, "GPU-a", (GpuProcess(0, "GPU-a", 10, 1 << 30, 0.5),))
    nvml = NvmlSnapshot("550", "12.4", (), (gpu,))
    collector = ProcessesCollector()
    before = collector.view(nvml, ProcessTable({10: entry(10, "alice")}))
    busier = replace(entry(10, "alice"), state="R", cpu_seconds=99.0, rss_bytes=1 << 20)
    # Another cycle: the process used CPU, but its owner and GPU use are the same.
    assert collector.view(nvml, ProcessTable({10: busier})) == before


def started(pid: int, ticks: int, owner: str | None, via: str = "account", **environ: str):
    identity = ProcessIdentity(1000, ("0::/",), environ, ("python",), Evidence())
    attribution = Attribution(owner, via) if owner else None
    return ProcessEntry(pid, ticks, 1, "S", 0.0, 0, identity, attribution)


GPUS = (Gpu(0, "GPU-a", True), Gpu(1, "GPU-b", True))


def test_the_assigned_gpu_is_the_first_started_server_processs():
    """The server (first started with the student's name) counts; a kernel or a process the
    student started later with another GPU, or one of another account naming them, does not."""
    table = ProcessTable(
        {
            20: started(20, 100, "alice", JUPYTERHUB_USER="alice", CUDA_VISIBLE_DEVICES="GPU-b"),
            21: started(21, 150, "alice", JUPYTERHUB_USER="alice", CUDA_VISIBLE_DEVICES="GPU-a"),
            # Older, but another student's process claiming alice's name: judged bob's.
            22: started(22, 50, "bob", JUPYTERHUB_USER="alice", CUDA_VISIBLE_DEVICES="GPU-a"),
            # An account outside the hub: no student.
            23: started(23, 10, "root", via="linux-account", JUPYTERHUB_USER="carol",
                        CUDA_VISIBLE_DEVICES="GPU-a"),
        }
    )  # fmt: skip
    assert assignments(table, GPUS) == (Assignment("alice", 1, "GPU-b"),)


def test_only_one_known_gpu_uuid_is_an_assignment():
    def server(value: str) -> ProcessTable:
        env = {"JUPYTERHUB_USER": "alice", "CUDA_VISIBLE_DEVICES": value}
        return ProcessTable({30: started(30, 1, "alice", **env)})

    assert assignments(server(" GPU-a "), GPUS) == (Assignment("alice", 0, "GPU-a"),)
    for value in ("", "0", "GPU-a,GPU-b", "GPU-zzz", "MIG-GPU-a/1/0"):
        assert assignments(server(value), GPUS) == ()


def test_the_collector_renders_one_series_per_assigned_server():
    table = ProcessTable(
        {40: started(40, 1, "alice", JUPYTERHUB_USER="alice", CUDA_VISIBLE_DEVICES="GPU-b")}
    )
    collector = ProcessesCollector()
    families = list(collector.render(collector.view(NvmlSnapshot("550", "12.4", GPUS), table)))
    [assigned] = [f for f in families if f.name == "dlcourse_user_gpu_assigned"]
    assert [(s.labels, s.value) for s in assigned.samples] == [
        ({"user": "alice", "gpu": "1", "uuid": "GPU-b"}, 1)
    ]
