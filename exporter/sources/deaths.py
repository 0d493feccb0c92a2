"""Why a student's kernel died, in plain words: the evidence, judged in order.

``sources.kernels`` has already told a crash from a shutdown or a restart (its
``classify``, the basis of ``dlcourse_user_kernel_crashes_total``) and how the process ended:
a signal, or a non-zero exit code. Here that is refined with what else the exporter saw,
the first reason with evidence winning (``DEATH_REASONS``):

1. ``oom_killer``: killed by SIGKILL, and the kernel log named this pid as the OOM killer's
   victim (``sources.host``), or, where the log cannot be read, the student's cgroup counted
   an OOM kill around the time it died. The detail gives the memory limit where one is known.
2. ``cuda_oom``: the kernel noted a CUDA out-of-memory error about itself shortly before it
   died (``sources.kernel_errors``).
3. ``xid``: the driver reported an XID error on a GPU the kernel held memory on, shortly
   before it died (or while its death was being judged). NVML does not say which process an
   XID hit, so on a shared GPU this names the likely cause, not a certain one.
4. ``signal``: any other signal (SIGSEGV, SIGABRT, SIGKILL by someone, ...).
5. ``exit``: a non-zero exit code.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

from ..model import KernelCrash, KernelDeath, XidEvent
from ..untrusted import shown_text
from .kernel_errors import GpuError
from .procfs import kernel_id

# How long before a death an error on the kernel's GPU, or its own CUDA OOM, still explains it.
EVIDENCE_WINDOW_SECONDS = 60.0
MAX_DETAIL_CHARS = 240


@dataclass(frozen=True)
class Evidence:
    """What else was seen around one kernel's death."""

    oom_killed: bool = False
    memory_limit_bytes: int | None = None
    cuda_oom: GpuError | None = None
    xid: XidEvent | None = None
    xid_gpu_index: int | None = None


def judge(crash: KernelCrash, evidence: Evidence) -> KernelDeath:
    kernel = crash.kernel
    if crash.cause == "SIGKILL" and evidence.oom_killed:
        reason, detail = "oom_killer", oom_detail(evidence.memory_limit_bytes)
    elif evidence.cuda_oom is not None:
        reason, detail = "cuda_oom", evidence.cuda_oom.message or "CUDA out of memory"
    elif evidence.xid is not None:
        gpu = "" if evidence.xid_gpu_index is None else f"GPU {evidence.xid_gpu_index} "
        detail = (
            f"GPU error XID {evidence.xid.xid} on {gpu}({evidence.xid.gpu_uuid}), "
            f"then {ending(crash)}"
        )
        reason = "xid"
    elif crash.cause == "exit":
        reason, detail = "exit", ending(crash)
    else:
        reason, detail = "signal", ending(crash)
    return KernelDeath(
        kernel.user,
        kernel_id(kernel.connection_file),
        crash.ended_at,
        reason,
        shown_text(detail, MAX_DETAIL_CHARS),
        kernel.notebook,
    )


def ending(crash: KernelCrash) -> str:
    """How the process ended, in words: "exited with code 3", "killed by SIGSEGV
    (Segmentation fault)"."""
    if crash.cause == "exit":
        return f"exited with code {(crash.status >> 8) & 0xFF}"
    try:
        described = signal.strsignal(signal.Signals[crash.cause])
    except (KeyError, ValueError):
        described = None
    return f"killed by {crash.cause}" + (f" ({described})" if described else "")


def oom_detail(limit: int | None) -> str:
    if limit is None:
        return "killed by the out-of-memory killer: the machine ran short of memory"
    return f"killed by the out-of-memory killer at its memory limit of {size(limit)}"


def size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def within(at: float, ended_at: float, judged_at: float) -> bool:
    """Whether something at `at` is close enough to a death at ended_at to explain it: in
    the window before it, or after it while the death was judged."""
    return ended_at - EVIDENCE_WINDOW_SECONDS <= at <= judged_at


def cuda_oom_of(
    crash: KernelCrash, errors: Iterable[GpuError], judged_at: float
) -> GpuError | None:
    """The kernel's own latest CUDA OOM in the window, if any."""
    mine = [
        error
        for error in errors
        if error.pid == crash.kernel.pid and within(error.at, crash.ended_at, judged_at)
    ]
    return max(mine, key=lambda error: error.at, default=None)


def xid_of(
    crash: KernelCrash, gpus: Iterable[str], xids: Iterable[XidEvent], judged_at: float
) -> XidEvent | None:
    """The latest XID in the window on one of the GPUs the kernel held memory on."""
    held = set(gpus)
    near = [
        event
        for event in xids
        if event.gpu_uuid in held and within(event.at, crash.ended_at, judged_at)
    ]
    return max(near, key=lambda event: event.at, default=None)
