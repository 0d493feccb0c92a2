"""The kernels the idle-GPU culler reports it shut down, counted for
``dlcourse_user_gpu_idle_culls_total``.

The culler is trusted with its own token, not blindly: a cull counts only for a kernel the
exporter saw running for that user in the last ``CULLABLE_SECONDS`` (the culler shuts a
kernel down first, then reports it), and once per kernel however often it is reported.
The API records from the event loop while the students source reads from its thread.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

CULLABLE_SECONDS = 600.0
KNOWN_KERNELS_PER_USER = 256


class CullLedger:
    """The culls the culler reported: counted once per kernel, only for kernels seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, float]] = defaultdict(dict)  # user -> kernel id -> when
        self._culled: dict[str, set[str]] = defaultdict(set)
        self.counts: Counter[str] = Counter()

    def saw(self, user: str, kernel_ids: Iterable[str], now: float) -> None:
        with self._lock:
            seen = self._seen[user]
            for kernel in kernel_ids:
                seen.pop(kernel, None)  # the newest last: the oldest go first
                seen[kernel] = now
            while len(seen) > KNOWN_KERNELS_PER_USER:
                oldest = next(iter(seen))
                del seen[oldest]
                self._culled[user].discard(oldest)

    def record(self, user: str, kernel: str, now: float) -> int | None:
        """The user's culls after counting this one; None for a kernel not seen for them."""
        with self._lock:
            seen = self._seen.get(user, {}).get(kernel)
            if seen is None or now - seen > CULLABLE_SECONDS:
                return None
            if kernel not in self._culled[user]:
                self._culled[user].add(kernel)
                self.counts[user] += 1
            return self.counts[user]

    def forget(self, now: float, keep: Callable[[str], bool]) -> None:
        with self._lock:
            for user in list(self._seen):
                fresh = {k: t for k, t in self._seen[user].items() if now - t <= CULLABLE_SECONDS}
                self._seen[user] = fresh
                self._culled[user] &= set(fresh)
                if not fresh:
                    del self._seen[user]
            for user in list(self.counts):
                if not keep(user):
                    del self.counts[user]
            for user in list(self._culled):
                if not self._culled[user]:
                    del self._culled[user]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)
