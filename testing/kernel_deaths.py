"""Each way a student's kernel dies, provoked for real on a live kernel (issue 23).

For the exporter's tests (tests/exporter/test_students_live.py) and for the live hub's
proof that the right reason is shown in at least 95 of 100 deaths of each kind. Nothing is
simulated but the GPU: the kernel is a real ipykernel process of a real account, killed the
way it would be in class.

A kernel is reached through ``run(code, wait)``: runs the code in the kernel (as a notebook
cell would), and with ``wait`` returns once the cell finished; without it, returns once the
request is sent (the kernel dies of it). ``pid`` is the kernel's process id.

| reason       | provoked by                                                              |
|--------------|--------------------------------------------------------------------------|
| `oom_killer` | the kernel allocating past the memory limit of the cgroup it runs in      |
|              | (``MemoryCage``: put the server there before the kernel starts)          |
| `cuda_oom`   | a cell raising PyTorch's CUDA out-of-memory error, then the kernel dying |
| `xid`        | an XID on the GPU the kernel holds memory on (stand-in NVML), then dying |
| `signal`     | SIGSEGV from outside, as a crashing C extension gets                     |
| `exit`       | ``os._exit(3)``, a library giving up                                     |
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from fakenvml import Scenario, XidEvent

Run = Callable[[str, bool], None]

CGROUPFS = Path("/sys/fs/cgroup")
MEMORY_LIMIT = 256 * 1024 * 1024
# PyTorch's own message (pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp), raised as a
# class of torch's name: the kernel extension recognises the text, as it would torch's.
CUDA_OOM_CELL = (
    "raise type('OutOfMemoryError', (RuntimeError,), {})("
    "'CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of "
    "39.39 GiB of which 1.20 GiB is free.')"
)
ABORT_CELL = "import os; os.abort()"
EXIT_CODE = 3
EXIT_CELL = f"import os; os._exit({EXIT_CODE})"
ALLOCATE_CELL = "hog = [bytearray(16 << 20) for _ in range(4096)]"  # up to 64 GiB, 16 MiB a step
DEATHS = ("oom_killer", "cuda_oom", "xid", "signal", "exit")


def memory_hierarchy() -> tuple[Path, bool] | None:
    """The memory controller's hierarchy and whether it is cgroup v2; None where there is
    none this process may use (not root, or no memory controller)."""
    if os.geteuid() != 0:
        return None
    v1 = CGROUPFS / "memory"
    if (v1 / "memory.limit_in_bytes").exists():
        return v1, False
    for root in (CGROUPFS, CGROUPFS / "unified"):
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "memory" in controllers.read_text().split():
            return root, True
    return None


class MemoryCage:
    """A memory-limited cgroup named like TLJH's unit for a hub user
    (``.../jupyter-<user>.service``, so the exporter reports its limit as the user's), in a
    parent of its own (``dlct-<random>``): nothing of systemd's is touched. Processes put
    in it, and whatever they start afterwards, are killed by the OOM killer past the limit."""

    def __init__(self, user: str, limit: int = MEMORY_LIMIT, prefix: str = "jupyter-") -> None:
        found = memory_hierarchy()
        if found is None:
            raise RuntimeError("no memory cgroup controller this process can use (root?)")
        root, self.v2 = found
        self.parent = root / f"dlct-{uuid.uuid4().hex[:8]}"
        self.path = self.parent / f"{prefix}{user}.service"
        self.parent.mkdir()
        if self.v2:
            with contextlib.suppress(OSError):  # already passed on
                (root / "cgroup.subtree_control").write_text("+memory")
            (self.parent / "cgroup.subtree_control").write_text("+memory")
        self.path.mkdir()
        if self.v2:
            (self.path / "memory.max").write_text(str(limit))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))

    def put(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self, timeout: float = 10.0) -> None:
        """Removes both directories once their processes have gone."""
        deadline = time.monotonic() + timeout
        for path in (self.path, self.parent):
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # its processes are still exiting


@contextlib.contextmanager
def memory_cage(user: str, limit: int = MEMORY_LIMIT) -> Iterator[MemoryCage]:
    cage = MemoryCage(user, limit)
    try:
        yield cage
    finally:
        cage.remove()


def inject_xid(scenario: Scenario, path: Path, gpu_index: int, xid: int = 31) -> None:
    """Adds an XID event to a GPU of the scenario (written at path, which the stand-in NVML
    reads again): 31 is a GPU memory page fault, a student's faulty CUDA kernel."""
    events = scenario.gpus[gpu_index].xid_events
    events.append(XidEvent(max((e.id for e in events), default=0) + 1, xid))
    scenario.write(path)


def provoke(
    reason: str,
    pid: int,
    run: Run,
    *,
    scenario: Scenario | None = None,
    scenario_path: Path | None = None,
    gpu_index: int = 0,
) -> None:
    """Kills the kernel so that `reason` is why. For ``oom_killer`` the kernel must already
    run in a ``MemoryCage``; for ``xid`` it must hold memory on ``gpu_index`` in the
    scenario, and the exporter must have seen it there (a cycle)."""
    if reason == "oom_killer":
        run(ALLOCATE_CELL, False)
    elif reason == "cuda_oom":
        run(CUDA_OOM_CELL, True)  # the cell fails; the kernel noted it
        run(ABORT_CELL, False)  # and then dies, as after a CUDA error it often does
    elif reason == "xid":
        if scenario is None or scenario_path is None:
            raise ValueError("an XID needs the stand-in NVML's scenario")
        inject_xid(scenario, scenario_path, gpu_index)
        run(ABORT_CELL, False)
    elif reason == "signal":
        os.kill(pid, signal.SIGSEGV)
    elif reason == "exit":
        run(EXIT_CELL, False)
    else:
        raise ValueError(f"no such death: {reason!r} (one of {', '.join(DEATHS)})")
