"""Real kernels of a real account, started the way a Jupyter server starts them.

``KernelDriver`` runs testing/kernel_driver.py's text as the account, with the students'
environment's Python (``students.python_as``), and talks to it one line at a time.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import subprocess
from collections.abc import Mapping
from pathlib import Path

from .students import python_as

SCRIPT = Path(__file__).with_name("kernel_driver.py")


class KernelDriver:
    def __init__(
        self,
        account: pwd.struct_passwd,
        user_env: Path,
        hub_user: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.process = python_as(
            account,
            SCRIPT.read_text(),  # its source, not its path: a checkout may be 0700
            env={
                "PATH": f"{user_env}/bin:/usr/bin:/bin",
                "JUPYTERHUB_USER": hub_user,
                **(env or {}),
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, command: str) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"kernel driver died on {command!r}"
        return json.loads(line)

    def start(self) -> dict:
        """A new kernel, ready: {"id", "pid", "connection_file"}."""
        return self.ask("start")

    def run(self, kernel_id: str, code: str, wait: bool) -> dict:
        """Runs code in the kernel as a cell (``dlcourse_testing.kernel_deaths.Run``)."""
        return self.ask(f"run {kernel_id} {int(wait)} {json.dumps(code)}")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError):
                self.ask("quit")
            self.process.wait(30)
