"""Start-up failures are one line and exit code 2 (systemd's RestartPreventExitStatus=2).

Issue 11, "Why" 7 (a non-UTF-8 TOML file gave a traceback; a port in use or an address
that does not resolve exited 3 with uvicorn's line) and 8 (no warning when listening beyond
localhost without a token).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from exporter_process import free_port


def exporter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlcourse_exporter", "--no-collector.gpu", *args],
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


def startup_lines(address: str) -> list[str]:
    """The exporter's log up to its "starting" line, listening on address."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "dlcourse_exporter", "--no-collector.gpu"),
            *("--no-collector.processes", f"--web.listen-address={address}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "starting" in line:
                break
    finally:
        process.terminate()
        process.wait(10)
    return lines


def test_listening_beyond_localhost_without_a_token_warns():
    warning = "beyond localhost without --web.token-file"
    assert any(warning in line for line in startup_lines(f"0.0.0.0:{free_port()}"))
    assert not any(warning in line for line in startup_lines(f"127.0.0.1:{free_port()}"))
