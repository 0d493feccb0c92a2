"""`make demo` starts after any earlier run, however it ended (root: its users are accounts).

Each demo here has a random account prefix: other test runs may share the machine, and the
plain names (ada, grace, ...) belong to whoever runs `make demo`.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlcourse_testing.alerting import wait_until
from dlcourse_testing.leftovers import Ledger, Owner, remove_account, start_ticks

pytestmark = pytest.mark.live  # every test here runs the demo
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: demo users are accounts")

DEMO = Path(__file__).resolve().parents[2] / "demo" / "run.py"
UP = "dlcourse demo is running"
NAMES = ("ada", "grace", "alan", "katherine", "teacher")
STARTUP = 300  # seconds: a hub, five accounts, four servers and five kernels on 2 busy cores


class DemoRun:
    """demo/run.py as a user starts it, its output in a file."""

    def __init__(self, workdir: Path, prefix: str, user_env: Path, log: Path) -> None:
        self.workdir = workdir
        self.log = log
        argv = [sys.executable, str(DEMO), "--workdir", str(workdir)]
        argv += ["--account-prefix", prefix, "--user-env", str(user_env)]
        argv += ["--duration", "900"]  # a safety net should the test itself be killed
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        text = self.log.read_text(errors="replace")
        after_hangup = self.workdir / "demo.log"
        if after_hangup.exists():
            text += after_hangup.read_text(errors="replace")
        return text

    def wait_for(self, text: str, timeout: float = STARTUP) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            assert self.popen.poll() is None, f"demo exited early:\n{self.tail()}"
            return False

        wait_until(seen, timeout, lambda: f"{text!r} from the demo\n{self.tail()}")

    def recorded(self) -> list[tuple[int, int]]:
        """(pid, start time) of what the demo recorded in its ledger."""
        lines = (self.workdir / "processes").read_text().splitlines()[1:]
        return [(int(pid), int(start)) for pid, start, _ in (line.split(" ", 2) for line in lines)]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A random account prefix; its accounts are gone afterwards, whatever happened."""
    tag = f"dlct{uuid.uuid4().hex[:6]}-"
    yield tag
    if os.geteuid() == 0:
        for name in NAMES:
            remove_account(tag + name)


@pytest.fixture
def start_demo(prefix: str, user_env: Path, tmp_path: Path) -> Iterator:
    runs: list[DemoRun] = []

    def start() -> DemoRun:
        run = DemoRun(tmp_path / "demo", prefix, user_env, tmp_path / f"out{len(runs)}.log")
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def account_owner_pid(name: str) -> int | None:
    try:
        owner = Owner.from_mark(pwd.getpwnam(name).pw_gecos)
    except KeyError:
        return None
    return owner.pid if owner else None


@needs_root
def test_a_killed_demo_is_cleaned_up_by_the_next_which_stops_on_hangup(prefix, start_demo):
    first = start_demo()
    first.wait_for(UP)
    left = first.recorded()
    assert len(left) >= 10  # hub, proxy, 4 servers, 5 kernels, exporter, monitoring
    first.popen.kill()  # no clean-up of its own
    first.popen.wait()
    assert {account_owner_pid(prefix + n) for n in NAMES} == {first.popen.pid}

    second = start_demo()
    second.wait_for(UP)
    assert "removed accounts that earlier runs left" in second.output()
    assert not [p for p, start in left if start_ticks(p) == start], "first demo's processes"
    assert {account_owner_pid(prefix + n) for n in NAMES} == {second.popen.pid}

    # The terminal closes; Ctrl-C while it cleans up does not cut the clean-up short.
    second.popen.send_signal(signal.SIGHUP)
    second.wait_for("demo: stopping", timeout=60)
    second.popen.send_signal(signal.SIGINT)
    assert second.popen.wait(timeout=180) == 0, second.tail()
    assert "still stopping" in second.output()
    assert "demo: stopped" in second.output()
    for name in NAMES:
        with pytest.raises(KeyError):
            pwd.getpwnam(prefix + name)
    assert not [p for p, start in second.recorded() if start_ticks(p) == start]


@needs_root
def test_an_account_it_did_not_create_stops_it_with_one_line(prefix, user_env, tmp_path):
    taken = prefix + "grace"
    subprocess.run(["useradd", "--no-create-home", taken], check=True, capture_output=True)
    argv = [sys.executable, str(DEMO), "--workdir", str(tmp_path / "demo")]
    argv += ["--account-prefix", prefix, "--user-env", str(user_env)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"account {taken!r} already exists" in result.stderr
    assert f"userdel --remove {taken}" in result.stderr
    assert pwd.getpwnam(taken).pw_gecos == ""  # untouched
    for name in NAMES:
        if name != "grace":
            with pytest.raises(KeyError):
                pwd.getpwnam(prefix + name)
    assert not (tmp_path / "demo").exists()  # it stopped before doing anything


def test_a_demo_still_running_in_the_folder_is_left_alone(tmp_path, user_env):
    """The running demo is stood in for by this process's own ledger."""
    workdir = tmp_path / "demo"
    workdir.mkdir()
    Ledger(workdir / "processes")
    argv = [sys.executable, str(DEMO), "--workdir", str(workdir), "--user-env", str(user_env)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"demo: another demo (pid {os.getpid()}) is running in {workdir}; "
        f"stop it first (Ctrl-C in its terminal, or kill {os.getpid()})\n"
    )
    assert (workdir / "processes").exists()
