"""The students source over snapshots made by hand: which kernel holds what, idle clocks,
death reasons from the other sources' evidence, GPU time, culls; no process is started."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcourse_exporter.model import (
    Attribution,
    Evidence,
    GpuProcess,
    GpuProcessList,
    HostSnapshot,
    KernelCrash,
    KernelsSnapshot,
    NvmlSnapshot,
    OomVictim,
    ProcessEntry,
    ProcessIdentity,
    ProcessTable,
    RunningKernel,
    UserHost,
    XidEvent,
)
from dlcourse_exporter.sources.culls import CULLABLE_SECONDS
from dlcourse_exporter.sources.owners import Owners
from dlcourse_exporter.sources.procfs import CLOCK_TICKS
from dlcourse_exporter.sources.roster import SharedRoster
from dlcourse_exporter.sources.students import StudentsSource, kernel_of

GIB = 1 << 30
BOOT = 1_700_000_000.0


@dataclass
class Clock:
    now: float = 100.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return BOOT + 10_000 + self.now


def entry(pid: int, ppid: int, owner: str | None, argv=("python",), via="environ") -> ProcessEntry:
    identity = ProcessIdentity(1001, (), {}, tuple(argv), Evidence())
    return ProcessEntry(
        pid, pid * 10, ppid, "S", 0.0, 0, identity, owner and Attribution(owner, via)
    )


TABLE = ProcessTable(
    {
        1: entry(1, 0, None, ("init",)),
        50: entry(50, 1, "ada", ("jupyterhub-singleuser",)),
        100: entry(100, 50, "ada", ("python", "-m", "ipykernel_launcher", "-f", "k.json")),
        101: entry(101, 100, "ada", ("python", "worker.py")),  # the kernel's child
        200: entry(200, 50, "ada", ("python", "train.py", "--epochs\x1b[2J", "3")),  # a terminal
        300: entry(300, 1, "bob", ("python", "bob.py")),
        400: entry(400, 1, "root", ("nvidia-smi",), via="linux-account"),
    }
)
KERNEL = RunningKernel("ada", 100, 1000, "/home/jupyter-ada/rt/kernel-k1.json", 1001)


def nvml(*processes: GpuProcess, xids: tuple[XidEvent, ...] = (), at: float = 0.0) -> NvmlSnapshot:
    return NvmlSnapshot(
        "550", "12.4", (), (GpuProcessList(0, "GPU-a", processes),), recent_xids=xids, read_at=at
    )


def kernels(*crashes: KernelCrash, running=(KERNEL,)) -> KernelsSnapshot:
    users = frozenset(k.user for k in running) | {c.kernel.user for c in crashes}
    return KernelsSnapshot({}, {}, {}, users, "netlink", tuple(running), tuple(crashes))


def source(tmp_path: Path, clock: Clock, roster: SharedRoster | None = None) -> StudentsSource:
    (tmp_path / "stat").write_text(f"cpu  1 2 3\nbtime {int(BOOT)}\nprocesses 5\n")
    owners = Owners("jupyter-", None, roster)
    return StudentsSource(owners, roster, tmp_path, 1.0, clock.monotonic, clock.wall)


def test_the_kernel_holds_what_its_children_hold_and_other_processes_stay_apart(tmp_path):
    clock = Clock()
    students = source(tmp_path, clock)
    gpu = nvml(
        GpuProcess(0, "GPU-a", 101, GIB, 0.0),
        GpuProcess(0, "GPU-a", 200, GIB // 2, 0.2),
        GpuProcess(0, "GPU-a", 300, 2 * GIB, 0.5),
        GpuProcess(0, "GPU-a", 400, GIB, 0.0),
    )
    snapshot = students.poll(TABLE, kernels(), gpu, None)
    (kernel,) = snapshot.kernels
    assert (kernel.user, kernel.kernel_id, kernel.pid) == ("ada", "k1", 100)
    assert kernel.started == BOOT + 1000 / CLOCK_TICKS
    assert (kernel.memory_bytes, kernel.utilization_ratio, kernel.gpus) == (GIB, 0.0, ("GPU-a",))
    assert kernel.idle_since == clock.wall()
    others = {(p.user, p.pid): p for p in snapshot.other_processes}
    assert set(others) == {("ada", 200), ("bob", 300)}  # root's is nobody's student's
    assert others["ada", 200].command == "python train.py --epochs [2J 3"
    assert others["ada", 200].idle_since is None and others["bob", 300].idle_since is None
    assert snapshot.users == {"ada", "bob", "root"}  # without a hub, everyone seen

    first_idle = kernel.idle_since
    clock.now += 5
    busy = nvml(GpuProcess(0, "GPU-a", 101, GIB, 0.3), at=5)
    (kernel,) = students.poll(TABLE, kernels(), busy, None).kernels
    assert kernel.idle_since is None and kernel.utilization_ratio == pytest.approx(0.3)
    clock.now += 5
    (kernel,) = students.poll(
        TABLE, kernels(), nvml(GpuProcess(0, "GPU-a", 101, GIB, 0.0), at=10), None
    ).kernels
    assert kernel.idle_since == clock.wall() > first_idle
    clock.now += 5
    (kernel,) = students.poll(TABLE, kernels(), None, None).kernels  # NVML down
    assert kernel.idle_since is None and kernel.memory_bytes == 0


def test_gpu_time_is_counted_per_user_between_nvml_readings(tmp_path):
    clock = Clock()
    students = source(tmp_path, clock)
    for at in (0.0, 4.0):
        gpu = nvml(
            GpuProcess(0, "GPU-a", 101, GIB, 0.5), GpuProcess(0, "GPU-a", 300, 0, 1.0), at=at
        )
        snapshot = students.poll(TABLE, kernels(), gpu, None)
    times = {t.user: (t.busy_seconds, t.memory_byte_seconds) for t in snapshot.gpu_time}
    assert times == {"ada": (2.0, 4 * GIB), "bob": (4.0, 0.0)}


def test_a_kernel_process_is_found_by_ancestry_with_start_times_checked():
    running = {100: KERNEL}
    assert kernel_of(TABLE.get(101), TABLE, running) == KERNEL
    assert kernel_of(TABLE.get(200), TABLE, running) is None
    reused = {100: RunningKernel("ada", 100, 999, "/x/kernel-old.json", 1001)}  # pid reused
    assert kernel_of(TABLE.get(101), TABLE, reused) is None
    looping = ProcessTable({7: entry(7, 8, "ada"), 8: entry(8, 7, "ada")})
    assert kernel_of(looping.get(7), looping, running) is None
    assert kernel_of(None, TABLE, running) is None


def killed(seq: int, cause: str = "SIGKILL", status: int = signal.SIGKILL) -> KernelCrash:
    return KernelCrash(seq, KERNEL, cause, status, BOOT + 10_000 + 99)


def test_a_sigkill_the_kernel_log_names_is_the_oom_killers_with_the_limit(tmp_path):
    clock = Clock()
    students = source(tmp_path, clock)
    host = HostSnapshot(
        (UserHost("ada", 1.0, GIB, 2 * GIB, 1, "cgroup"),),
        (OomVictim(100, "ada", clock.wall() - 1),),
    )
    assert students.poll(TABLE, kernels(killed(1), running=()), None, host).deaths == ()
    snapshot = students.poll(TABLE, kernels(killed(1), running=()), None, host)  # a poll later
    (death,) = snapshot.deaths
    assert (death.kernel_id, death.reason) == ("k1", "oom_killer")
    assert death.detail.endswith("memory limit of 2.0 GiB")
    # A crash is judged once, however often the kernels source lists it.
    snapshot = students.poll(TABLE, kernels(killed(1), running=()), None, host)
    assert len(snapshot.deaths) == 1 and snapshot.death_counts == {("ada", "oom_killer"): 1}


def test_without_the_kernel_log_the_cgroups_oom_counter_tells(tmp_path):
    clock = Clock()
    students = source(tmp_path, clock)
    before = HostSnapshot((UserHost("ada", 1.0, GIB, None, 0, "cgroup"),))
    students.poll(TABLE, kernels(), None, before)
    clock.now += 1
    after = HostSnapshot((UserHost("ada", 1.0, GIB, None, 1, "cgroup"),))
    students.poll(TABLE, kernels(killed(1), running=()), None, after)
    (death,) = students.poll(TABLE, kernels(killed(1), running=()), None, after).deaths
    assert death.reason == "oom_killer" and "ran short of memory" in death.detail
    # Long after the counter last grew, a SIGKILL is someone's signal.
    clock.now += 600
    late = KernelCrash(2, KERNEL, "SIGKILL", signal.SIGKILL, clock.wall())
    students.poll(TABLE, kernels(late, running=()), None, after)
    deaths = students.poll(TABLE, kernels(late, running=()), None, after).deaths
    assert [d.reason for d in deaths] == ["oom_killer", "signal"]


def test_an_xid_on_the_kernels_gpu_names_its_death_even_after_it_stopped_running(tmp_path):
    clock = Clock()
    students = source(tmp_path, clock)
    students.poll(TABLE, kernels(), nvml(GpuProcess(0, "GPU-a", 100, GIB, 0.0)), None)
    clock.now += 3  # judged a poll after it died, no longer running
    crashes = kernels(killed(1, "SIGABRT", signal.SIGABRT), running=())
    # The kernel aborted before the NVML source had read the XID: not judged yet...
    assert students.poll(TABLE, crashes, nvml(), None).deaths == ()
    # ...but a poll later, once NVML has read it.
    xid = XidEvent("GPU-a", 43, clock.wall() - 2)
    (death,) = students.poll(TABLE, crashes, nvml(xids=(xid,)), None).deaths
    assert death.reason == "xid" and "XID 43" in death.detail


def test_culls_are_counted_once_per_kernel_seen_lately_for_that_user(tmp_path):
    clock = Clock()
    students = source(tmp_path, clock)
    assert students.record_cull("ada", "k1") is None  # not seen yet
    students.poll(TABLE, kernels(), None, None)
    assert students.record_cull("bob", "k1") is None  # not bob's
    assert students.record_cull("ada", "k1") == 1
    assert students.record_cull("ada", "k1") == 1  # reported twice, counted once
    clock.now += 60
    assert students.poll(TABLE, kernels(running=()), None, None).idle_culls == {"ada": 1}
    clock.now += CULLABLE_SECONDS
    students.poll(TABLE, kernels(running=()), None, None)
    assert students.record_cull("ada", "k1") is None  # long gone


def test_with_a_hub_its_users_have_series_and_no_one_else(tmp_path):
    clock = Clock()
    roster = SharedRoster(hub_configured=True)
    roster.update([("ada", "ada"), ("carol", "carol")])
    students = source(tmp_path, clock, roster)
    snapshot = students.poll(TABLE, kernels(), nvml(GpuProcess(0, "GPU-a", 300, GIB, 0.5)), None)
    assert snapshot.users == {"ada", "carol"}
    assert {t.user for t in snapshot.gpu_time} == set()  # bob is not a hub user
