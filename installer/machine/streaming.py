"""Run one command, handing each line of its output on as it comes.

The installer's long commands (TLJH's bootstrap, pip installing PyTorch, apt) run for many
minutes: their output goes to the log line by line while they run, not when they end. A
command that is quiet and idle (no output, no CPU time in its process group) for
``stall_after`` seconds is reported, never killed. apt, dpkg and the tools that drive them
are not even stopped by Ctrl-C: a package database left halfway is worse than a wait.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Protocol

# Killing these mid-run can leave dpkg's database half-configured.
PROTECTED = {"apt", "apt-get", "dpkg", "ubuntu-drivers", "add-apt-repository", "update-initramfs"}
KEEP_BYTES = 1 << 20  # of each stream, for the caller; the log gets everything


class Watcher(Protocol):
    def line(self, text: str) -> None: ...
    def tick(self) -> None: ...
    def stalled(self, quiet_seconds: float, protected: bool) -> None: ...
    def interrupted(self) -> None: ...


@dataclass(frozen=True)
class Finished:
    rc: int
    stdout: str
    stderr: str


def is_protected(argv: list[str]) -> bool:
    return os.path.basename(argv[0]) in PROTECTED


def run(
    argv: list[str],
    *,
    env: dict[str, str],
    watcher: Watcher,
    input: str | None = None,
    stall_after: float = 300.0,
    timeout: float | None = None,
) -> Finished:
    """Run ``argv`` to its end (or ``timeout``: then its process group is killed, rc 124)."""
    protected = is_protected(argv)
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    if input is not None:
        proc.stdin.write(input.encode())
        proc.stdin.close()
    streams = {proc.stdout.fileno(): _Stream(), proc.stderr.fileno(): _Stream()}
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    started = last_sign_of_life = last_report = time.monotonic()
    cpu = _group_cpu(proc.pid)
    interrupted = False
    while selector.get_map():
        try:
            for key, _ in selector.select(timeout=1.0):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                last_sign_of_life = time.monotonic()
                for text in streams[key.fd].feed(data):
                    watcher.line(text)
            now = time.monotonic()
            if timeout is not None and now - started > timeout:
                _kill_group(proc)
                break
            new_cpu = _group_cpu(proc.pid)
            if new_cpu != cpu:
                cpu, last_sign_of_life = new_cpu, now
            quiet = now - last_sign_of_life
            if quiet >= stall_after and now - last_report >= stall_after:
                watcher.stalled(quiet, protected)
                last_report = now
            watcher.tick()
        except KeyboardInterrupt:
            if not protected:
                _kill_group(proc)
                raise
            interrupted = True
            watcher.interrupted()
    selector.close()
    for stream in streams.values():
        rest = stream.flush()
        if rest:
            watcher.line(rest)
    rc = _wait(proc, protected)
    timed_out = timeout is not None and time.monotonic() - started > timeout
    if interrupted:
        raise KeyboardInterrupt
    out, err = streams.values()
    return Finished(124 if timed_out else rc, out.text(), err.text())


class _Stream:
    """Bytes in, whole lines out; keeps the last KEEP_BYTES for the caller."""

    def __init__(self) -> None:
        self.pending = b""
        self.kept = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self.kept += data
        del self.kept[:-KEEP_BYTES]
        # A progress bar rewrites its line with \r: each rewrite counts as a line.
        *lines, self.pending = (self.pending + data).replace(b"\r", b"\n").split(b"\n")
        return [line.decode(errors="replace") for line in lines if line.strip()]

    def flush(self) -> str:
        rest, self.pending = self.pending, b""
        return rest.decode(errors="replace").strip()

    def text(self) -> str:
        return bytes(self.kept).decode(errors="replace")


def _group_cpu(pgid: int) -> int:
    """CPU ticks used so far by the command's process group (it is the session leader)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _wait(proc: subprocess.Popen, protected: bool) -> int:
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            if not protected:
                _kill_group(proc)
                raise
