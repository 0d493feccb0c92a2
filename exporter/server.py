"""The HTTP server layer: uvicorn, with the connection handling a shared machine needs.

uvicorn's own options are not enough against one local account holding connections open:
its keep-alive timer starts only after a response (a connection that never sends a request
is never closed), and ``limit_concurrency`` answers 503 only after accepting, so idle
sockets still use up the file descriptors and every scrape times out. Here uvicorn's h11
protocol is subclassed to keep a ``connections.ConnectionTable``: a cap on open connections
well under the open-file limit (the longest idle one is closed for a new one), and a
deadline from accept for each request. See docs/exporter.md for the measurements.

Also here: binding the socket before uvicorn starts (an address that does not resolve, or a
port it may not bind, is one line and exit code 2, not uvicorn's; a port in use is waited
for), raising the soft open-file limit to the hard one (as Go programs do), and accept
errors logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .connections import ConnectionTable

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors kept for NVML, /proc reads, the hub client, logs
# The listen queue, and also how many connections asyncio accepts in one go, before any of
# them reaches the ConnectionTable: cap + BACKLOG + FD_RESERVE must fit in the open files.
BACKLOG = 128
SWEEP_SECONDS = 1.0
LOG_EVERY_SECONDS = 60.0
REQUEST_HEAD_BYTES = 16 * 1024  # request line and headers (docs/exporter.md)
BIND_RETRY_SECONDS = 1.0
# Errors that pass: another process holds the port (the exporter before this one, still
# stopping), or the address is not up yet (early at boot). Anything else is configuration.
TRANSIENT_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})


class StartupError(Exception):
    """The server cannot start; str() is one line."""


class PortBusy(Exception):
    """The address cannot be bound now but may be soon; str() is one line."""


def raise_open_file_limit() -> int:
    """Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.info("open-file limit stays %d: %s", soft, exc)
    return soft


def connection_cap(wanted: int, open_files: int) -> int:
    """At most `wanted` connections, and never so many that accept() runs out of descriptors
    (asyncio accepts up to BACKLOG at once, before the table sees one)."""
    return max(1, min(wanted, open_files - FD_RESERVE - BACKLOG))


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound sockets for every address host:port resolves to (as asyncio's create_server
    does: "localhost" may be both 127.0.0.1 and ::1), or StartupError."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise StartupError(f"cannot listen on {host}:{port}: the address does not resolve") from exc
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        sock = socket.socket(family, kind, proto)
        sockets.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except OSError as exc:
            for opened in sockets:
                opened.close()
            where = f"{host}:{port}: {exc.strerror or exc}"
            if exc.errno in TRANSIENT_BIND_ERRORS:
                raise PortBusy(f"{host}:{port} ({exc.strerror})") from exc
            if exc.errno == errno.EACCES:
                where += (
                    " (a port below net.ipv4.ip_unprivileged_port_start takes "
                    "CAP_NET_BIND_SERVICE, which the systemd unit gives)"
                )
            raise StartupError(f"cannot listen on {where}") from exc
        sock.setblocking(False)
    return sockets


