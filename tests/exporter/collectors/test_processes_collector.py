"""The processes collector: NVML's processes joined to the process table's owners."""

from __future__ import annotations

from dataclasses import replace

from dlcourse_exporter.collectors.processes import ProcessesCollector, split_by_owner, sum_by_user
from dlcourse_exporter.model import (
    Attribution,
    Evidence,
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
