"""Start-up failures are one line and exit code 2 (systemd's RestartPreventExitStatus=2).

Issue 11, "Why" 7 (a non-UTF-8 TOML file gave a traceback; a port in use or an address
that does not resolve exited 3 with uvicorn's line); since issue 9 the bearer token is
required, so no address is served without one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dlcourse_testing.exporter import free_port, token_file

pytestmark = pytest.mark.live  # every test here starts a process


def exporter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcourse_exporter",
            "--no-collector.gpu",
            f"--web.token-file={token_file()}",
            *args,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = exporter(f"--web.listen-address=127.0.0.1:{port}")
    assert_one_line_exit_2(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")


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
