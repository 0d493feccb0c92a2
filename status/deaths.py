"""Why a kernel died, in plain words, with one line of what to try.

The exporter names the reason (``oom_killer``, ``cuda_oom``, ``xid``, ``signal``, ``exit``)
and a one-line detail (the memory limit, the XID number, the signal's name, the exit code).
A student reads the sentence; the reason's name stays in the JSON for the extension.
"""

from __future__ import annotations

from dataclasses import dataclass

# The detail comes from the exporter and is shown to the student whose kernel it was; keep
# it one short line whatever arrives.
MAX_DETAIL = 120


@dataclass(frozen=True)
class Explanation:
    what: str  # "Killed by the out-of-memory killer (limit 4 GiB)."
    advice: str  # one line of what to try


ADVICE = {
    "oom_killer": (
        "Killed by the out-of-memory killer: your server ran out of memory{detail}.",
        "Use less memory: a smaller batch or dataset slice, fewer DataLoader workers, and "
        "del large objects you no longer need; then restart the kernel.",
    ),
    "cuda_oom": (
        "CUDA out of memory: the GPU had no room for what the notebook asked{detail}.",
        "Use a smaller batch or model, free tensors you no longer need (del x, then "
        "torch.cuda.empty_cache()), or train in mixed precision (torch.autocast).",
    ),
    "xid": (
        "A GPU error stopped the kernel{detail}.",
        "Usually not your code: restart the kernel and run again; if it happens again, "
        "tell the course staff (they see the GPU's errors).",
    ),
    "signal": (
        "The kernel crashed{detail}.",
        "Often a compiled library (a CUDA extension, mismatched package versions): restart "
        "the kernel and run the cells one by one to find the one that crashes.",
    ),
    "exit": (
        "The kernel exited with an error{detail}.",
        "Look for sys.exit() or os._exit() in your code or an imported package, then "
        "restart the kernel.",
    ),
}
UNKNOWN = (
    "The kernel stopped unexpectedly{detail}.",
    "Restart the kernel; if it keeps happening, tell the course staff.",
)


def explain(reason: str, detail: str) -> Explanation:
    what, advice = ADVICE.get(reason, UNKNOWN)
    detail = " ".join(str(detail).split())[:MAX_DETAIL]
    return Explanation(what.format(detail=f" ({detail})" if detail else ""), advice)
