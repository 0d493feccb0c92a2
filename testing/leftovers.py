"""What a test run or the demo leaves on the machine, marked so that the next run removes it.

A run killed before its own clean-up (SIGKILL, a closed terminal, a crash) leaves its Linux
accounts and processes behind. So, shared by the test fixtures and `make demo`:

- every account a run creates carries its owner in the GECOS comment
  (``dlcourse-owner pid=4242 start=1234567 boot=<boot id>``). `reap_accounts` removes the
  accounts whose owner is gone, with their processes and home folders; it never touches
  those of a run still alive, nor an account without the mark;
- `Ledger` records the processes a run started; `stop_left_running` stops the ones a dead
  run left running before its folder is reused;
- `die_with_parent` makes a child get SIGTERM when the process that started it dies.

A process is told from a later one with the same pid by its start time (field 22 of
/proc/<pid>/stat, clock ticks after boot) and the boot id; see proc_pid_stat(5).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MARK = re.compile(r"dlcourse-owner pid=(\d+) start=(\d+) boot=([0-9a-f-]+)")
USERDEL_BUSY = 8  # userdel(8): "user currently logged in" (it still has processes)


class AccountError(RuntimeError):
    """useradd or userdel refused; the message says which account and why."""


def boot_id() -> str:
    return BOOT_ID.read_text().strip()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot); None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: read after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # dead, only waiting for its parent to reap it
        return None
    return int(fields[19])  # field 22; fields[0] is field 3


@dataclass(frozen=True)
class Owner:
    """The process that created an account or started a process: pid, start time, boot."""

    pid: int
    start: int
    boot: str

    @classmethod
    def current(cls) -> Owner:
        start = start_ticks(os.getpid())
        assert start is not None
        return cls(os.getpid(), start, boot_id())

    @classmethod
    def from_mark(cls, text: str) -> Owner | None:
        match = MARK.search(text)
        if match is None:
            return None
        return cls(int(match[1]), int(match[2]), match[3])

    def mark(self) -> str:
        return f"dlcourse-owner pid={self.pid} start={self.start} boot={self.boot}"

    def alive(self) -> bool:
        return self.boot == boot_id() and start_ticks(self.pid) == self.start


# --- accounts --------------------------------------------------------------------------


def create_account(name: str, home: bool = True) -> pwd.struct_passwd:
    """A real account (useradd) marked as this process's."""
    args = ["useradd", "--shell", "/bin/bash", "--user-group"]
    args += ["--comment", Owner.current().mark()]
    args += ["--create-home"] if home else ["--no-create-home"]
    result = subprocess.run([*args, name], capture_output=True, text=True)
    if result.returncode != 0:
        raise AccountError(f"useradd {name}: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def account_owner(name: str) -> Owner | None:
    """The owner marked on the account; None if it has no mark (or does not exist)."""
    try:
        return Owner.from_mark(pwd.getpwnam(name).pw_gecos)
    except KeyError:
        return None


def remove_account(name: str, timeout: float = 30) -> None:
    """Kills the account's processes, then removes it with its group and home folder."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return
    if entry.pw_uid == 0:
        raise AccountError(f"refusing to remove {name}: uid 0")
    deadline = time.monotonic() + timeout
    while True:
        kill_processes_of(entry.pw_uid)
        # In a new session: a second Ctrl-C at the terminal must not kill userdel half-way.
        result = subprocess.run(
            ["userdel", "--remove", name], capture_output=True, text=True, start_new_session=True
        )
        # userdel refuses an account that still runs something: killed ones take a moment.
        if result.returncode != USERDEL_BUSY or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    home = Path(entry.pw_dir)
    if home.name == name:  # userdel leaves it when the account did not own it
        shutil.rmtree(home, ignore_errors=True)
    if result.returncode not in (0, 6):  # 6: already removed by someone else
        raise AccountError(f"userdel {name}: {result.stderr.strip()}")


def kill_processes_of(uid: int) -> None:
    for pid in pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        if str(uid) in uids:
            kill(pid)


def reap_accounts() -> list[str]:
    """Removes every marked account whose owner is gone; returns their names."""
    reaped = []
    for entry in pwd.getpwall():
        owner = Owner.from_mark(entry.pw_gecos)
        if owner is not None and not owner.alive():
            try:
                remove_account(entry.pw_name)
            except AccountError as exc:
                print(f"leftovers: {exc}", file=sys.stderr)
                continue
            reaped.append(entry.pw_name)
    return reaped


# --- processes -------------------------------------------------------------------------


class StillRunning(Exception):
    """The run that wrote a ledger is alive: its folder is not ours to reuse."""

    def __init__(self, owner: Owner) -> None:
        super().__init__(f"pid {owner.pid} is still running")
        self.owner = owner


class Ledger:
    """The processes one run started: its owner's mark, then a "pid start what" line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text(Owner.current().mark() + "\n")

    def record(self, pid: int, what: str) -> None:
        start = start_ticks(pid)
        if start is not None:
            with self.path.open("a") as ledger:
                ledger.write(f"{pid} {start} {what}\n")


def stop_left_running(ledger: Path, timeout: float = 30) -> list[str]:
    """Stops what the dead run of `ledger` left running (SIGTERM, then SIGKILL after
    `timeout`) and returns what that was; raises StillRunning if that run is alive."""
    try:
        lines = ledger.read_text().splitlines()
    except FileNotFoundError:
        return []
    owner = Owner.from_mark(lines[0]) if lines else None
    if owner is None or owner.boot != boot_id():
        return []  # not a ledger, or written before a reboot: nothing of it runs
    if owner.alive():
        raise StillRunning(owner)
    left = {}
    for line in lines[1:]:
        pid, start, what = line.split(" ", 2)
        if start_ticks(int(pid)) == int(start):
            left[int(pid), int(start)] = what
    stop_processes(list(left), timeout)
    return list(left.values())


def stop_processes(processes: list[tuple[int, int]], timeout: float) -> None:
    """SIGTERM to each (pid, start time), SIGKILL to those still there after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = [(pid, start) for pid, start in processes if start_ticks(pid) == start]
        for pid, _ in running:
            kill(pid, sig)
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            time.sleep(0.1)
            running = [(pid, start) for pid, start in running if start_ticks(pid) == start]
        if not running:
            return


def terminate(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM to a child, SIGKILL if it is still there after `timeout`; then reaped."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent(argv: list[str]) -> list[str]:
    """argv run so that it gets SIGTERM when the thread that starts it dies, even by SIGKILL.

    util-linux's setpriv(1) (`--pdeathsig`: util-linux 2.33 and later, from the 2018 patch
    "setpriv: implement option to set parent death signal"; Debian 12 has 2.38) sets
    PR_SET_PDEATHSIG and execs argv, so the pid is argv's own. Per
    https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html (man-pages 6.9) the
    signal follows the parent *thread*: start children from the main thread.
    A parent that dies before setpriv has made the call (the first milliseconds) leaves the
    child running. Where setpriv is missing (not Linux), argv runs as it is.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def pids() -> list[int]:
    """Every process id on the machine (of this pid namespace)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signals pid unless it is init or this process; a process already gone is fine."""
    if pid > 1 and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
