"""GPU time per user and GPU: utilization and memory integrated over time, as counters.

Each reading of a GPU's process list gives each user's use at that moment: the SM
utilization of their processes (NVML's per-process sample of the last sample period,
summed and capped at 1, as ``dlcourse_user_gpu_utilization_ratio`` shows it) and the
memory they hold. Two students sharing a GPU each have their own samples, so each gets
their own share, never the GPU's total.

How the readings are joined (``GpuTimeMeter.add``):

- Between two readings of the same GPU the use is taken to change linearly (the trapezoid
  rule), over the time that really passed between them: the readings' own monotonic
  timestamps (``NvmlSnapshot.read_at``), not the nominal interval, so a late, slow or short
  cycle counts for exactly as long as it lasted. Steady use is integrated exactly; a step
  between two readings is off by at most half the step times the gap, and rising and
  falling edges cancel out over time (the square-wave test: within 5 %).
- A cycle in which a GPU's process list could not be read (NVML down, the call failed)
  leaves that GPU's last reading in place: the next reading spans the gap, as long as it is
  at most ``max_gap`` seconds (a few cycles). Across a longer gap nothing is counted: what
  happened in between is unknown, and a counter of GPU time must not invent any.
- A user who appears or leaves between two readings counts as 0 at the reading they are
  absent from: half the gap's worth, the expected share when the moment is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..model import GpuTime

# (SM utilization 0..1, memory bytes) of one user's processes on one GPU at one reading
Use = tuple[float, int]


@dataclass(frozen=True)
class GpuReading:
    """One GPU's process list at one moment, summed per user."""

    gpu_index: int
    gpu_uuid: str
    at: float  # time.monotonic() of the reading
    users: Mapping[str, Use]


@dataclass
class _Total:
    gpu_index: int
    busy_seconds: float = 0.0
    memory_byte_seconds: float = 0.0


class GpuTimeMeter:
    def __init__(self, max_gap: float) -> None:
        self.max_gap = max_gap
        self._last: dict[str, GpuReading] = {}  # GPU uuid -> its last reading
        self._totals: dict[tuple[str, str], _Total] = {}  # (user, uuid) -> since start

    def add(self, readings: Iterable[GpuReading]) -> None:
        """Counts the time since each GPU's previous reading; a GPU not read this time
        keeps its last reading for the next."""
        for reading in readings:
            previous = self._last.get(reading.gpu_uuid)
            self._last[reading.gpu_uuid] = reading
            for user in reading.users:
                self._total(user, reading).gpu_index = reading.gpu_index
            if previous is None:
                continue
            gap = reading.at - previous.at
            if not 0 < gap <= self.max_gap:
                continue  # unknown time: counted as nothing
            for user in previous.users.keys() | reading.users.keys():
                (util0, memory0) = previous.users.get(user, (0.0, 0))
                (util1, memory1) = reading.users.get(user, (0.0, 0))
                total = self._total(user, reading)
                total.busy_seconds += gap * (util0 + util1) / 2
                total.memory_byte_seconds += gap * (memory0 + memory1) / 2

    def _total(self, user: str, reading: GpuReading) -> _Total:
        key = (user, reading.gpu_uuid)
        if key not in self._totals:
            self._totals[key] = _Total(reading.gpu_index)
        return self._totals[key]

    def totals(self) -> tuple[GpuTime, ...]:
        return tuple(
            GpuTime(user, total.gpu_index, uuid, total.busy_seconds, total.memory_byte_seconds)
            for (user, uuid), total in sorted(self._totals.items())
        )

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drops the users who no longer count (their counters would only ever stay flat)."""
        self._totals = {key: total for key, total in self._totals.items() if keep(key[0])}


def per_user(processes: Iterable[tuple[str, float, int]]) -> dict[str, Use]:
    """(user, utilization, memory) of each process -> each user's use: utilization summed
    and capped at 1, memory summed."""
    summed: dict[str, Use] = {}
    for user, utilization, memory in processes:
        util, held = summed.get(user, (0.0, 0))
        summed[user] = (util + utilization, held + memory)
    return {user: (min(util, 1.0), held) for user, (util, held) in summed.items()}