def bind_when_free(
    host: str,
    port: int,
    retry_seconds: float = BIND_RETRY_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[socket.socket]:
    """bind(), again every retry_seconds while the port is busy, however long.

    A port in use is no configuration error: exiting would leave the exporter down (or, in
    a restart loop, at a start limit) after whatever held the port lets go. Its port is
    privileged (installer/layout/ports.py), so whoever holds it is root or a system service,
    never a student. One line when it starts waiting, one when it listens."""
    waiting = False
    while True:
        try:
            sockets = bind(host, port)
        except PortBusy as busy:
            if not waiting:
                log.warning("cannot listen on %s yet: trying again every %g s", busy, retry_seconds)
                waiting = True
            sleep(retry_seconds)
            continue
        if waiting:
            log.warning("the port is free: listening on %s:%s", host, port)
        return sockets


class OncePerInterval(logging.Filter):
    """Lets each message through at most once per interval (per message template)."""

    def __init__(self, interval: float = LOG_EVERY_SECONDS, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = self.clock(), str(record.msg)
        if now - self._last.get(key, -self.interval) < self.interval:
            return False
        self._last[key] = now
        return True


def limit_logs() -> None:
    """No log line per client or per request: any local account can connect, so whatever a
    client can trigger is logged at most once a minute, and httpx's request lines are off."""
    for name in (__name__, "uvicorn.error", "asyncio"):
        logging.getLogger(name).addFilter(OncePerInterval())
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio logs a full traceback for every failed accept(); one line a minute will do."""
    error = context.get("exception")
    if isinstance(error, OSError) and "accept" in str(context.get("message", "")):
        log.warning("cannot accept connections: %s", error.strerror or error)
        return
    loop.default_exception_handler(context)


class CalmServer(uvicorn.Server):
    """uvicorn's server, waking once a second instead of ten times to check for shutdown.

    uvicorn's ``main_loop`` (0.54, server.py) sleeps 0.1 s between ``on_tick`` calls, which
    refresh the Date header when the counter is a multiple of 10; counting in tens keeps
    that once a second. A stop is seen within a second; an idle exporter is meant to use
    next to no CPU (docs/performance.md).
    """

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            await asyncio.sleep(1.0)
            counter = (counter + 10) % 864000


class ConnectionGuard:
    """Applies the ConnectionTable's verdicts to live connections."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.table: ConnectionTable[H11Protocol] = ConnectionTable(capacity)
        self.clock = clock
        self._sweeper: asyncio.TimerHandle | None = None

    def opened(self, connection: H11Protocol) -> None:
        victim = self.table.opened(connection, self.clock())
        if victim is not None:
            self.close(victim)
        if self._sweeper is None:
            self._sweep()

    def update(self, connection: H11Protocol) -> None:
        """Busy while uvicorn answers a request, else idle."""
        cycle = connection.cycle
        if cycle is not None and not cycle.response_complete:
            self.table.busy(connection, self.clock())
        else:
            self.table.idle(connection, self.clock())

    def close(self, connection: H11Protocol) -> None:
        self.table.closed(connection)
        connection.transport.abort()  # frees the descriptor now, unsent data or not

    def _sweep(self) -> None:
        for connection in self.table.expired(self.clock()):
            self.close(connection)
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()


class CappedHeadConnection(h11.Connection):
    """h11's server side, with its cap on a request head kept however the head arrives.

    h11 (0.16, ``_connection.py`` ``next_event``) refuses a head over
    ``max_incomplete_event_size`` only while the head is still incomplete: one that arrives
    whole in one read (up to asyncio's 256 KiB) is parsed whatever its size. Here the bytes
    a request head took from the receive buffer are counted too. ``_receive_buffer`` is
    h11's; its public ``trailing_data`` copies the whole buffer at every event, which a
    client pipelining many small requests would make quadratic.
    """

    def next_event(self):  # type: ignore[no-untyped-def]
        waiting = self.their_state is h11.IDLE
        before = len(self._receive_buffer) if waiting else 0
        event = super().next_event()
        taken = before - len(self._receive_buffer)
        if waiting and isinstance(event, h11.Request) and taken > self._max_incomplete_event_size:
            # uvicorn answers 400 and closes, as for h11's own refusal.
            raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """uvicorn's h11 protocol, reporting each connection's state to guard, with request
    heads capped at REQUEST_HEAD_BYTES."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = CappedHeadConnection(h11.SERVER, REQUEST_HEAD_BYTES)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            guard.opened(self)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            guard.update(self)

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start a pipelined request at once
            guard.update(self)

        def connection_lost(self, exc: Exception | None) -> None:
            guard.table.closed(self)
            super().connection_lost(exc)

    return GuardedH11Protocol


def serve(app: Any, sockets: list[socket.socket], max_connections: int) -> None:
    """Runs app on the bound sockets until SIGTERM/SIGINT."""
    guard = ConnectionGuard(max_connections)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(guard),
        loop="asyncio",
        lifespan="on",
        backlog=BACKLOG,
        log_config=None,  # the exporter's own logging (cli.py) stays in charge
        log_level="warning",
        access_log=False,  # no line per request: any local account could fill the disk
        timeout_graceful_shutdown=5,
    )
    server = CalmServer(config)

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(quiet_accept_errors)
        try:
            await server.serve(sockets=sockets)
        finally:
            guard.stop()

    asyncio.run(run())
