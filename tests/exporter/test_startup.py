"""Start-up failures are one line and exit code 2 (systemd's RestartPreventExitStatus=2).

Issue 11, "Why" 7 (a non-UTF-8 TOML file gave a traceback; a port in use or an address
that does not resolve exited 3 with uvicorn's line); since issue 9 the bearer token is
required, so no address is served without one. Issue 21: a port in use is not one of them
(it passes); a port the exporter may not bind is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dlcourse_testing.alerting import wait_until
from dlcourse_testing.exporter import free_port, token_file
from dlcourse_testing.leftovers import terminate
from dlcourse_testing.ports import free_privileged_port, started_on_a_taken_port

pytestmark = pytest.mark.live  # every test here starts a process


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlcourse_exporter", "--no-collector.gpu",
            f"--web.token-file={token_file()}", *args]  # fmt: skip


def exporter(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *command(*args)], capture_output=True, text=True, timeout=60)


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_a_port_in_use_is_waited_for_not_given_up(tmp_path: Path):
    """Another process holds the port (the exporter before, still stopping): the exporter
    says so once, tries again each second, and serves as soon as the port is free. Before,
    it exited 2, and the unit's RestartPreventExitStatus=2 kept it down for good."""
    log = tmp_path / "exporter.log"
    process, port = started_on_a_taken_port(
        lambda port: command(f"--web.listen-address=127.0.0.1:{port}"), log
    )
    freed = time.monotonic()
    try:
        wait_until(lambda: healthy(port), 30, lambda: log.read_text())
        assert time.monotonic() - freed < 5  # tried again within a second or two
        lines = log.read_text().splitlines()
        assert len([line for line in lines if "in use" in line]) == 1, lines
    finally:
        terminate(process)


def test_a_port_it_may_not_bind_is_one_line_and_exit_2():
    """Below net.ipv4.ip_unprivileged_port_start without CAP_NET_BIND_SERVICE (which the
    unit gives): waiting cannot fix that. As root, the capability is taken away first."""
    port = free_privileged_port()
    without = ("setpriv", "--bounding-set=-net_bind_service", "--") if os.geteuid() == 0 else ()
    result = exporter(f"--web.listen-address=127.0.0.1:{port}", prefix=without)
    assert_one_line_exit_2(result, "CAP_NET_BIND_SERVICE")


def test_an_address_that_does_not_resolve_is_one_line_and_exit_2():
    result = exporter("--web.listen-address=notahost.invalid:9945")
    assert_one_line_exit_2(result, "does not resolve")
    checked = exporter("--check-config", "--web.listen-address=notahost.invalid:9945")
    assert_one_line_exit_2(checked, "does not resolve")  # found without binding


def test_a_config_file_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path):
    config = tmp_path / "exporter.toml"
    config.write_bytes(b'[web]\nlisten-address = "127.0.0.1:99\xff"\n')
    assert_one_line_exit_2(exporter(f"--config.file={config}"), "not UTF-8 text")


def test_without_a_token_it_does_not_start_on_any_address():
    """Localhost is not private where students have shells: no token, no exporter."""
    for host in ("0.0.0.0", "127.0.0.1"):
        result = subprocess.run(
            [sys.executable, "-m", "dlcourse_exporter", "--no-collector.gpu",
             "--no-collector.processes", f"--web.listen-address={host}:{free_port()}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "no bearer token" in result.stderr
