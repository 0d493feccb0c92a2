"""Which HTTP connections to close: over the cap, or without progress for too long.

Any local account can open connections to the exporter, and one that holds them idle
would otherwise keep file descriptors until none is left for Prometheus. So every
connection is either *idle* (accepted or answered, waiting for a request) or *busy*
(a request is being answered), and:

- an idle connection is closed ``REQUEST_TIMEOUT`` seconds after it was accepted or last
  answered, even if it sends bytes now and then (a request must arrive whole by then);
- a busy one is closed ``RESPONSE_TIMEOUT`` seconds after its request arrived (a client
  that does not read its answer);
- a new connection past ``capacity`` closes the one idle the longest (else the one busy
  the longest). A fresh scrape is read long before ``capacity`` newer connections push it
  to the front, as long as connections are accepted in smaller batches than that
  (``server.BACKLOG``; measured in docs/exporter.md, even against a client that reopens
  every closed connection at once).

Pure bookkeeping, with the time passed in; ``server.py`` does the closing.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

REQUEST_TIMEOUT = 10.0
RESPONSE_TIMEOUT = 30.0

C = TypeVar("C", bound=Hashable)


class ConnectionTable(Generic[C]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Both in the order they entered that state: the first is the oldest.
        self._idle: dict[C, float] = {}
        self._busy: dict[C, float] = {}

    def __len__(self) -> int:
        return len(self._idle) + len(self._busy)

    def opened(self, connection: C, now: float) -> C | None:
        """Adds a new connection; returns the one to close to stay within capacity."""
        self._idle[connection] = now
        if len(self) <= self.capacity:
            return None
        return next(iter(self._idle if len(self._idle) > 1 else self._busy))

    def busy(self, connection: C, now: float) -> None:
        if self._idle.pop(connection, None) is not None:
            self._busy[connection] = now

    def idle(self, connection: C, now: float) -> None:
        """The connection answered its request (a no-op when it was idle already: bytes
        that trickle in do not buy time)."""
        if self._busy.pop(connection, None) is not None:
            self._idle[connection] = now

    def closed(self, connection: C) -> None:
        self._idle.pop(connection, None)
        self._busy.pop(connection, None)

    def expired(
        self,
        now: float,
        request_timeout: float = REQUEST_TIMEOUT,
        response_timeout: float = RESPONSE_TIMEOUT,
    ) -> list[C]:
        """Connections past their time, oldest first."""
        late = [c for c, since in self._idle.items() if now - since > request_timeout]
        return late + [c for c, since in self._busy.items() if now - since > response_timeout]
