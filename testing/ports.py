"""Ports for tests: one below 1024, and a program started while its port is taken.

port = free_privileged_port()                      # root binds it; students cannot
process, port = started_on_a_taken_port(lambda p: [..., f"--listen=127.0.0.1:{p}"], log)
# the program said its port is "in use" and still runs; the port is free again now
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from .alerting import wait_until
from .leftovers import die_with_parent, terminate


def free_privileged_port() -> int:
    """A port below 1024 that nothing listens on; root binds it (where this process may not
    bind one, any such port will do: nobody but root can listen there either)."""
    for port in range(1023, 600, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except PermissionError:
                return port
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 1024")


def started_on_a_taken_port(
    command: Callable[[int], list[str]],
    log: Path,
    env: Callable[[int], Mapping[str, str]] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """command(port), with env(port), started while this process holds the port; returned
    once its output says the port is "in use" while it still runs (it waits, rather than
    exits), with the port let go just then."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                die_with_parent(command(port)),
                env=env(port) if env else None,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: process.poll() is not None or "in use" in log.read_text(), 30,
                       lambda: log.read_text())  # fmt: skip
            assert process.poll() is None, f"it exited instead of waiting: {log.read_text()}"
        except BaseException:
            terminate(process)
            raise
    return process, port
