"""Which GPU a student's server gets: the policies, as pure functions (no I/O, no hub).

    least-loaded  (default) the GPU with the fewest assigned running servers, then the least
                  memory in use; a GPU that is nearly full is skipped while another is not
    round-robin   GPU 0, 1, 2, ... in the order servers start, whatever they hold
    roster        the roster's ``gpu`` column (project teams share a GPU); a student
                  without one, or with a GPU this server lacks, gets least-loaded
    all           every GPU, as without dlcourse (no CUDA_VISIBLE_DEVICES)

least-loaded and round-robin pass over a GPU the exporter does not report up while another
is. The hook (``gpu_hook``) gathers the inputs and applies the choice;
docs/gpu-assignment.md says which policy suits which course.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

POLICIES = ("least-loaded", "round-robin", "roster", "all")
DEFAULT_POLICY = "least-loaded"
# least-loaded skips a GPU with this share of its memory in use (someone's training run
# fills it): a new student there would fail with "CUDA out of memory" at once.
FULL_RATIO = 0.9


@dataclass(frozen=True)
class GpuLoad:
    """One GPU: who it is (the driver's list) and its load (as the exporter last saw it)."""

    index: int
    uuid: str
    memory_used_bytes: float = 0.0
    memory_total_bytes: float = 0.0
    up: bool = True  # the exporter reports it up, or nobody could say
    minor: int | None = None  # the driver's device minor: /dev/nvidiaN

    @property
    def nearly_full(self) -> bool:
        return self.memory_total_bytes > 0 and (
            self.memory_used_bytes >= FULL_RATIO * self.memory_total_bytes
        )


@dataclass(frozen=True)
class Choice:
    gpu: GpuLoad | None  # None: every GPU, or none at all when failed
    why: str  # for the hub's log
    failed: bool = False  # no GPU could be chosen (strict mode then gives none)


def choose(
    policy: str,
    user: str,
    gpus: Sequence[GpuLoad],
    assigned: Mapping[str, str],
    roster_gpus: Mapping[str, int],
    turn: int,
) -> Choice:
    """The GPU for ``user``'s new server.

    assigned: user -> GPU uuid of the other running servers; turn: how many servers
    round-robin has placed before this one."""
    if policy == "all":
        return Choice(None, "policy all")
    if not gpus:
        return Choice(None, "no GPUs known", failed=True)
    if policy == "round-robin":
        ring = sorted([g for g in gpus if g.up] or gpus, key=lambda g: g.index)
        return Choice(ring[turn % len(ring)], f"round-robin, turn {turn}")
    if policy == "roster":
        wanted = roster_gpus.get(user)
        by_index = {g.index: g for g in gpus}
        if wanted in by_index:
            return Choice(by_index[wanted], "the roster's gpu column")
        fallback = least_loaded(gpus, assigned)
        reason = f"the roster's GPU {wanted} is absent" if wanted is not None else "no roster gpu"
        return Choice(fallback.gpu, f"{reason}, so {fallback.why}")
    return least_loaded(gpus, assigned)


def least_loaded(gpus: Sequence[GpuLoad], assigned: Mapping[str, str]) -> Choice:
    servers = Counter(assigned.values())
    up = [g for g in gpus if g.up] or list(gpus)
    candidates = [g for g in up if not g.nearly_full] or up
    gpu = min(candidates, key=lambda g: (servers[g.uuid], g.memory_used_bytes, g.index))
    used = gpu.memory_used_bytes / 2**30
    skipped = len(up) - len(candidates)
    return Choice(
        gpu,
        f"least-loaded: {servers[gpu.uuid]} other servers, {used:.1f} GiB in use"
        + (f", {skipped} nearly full GPU(s) skipped" if skipped else ""),
    )
