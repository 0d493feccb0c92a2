"""Process exec and exit events from the kernel's netlink proc connector (Linux, root).

Every process exit on the machine arrives as a PROC_EVENT_EXIT message carrying the
process's wait(2) status, so the exporter learns how a kernel died even though it is not
its parent. Needs CAP_NET_ADMIN (root); where the socket cannot be opened the caller falls
back to polling /proc.

Message layout (include/uapi/linux/netlink.h, connector.h, cn_proc.h)::

    nlmsghdr   u32 len, u16 type, u16 flags, u32 seq, u32 pid          16 bytes
    cn_msg     u32 idx, u32 val, u32 seq, u32 ack, u16 len, u16 flags  20 bytes
    proc_event u32 what, u32 cpu, u64 timestamp_ns                     16 bytes
      exec     u32 process_pid, u32 process_tgid
      exit     u32 process_pid, u32 process_tgid, u32 exit_code, u32 exit_signal, ...

``exit_code`` is the wait status; ``exit_signal`` is only the signal the parent is sent
(SIGCHLD), not the one that killed the process.

What it costs: a busy machine makes a few hundred events a second (forks, execs, exits,
renames; 180/s measured on the shared 2-core test machine, issue 12), and Python pays per
event. So on Linux 6.6 and later the subscription asks for exec and exit events only
(``struct proc_input`` in include/uapi/linux/cn_proc.h; an older kernel ignores that
message altogether, so it gets the plain one). Events are handled as they come, not in
batches: an exec is judged by reading the new program's /proc/<pid>/cmdline, and a kernel
that dies at once (a broken environment exits within milliseconds) has none left to read
a quarter of a second later; batching lost such crashes (seen in the live-class test).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

NLMSGHDR = struct.Struct("=IHHII")
CN_MSG = struct.Struct("=IIIIHH")
EVENT_HEADER = struct.Struct("=IIQ")
EXEC_DATA = struct.Struct("=II")
EXIT_DATA = struct.Struct("=IIII")
RECV_TIMEOUT = 0.5
FILTERING_KERNEL = (6, 6)  # the first Linux that takes an event filter (struct proc_input)


@dataclass(frozen=True)
class ExecEvent:
    pid: int


@dataclass(frozen=True)
class ExitEvent:
    pid: int
    status: int  # wait(2) status


def kernel_filters_events(release: str | None = None) -> bool:
    """Whether this Linux takes an event filter with the listen op (6.6 and later)."""
    release = os.uname().release if release is None else release
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= FILTERING_KERNEL


def listen_message(
    op: int = PROC_CN_MCAST_LISTEN, port: int = 0, events: int | None = None
) -> bytes:
    """The subscription; with ``events``, for those event types only (Linux 6.6+)."""
    payload = struct.pack("=I", op) if events is None else struct.pack("=II", op, events)
    cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0)
    length = NLMSGHDR.size + len(cn) + len(payload)
    return NLMSGHDR.pack(length, NLMSG_DONE, 0, 0, port) + cn + payload


def parse_events(data: bytes) -> Iterator[ExecEvent | ExitEvent]:
    """Exec events and exits of whole processes (thread exits are skipped) in a datagram."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length = NLMSGHDR.unpack_from(data, offset)[0]
        if length < NLMSGHDR.size or offset + length > len(data):
            return  # truncated or garbage: drop the rest of the datagram
        body = offset + NLMSGHDR.size
        offset += (length + 3) & ~3  # NLMSG_ALIGN
        if body + CN_MSG.size + EVENT_HEADER.size > len(data):
            continue
        idx, val = CN_MSG.unpack_from(data, body)[:2]
        if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
            continue
        event = body + CN_MSG.size
        what = EVENT_HEADER.unpack_from(data, event)[0]
        payload = event + EVENT_HEADER.size
        if what == PROC_EVENT_EXEC and payload + EXEC_DATA.size <= len(data):
            pid, tgid = EXEC_DATA.unpack_from(data, payload)
            yield ExecEvent(tgid)
        elif what == PROC_EVENT_EXIT and payload + EXIT_DATA.size <= len(data):
            pid, tgid, exit_code, _exit_signal = EXIT_DATA.unpack_from(data, payload)
            if pid == tgid:  # the thread-group leader: the process itself
                yield ExitEvent(pid, exit_code)


class ProcEventListener:
    """Reads proc connector events in a daemon thread and hands them to callbacks.

    ``on_lost(fatal)`` is called when events were dropped: the socket overflowed (ENOBUFS,
    fatal False: the caller rescans /proc) or failed for good (fatal True: the caller falls
    back to polling).
    """

    def __init__(
        self,
        on_exec: Callable[[int], None],
        on_exit: Callable[[int, int], None],
        on_lost: Callable[[bool], None],
    ) -> None:
        self.on_exec = on_exec
        self.on_exit = on_exit
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        # One reader at a time, so that a process's exec and exit are handled in order.
        self._reading = threading.Lock()

    def start(self) -> None:
        """Opens and subscribes the socket; raises OSError where that is not allowed."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            sock.bind((0, CN_IDX_PROC))  # port 0: the kernel assigns a unique one
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            wanted = PROC_EVENT_EXEC | PROC_EVENT_EXIT if kernel_filters_events() else None
            sock.send(listen_message(port=sock.getsockname()[0], events=wanted))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="proc-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * RECV_TIMEOUT)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        # poll(), not select(): with the open-file limit raised, the socket may be above 1024.
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(RECV_TIMEOUT * 1000):
                continue
            if not self.drain():
                return

    def drain(self) -> bool:
        """Handles every event queued now, from the caller's thread; False when the socket
        failed for good. A scan of /proc calls this first, so that an exit that came before
        the scan is known before the scan's absences are judged, however busy the listener's
        thread is."""
        with self._reading:
            return self._drain_locked()

    def _drain_locked(self) -> bool:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    log.warning("proc connector dropped events (socket buffer full); rescanning")
                    self.on_lost(False)
                    continue
                if not self._stop.is_set():
                    log.warning("proc connector socket failed: %s", exc)
                    self.on_lost(True)
                return False
            for event in parse_events(data):
                try:
                    if isinstance(event, ExitEvent):
                        self.on_exit(event.pid, event.status)
                    else:
                        self.on_exec(event.pid)
                except Exception:  # a bug in a callback must not end the listener
                    log.exception("handling proc event %s failed", event)
