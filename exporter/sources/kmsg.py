"""OOM kills from the kernel log (/dev/kmsg), read in a background thread.

The OOM killer logs one line per victim, e.g.::

    3,422,416013029,-;Memory cgroup out of memory: Killed process 9198 (python3)
        total-vm:116352kB, anon-rss:32512kB, file-rss:5320kB, shmem-rss:0kB, UID:1001 ...

The exporter reads from the end of the log at start, so kills from before it started are
not counted again after a restart. Reading /dev/kmsg needs CAP_SYSLOG (root).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KILLED = re.compile(r"Killed process (\d+) \((.*?)\)(?:.*?\bUID:(\d+))?")
WAIT_SECONDS = 0.5


@dataclass(frozen=True)
class OomKill:
    pid: int
    command: str
    uid: int | None  # kernels before 4.19 do not log it


def record_message(record: str) -> str:
    """The message of one /dev/kmsg record ("prio,seq,usec,flags;message\\n KEY=v...")."""
    _, sep, rest = record.partition(";")
    return rest.split("\n", 1)[0] if sep else ""


def parse_oom_kill(message: str) -> OomKill | None:
    match = KILLED.search(message)
    if match is None:
        return None
    uid = int(match.group(3)) if match.group(3) else None
    return OomKill(int(match.group(1)), match.group(2), uid)


class KmsgWatcher:
    def __init__(self, path: Path = Path("/dev/kmsg")) -> None:
        self.path = path
        self._kills: list[OomKill] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Opens the log at its end; raises OSError where it cannot be read."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # an old kernel: read from where it is
            os.lseek(fd, 0, os.SEEK_END)
        self._thread = threading.Thread(target=self._run, args=(fd,), name="kmsg", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * WAIT_SECONDS)

    def take(self) -> list[OomKill]:
        """The kills seen since the last call."""
        with self._lock:
            kills, self._kills = self._kills, []
        return kills

    def _run(self, fd: int) -> None:
        # poll(), not select(): with the open-file limit raised, fd may be above 1024.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(WAIT_SECONDS * 1000):
                    continue
                try:
                    data = os.read(fd, 8192)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # records overwritten before we read them
                        log.info("kernel log overran; some OOM kills may be missed")
                        continue
                    log.warning("reading %s failed, OOM kills from it stop: %s", self.path, exc)
                    return
                if not data:
                    self._stop.wait(WAIT_SECONDS)  # a plain file at its end
                    continue
                for line in data.decode(errors="replace").splitlines():
                    kill = parse_oom_kill(record_message(line) if ";" in line else line)
                    if kill is not None:
                        with self._lock:
                            self._kills.append(kill)
        finally:
            os.close(fd)
