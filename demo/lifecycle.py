"""How `make demo` starts after any earlier run, however it ended, and stops on any signal.

At start (`claim_workdir`): a demo still running in the same folder is left alone (exit 2);
what a dead demo left running is stopped (its ledger: dlcourse_testing.leftovers); the
accounts dead runs left are removed; an existing account with one of the demo's names that is not a
leftover stops the demo with one line saying how to free it (exit 2).

While it runs, SIGTERM and SIGHUP (the terminal closed) stop it as Ctrl-C does; once it is
cleaning up, further signals only say so (`shield_cleanup`), so the clean-up finishes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
from pathlib import Path

from dlcourse_testing.leftovers import (
    Ledger,
    StillRunning,
    account_owner,
    reap_accounts,
    stop_left_running,
)

LEDGER = "processes"  # in the demo's folder
LOG = "demo.log"  # where the demo writes once its terminal is gone


class Refusal(Exception):
    """The demo cannot start; the message is the one line the user sees."""


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def claim_workdir(workdir: Path, accounts: list[str] | None) -> Ledger:
    """Clears what earlier runs left, checks the demo's `accounts` are free (None: no
    accounts, not root), empties `workdir` and makes this process its owner."""
    try:
        stopped = stop_left_running(workdir / LEDGER)
    except StillRunning as exc:
        pid = exc.owner.pid
        raise Refusal(
            f"another demo (pid {pid}) is running in {workdir}; stop it first "
            f"(Ctrl-C in its terminal, or kill {pid})"
        ) from None
    if stopped:
        say(f"stopped what an earlier demo left running: {', '.join(stopped)}")
    if accounts is not None:
        reaped = reap_accounts()
        if reaped:
            say(f"removed accounts that earlier runs left: {', '.join(reaped)}")
        for name in accounts:
            check_account_free(name)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)  # students' servers read the scenario and their own folders
    return Ledger(workdir / LEDGER)


def check_account_free(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    owner = account_owner(name)
    if owner is None:
        raise Refusal(
            f"account {name!r} already exists and the demo did not create it; free it with "
            f"`sudo userdel --remove {name}` (this deletes its home folder) and run again"
        )
    if owner.alive():
        raise Refusal(f"account {name!r} belongs to a running demo or test (pid {owner.pid})")
    raise Refusal(f"account {name!r} was left by an earlier run and could not be removed")


def stop_like_ctrl_c(workdir: Path) -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does."""

    def interrupt(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            leave_terminal(workdir)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def shield_cleanup(workdir: Path) -> None:
    """From now on Ctrl-C, SIGTERM and SIGHUP do not cut the clean-up short."""

    def busy(signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            leave_terminal(workdir)
        say("still stopping, one moment ...")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, busy)


def leave_terminal(workdir: Path) -> None:
    """The terminal hung up: writing to it would fail, so output goes to the demo's log."""
    fd = os.open(workdir / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
