"""Long commands, as a lecturer sees them: output in the log as it comes, a live line, a word
when a command is quiet and idle, and apt never stopped halfway. Real processes."""

import io
import os
import signal
import stat
import threading

import pytest

from dlcourse_installer.checklist import runner
from dlcourse_installer.machine.host import RealHost
from dlcourse_installer.machine.progress import Progress
from dlcourse_testing.alerting import wait_until

from .conftest import install
from .fakehost import FakeHost

pytestmark = pytest.mark.live  # every test here starts a process


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _in_thread(fn):
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _waiting_for(flag) -> str:
    """Shell code that waits (without a timer of its own) until the test creates ``flag``."""
    return f"while [ ! -e {flag} ]; do sleep 0.05; done"


def test_output_reaches_the_log_while_the_command_runs(tmp_path):
    """Old behaviour: the log was written when the command ended (this would never end)."""
    log_path = tmp_path / "install.log"
    flag = tmp_path / "flag"
    with open(log_path, "w") as log:
        host = RealHost(log=log)
        script = f"echo first-line; {_waiting_for(flag)}; echo second-line"
        thread, box = _in_thread(lambda: host.run(["sh", "-c", script]))
        # Output lines are indented under the command line in the log.
        wait_until(lambda: "\n  first-line\n" in log_path.read_text(), 30, "the first line")
        assert "\n  second-line\n" not in log_path.read_text()
        flag.touch()
        thread.join(30)
    assert box["result"].ok, box
    text = log_path.read_text()
    first, second = text.index("\n  first-line\n"), text.index("\n  second-line\n")
    assert first < second < text.index("[exit 0]")


def test_the_live_line_shows_the_step_its_time_and_the_last_output(tmp_path):
    screen = Terminal()
    host = RealHost(progress=Progress(screen))
    host.progress.step(5, 10, "Users' environment (PyTorch, CUDA)")
    flag = tmp_path / "flag"
    script = f"echo Collecting torch; echo Downloading torch-2.13.0.whl; {_waiting_for(flag)}"
    thread, box = _in_thread(lambda: host.run(["sh", "-c", script]))
    wait_until(lambda: "Downloading torch" in screen.getvalue(), 30, "the live line")
    flag.touch()
    thread.join(30)
    assert box["result"].ok
    drawn = screen.getvalue()
    assert "\r\x1b[K[5/10] Users' environment (PyTorch, CUDA)  " in drawn
    assert "s  Downloading torch-2.13.0.whl" in drawn  # elapsed, then the last line
    assert drawn.endswith("\r\x1b[K")  # erased once the command ended


def test_a_quiet_idle_command_gets_a_message_and_is_not_killed(tmp_path):
    screen = Terminal()
    host = RealHost(progress=Progress(screen))
    host.stall_after = 1.0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Blocked on a read: no output, no CPU, like a download that stopped.
    thread, box = _in_thread(lambda: host.run(["sh", "-c", f"read line < {fifo}; echo got $line"]))
    wait_until(lambda: "has printed nothing and used no CPU" in screen.getvalue(), 60, "a stall")
    with open(fifo, "w") as f:
        f.write("go\n")
    thread.join(30)
    assert box["result"].stdout.strip() == "got go"
    assert "It is left running; Ctrl-C stops it" in screen.getvalue()


def _fake_tool(tmp_path, name: str, fifo) -> str:
    """An executable called ``name`` that writes its pid, then waits for the test."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nread x < {fifo}\necho finished\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_ctrl_c_lets_apt_finish_then_stops(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    apt = _fake_tool(tmp_path, "apt-get", fifo)
    screen = Terminal()
    host = RealHost(progress=Progress(screen))

    def press_ctrl_c_then_let_it_finish():
        wait_until(lambda: (tmp_path / "pid").exists(), 30, "apt-get to start")
        os.kill(os.getpid(), signal.SIGINT)
        wait_until(lambda: "is left to finish" in screen.getvalue(), 30, "the Ctrl-C message")
        with open(fifo, "w") as f:
            f.write("\n")

    helper = threading.Thread(target=press_ctrl_c_then_let_it_finish, daemon=True)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        host.run([apt, "install", "-y", "something"])
    helper.join(30)
    assert "stopping apt or dpkg halfway breaks the package database" in screen.getvalue()
    pid = int((tmp_path / "pid").read_text())
    assert not os.path.exists(f"/proc/{pid}")  # it finished on its own


def test_ctrl_c_stops_any_other_command_at_once(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    tool = _fake_tool(tmp_path, "pip", fifo)
    host = RealHost()

    def press_ctrl_c():
        wait_until(lambda: (tmp_path / "pid").exists(), 30, "pip to start")
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=press_ctrl_c, daemon=True)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        host.run([tool, "install", "torch"])
    helper.join(30)
    pid = int((tmp_path / "pid").read_text())
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30, "pip to be stopped")


def test_a_query_that_hangs_is_stopped(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = RealHost().query(["sh", "-c", f"read x < {fifo}"], timeout=1)
    assert result.rc == 124


def test_ctrl_c_in_a_step_keeps_the_finished_ones_and_says_how_to_resume(tmp_path):
    class Interrupted(FakeHost):
        def run(self, argv, *, env=None, input=None):
            if "tljh-bootstrap" in " ".join(argv):
                raise KeyboardInterrupt
            return super().run(argv, env=env, input=input)

    host = Interrupted(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, ["--admin", "teacher", "--yes"])
    assert rc == runner.EXIT_INTERRUPTED
    assert "stopped by Ctrl-C in step 'The Littlest JupyterHub'" in out
    assert "it resumes at this step" in out


def test_without_a_terminal_a_heartbeat_line_says_it_is_still_running(monkeypatch):
    """The resume unit after the reboot writes to the journal: no \\r there."""
    monkeypatch.setattr("dlcourse_installer.machine.progress.HEARTBEAT_SECONDS", 0.0)
    journal = io.StringIO()
    progress = Progress(journal)
    progress.step(4, 10, "The Littlest JupyterHub")
    progress.output("Setting up user environment...")
    assert "      ... " in journal.getvalue()
    assert journal.getvalue().endswith(": Setting up user environment...\n")
    assert "\r" not in journal.getvalue()
