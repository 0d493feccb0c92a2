"""Pure parsers for the /proc files the exporter reads (``sources.proctable``).

No I/O here: callers read the files and pass their contents, so every format has its own
unit test with text captured from a real system.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ..untrusted import shown_text

# Clock ticks per second for utime/stime in /proc/<pid>/stat (USER_HZ, 100 on Linux).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# Flags that take the connection file as their value (ipykernel: -f / --f, IJulia, ...).
CONNECTION_FILE_FLAGS = ("-f", "--f", "--KernelApp.connection_file", "--connection-file")
# Clients that point at a running kernel's file; they are not kernels.
CLIENT_FLAGS = ("--existing",)


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat this project uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime_ticks: int
    stime_ticks: int
    starttime_ticks: int
    rss_pages: int
    exit_code: int | None  # wait(2) status, set once the process is a zombie (Linux >= 3.5)

    @property
    def cpu_seconds(self) -> float:
        return (self.utime_ticks + self.stime_ticks) / CLOCK_TICKS

    @property
    def rss_bytes(self) -> int:
        return max(self.rss_pages, 0) * PAGE_SIZE


def parse_stat(text: str) -> ProcStat:
    """Parses /proc/<pid>/stat; comm may hold spaces and parentheses, so split at the last ')'."""
    head, sep, tail = text.rpartition(")")
    if not sep or " (" not in head:
        raise ValueError("not a /proc/<pid>/stat line")
    pid_text, comm = head.split(" (", 1)
    fields = tail.split()
    # fields[0] is field 3 (state) of proc(5); field N is fields[N - 3].
    if len(fields) < 22:
        raise ValueError("/proc/<pid>/stat line too short")
    exit_code = int(fields[49]) if len(fields) > 49 else None
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        ppid=int(fields[1]),
        utime_ticks=int(fields[11]),
        stime_ticks=int(fields[12]),
        starttime_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
        exit_code=exit_code,
    )


def parse_uptime(text: str) -> float:
    """Seconds since boot, the first field of /proc/uptime ("350735.47 234388.90")."""
    return float(text.split()[0])


def cgroup_paths(lines: Iterable[str]) -> dict[str, str]:
    """Lines of /proc/<pid>/cgroup -> {controllers: path}; the v2 line ("0::/x") has key ""."""
    found = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            found[parts[1]] = parts[2]
    return found


def split_cmdline(raw: bytes) -> list[str]:
    """argv from a NUL-separated /proc/<pid>/cmdline (empty for kernel threads and zombies)."""
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def is_connection_file(arg: str) -> bool:
    name = arg.rsplit("/", 1)[-1]
    return name.startswith("kernel-") and name.endswith(".json") and len(name) > len("kernel-.json")


MAX_KERNEL_ID_CHARS = 128


@lru_cache(maxsize=4096)  # the same few files come back every cycle
def kernel_id(connection_file: str) -> str:
    """The kernel's id as jupyter_server knows it: ``<id>`` of ``kernel-<id>.json``; for
    another name (a bare jupyter_client's temporary file), the name without ``.json``."""
    name = connection_file.rsplit("/", 1)[-1].removesuffix(".json")
    return shown_text(name.removeprefix("kernel-") or name, MAX_KERNEL_ID_CHARS)


def kernel_connection_file(argv: list[str]) -> str | None:
    """The ``kernel-*.json`` connection file a kernel process was started with, else None.

    jupyter_client fills ``{connection_file}`` in the kernelspec's argv: ipykernel has
    ``-f <file>``, IRkernel and IJulia take it as a bare argument. jupyter_server names the
    file ``kernel-<id>.json``; a bare jupyter_client ``KernelManager`` uses a temporary name,
    so for ipykernel any ``-f *.json`` counts. A client started with ``--existing
    kernel-*.json`` (jupyter console) is not a kernel.
    """
    ipykernel = any("ipykernel" in arg for arg in argv[:3])
    for index, arg in enumerate(argv[1:], start=1):
        flag, eq, value = arg.partition("=")
        previous = argv[index - 1]
        if flag in CLIENT_FLAGS or previous in CLIENT_FLAGS:
            return None
        if not eq:
            flag, value = previous, arg
        if flag in CONNECTION_FILE_FLAGS and (
            is_connection_file(value) or (ipykernel and value.endswith(".json"))
        ):
            return value
        if is_connection_file(arg):
            return arg
    return None


def exit_reason(status: int) -> str:
    """'ok', 'exit' (non-zero code) or the signal name, from a wait(2)-style status.

    The proc connector's exit_code and /proc/<pid>/stat field 52 both hold the status as
    waitpid() reports it: the low 7 bits are the killing signal (bit 7 is "core dumped"),
    otherwise the exit code sits in bits 8..15.
    """
    signo = status & 0x7F
    if signo == 0:
        return "ok" if (status >> 8) & 0xFF == 0 else "exit"
    return signal_name(signo)


def signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"SIG{signo}"  # real-time signals have no name; still a small, bounded set
