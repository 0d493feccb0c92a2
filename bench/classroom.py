"""The students the exporter attributes: real Linux accounts (as root) running real processes.

Account names are random (``jupyter-b<hex>s<nnn>``, TLJH's naming with a prefix of this run),
so that two runs, or a run and a test, never meet; ``close()`` removes them with their
processes. Without root, every process runs as this account with ``JUPYTERHUB_USER`` set,
and the exporter is told to believe it (``exporter_args``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import time

PREFIX = "jupyter-"


class Classroom:
    def __init__(self, students: int) -> None:
        self.real = os.geteuid() == 0
        tag = secrets.token_hex(2)
        self.users = [f"b{tag}s{n:03d}" for n in range(students)]
        self.accounts: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.changed_at = time.monotonic()
        if self.real:
            for user in self.users:
                account = PREFIX + user
                subprocess.run(
                    ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", account],
                    check=True,
                    capture_output=True,
                )
                self.accounts.append(account)

    def resize(self, count: int) -> list[int]:
        """Runs exactly `count` processes, process n for student n % students; their pids."""
        if count != len(self.processes):
            self.changed_at = time.monotonic()
        while len(self.processes) > count:
            stop(self.processes.pop())
        while len(self.processes) < count:
            user = self.users[len(self.processes) % len(self.users)]
            self.processes.append(
                subprocess.Popen(
                    ["sleep", "86400"],
                    user=PREFIX + user if self.real else None,
                    env={"PATH": "/usr/bin:/bin", "JUPYTERHUB_USER": user},
                    stdin=subprocess.DEVNULL,
                )
            )
        return [process.pid for process in self.processes]

    def age(self) -> float:
        """Seconds since the youngest process started."""
        return time.monotonic() - self.changed_at

    def exporter_args(self) -> list[str]:
        """How the exporter tells these students apart: by account as root (TLJH's rule),
        else by JUPYTERHUB_USER from this account, named the spawner's."""
        if self.real:
            return []
        return [f"--user.spawner-account={pwd.getpwuid(os.getuid()).pw_name}"]

    def close(self) -> None:
        self.resize(0)
        for account in self.accounts:
            subprocess.run(["userdel", account], capture_output=True)
        self.accounts.clear()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
