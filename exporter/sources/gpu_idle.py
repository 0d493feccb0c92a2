"""Since when a kernel (or a student's other GPU process) has held GPU memory idle.

Something is idle at a reading when it holds GPU memory and the SM utilization NVML sampled
for it (with its descendants) is 0. Its ``idle_since`` is the wall-clock time of the first
reading of its current idle run; a reading with any activity, or without memory, ends the
run. So the clock judges the recent window, never the session: a kernel that trained for
an hour and then sat for ten minutes has been idle for ten minutes.

Activity between two readings is not missed: NVML returns one sample per process "that had
some non-zero utilization during the last sample period", and the exporter asks for the
samples since the previous reading (``lastSeenTimeStamp``; nvml.h, NVML API 12,
``nvmlDeviceGetProcessUtilization``), so a burst shows at the next reading.

The exporter applies no threshold: the culler and the student's page decide what is too
long or too much (TLJH's ``dlcourse.gpu_idle_*`` settings, read by the hub side).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class IdleClocks(Generic[Key]):
    def __init__(self) -> None:
        self._since: dict[Key, float] = {}

    def update(
        self, readings: Mapping[Key, tuple[float, int]], now: float
    ) -> dict[Key, float | None]:
        """(utilization, memory bytes) of everything read now -> its idle_since (unix time)
        or None. What is not in readings is forgotten: a later idle run starts afresh."""
        since: dict[Key, float] = {}
        for key, (utilization, memory) in readings.items():
            if memory > 0 and utilization == 0:
                since[key] = self._since.get(key, now)
        self._since = since
        return {key: since.get(key) for key in readings}
