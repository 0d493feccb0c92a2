"""Why a kernel died: the first reason with evidence, in plain words."""

from __future__ import annotations

import signal

import pytest

from dlcourse_exporter.model import KernelCrash, RunningKernel, XidEvent
from dlcourse_exporter.sources.deaths import (
    EVIDENCE_WINDOW_SECONDS,
    Evidence,
    cuda_oom_of,
    judge,
    xid_of,
)
from dlcourse_exporter.sources.kernel_errors import GpuError

KERNEL = RunningKernel("ada", 4242, 100, "/home/jupyter-ada/run/kernel-3c1d.json", 1001)
ENDED = 1_000.0
OOM = GpuError(4242, ENDED - 5, "cuda_oom", "CUDA out of memory. Tried to allocate 2.00 GiB")
XID = XidEvent("GPU-a", 79, ENDED - 2)


def crash(cause: str, status: int) -> KernelCrash:
    return KernelCrash(1, KERNEL, cause, status, ENDED)


SIGKILL = crash("SIGKILL", signal.SIGKILL)
SIGSEGV = crash("SIGSEGV", signal.SIGSEGV | 0x80)  # core dumped
EXIT_3 = crash("exit", 3 << 8)


@pytest.mark.parametrize(
    ("died", "evidence", "reason", "detail"),
    [
        (
            SIGKILL,
            Evidence(oom_killed=True, memory_limit_bytes=2 << 30),
            "oom_killer",
            "killed by the out-of-memory killer at its memory limit of 2.0 GiB",
        ),
        (
            SIGKILL,
            Evidence(oom_killed=True, cuda_oom=OOM),  # the kernel log names it: that first
            "oom_killer",
            "killed by the out-of-memory killer: the machine ran short of memory",
        ),
        # Only a SIGKILL is the OOM killer's.
        (SIGSEGV, Evidence(oom_killed=True), "signal", "killed by SIGSEGV (Segmentation fault)"),
        (SIGSEGV, Evidence(cuda_oom=OOM, xid=XID), "cuda_oom", OOM.message),
        (
            EXIT_3,
            Evidence(xid=XID, xid_gpu_index=1),
            "xid",
            "GPU error XID 79 on GPU 1 (GPU-a), then exited with code 3",
        ),
        (SIGKILL, Evidence(), "signal", "killed by SIGKILL (Killed)"),
        (EXIT_3, Evidence(), "exit", "exited with code 3"),
        (crash("SIG40", 40), Evidence(), "signal", "killed by SIG40"),
    ],
)
def test_the_first_reason_with_evidence_names_the_death(died, evidence, reason, detail):
    death = judge(died, evidence)
    assert (death.user, death.kernel_id, death.at) == ("ada", "3c1d", ENDED)
    assert (death.reason, death.detail) == (reason, detail)


def test_a_cuda_oom_counts_only_from_that_kernel_process_shortly_before():
    judged = ENDED + 3
    assert cuda_oom_of(SIGSEGV, [OOM], judged) == OOM
    restarted = GpuError(4343, ENDED - 5, "cuda_oom", "x")  # its predecessor's, same file
    long_ago = GpuError(4242, ENDED - EVIDENCE_WINDOW_SECONDS - 1, "cuda_oom", "x")
    assert cuda_oom_of(SIGSEGV, [restarted, long_ago], judged) is None
    later = GpuError(4242, ENDED - 1, "cuda_oom", "later")
    assert cuda_oom_of(SIGSEGV, [OOM, later], judged) == later


def test_an_xid_counts_only_on_a_gpu_the_kernel_held_near_its_death():
    judged = ENDED + 3
    assert xid_of(SIGSEGV, ["GPU-a"], [XID], judged) == XID
    assert xid_of(SIGSEGV, ["GPU-b"], [XID], judged) is None  # a classmate's GPU
    assert xid_of(SIGSEGV, [], [XID], judged) is None
    after = XidEvent("GPU-a", 43, ENDED + 1)  # reported while the death was judged
    assert xid_of(SIGSEGV, ["GPU-a"], [XID, after], judged) == after
    too_old = XidEvent("GPU-a", 31, ENDED - EVIDENCE_WINDOW_SECONDS - 1)
    assert xid_of(SIGSEGV, ["GPU-a"], [too_old], judged) is None
