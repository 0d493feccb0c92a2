"""Runs ``dlcourse-exporter`` as a subprocess on a free port and scrapes it over HTTP."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

EXPORTER = Path(sys.executable).parent / "dlcourse-exporter"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ExporterProcess:
    def __init__(self, args: Sequence[str], log_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        with open(log_file, "wb") as log:
            self.process = subprocess.Popen(
                [str(EXPORTER), "--web.listen-address", f"127.0.0.1:{self.port}", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_for(lambda: self._get("/healthz") is not None, 30, "the exporter to listen")

    def _get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=5)
        except httpx.TransportError:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited:\n{self.log()}") from None
            return None

    def scrape(self) -> Samples:
        response = self._get("/metrics")
        assert response is not None and response.status_code == 200, "scrape failed"
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def value(self, samples: Samples, name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Polls condition every 0.1 s; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if condition():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.log()}")

    def wait_value(self, name: str, expected: float, timeout: float, **labels: str) -> float:
        return self.wait_for(
            lambda: self.value(self.scrape(), name, **labels) == expected,
            timeout,
            f"{name}{labels} == {expected}",
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def log_lines(self, text: str) -> list[str]:
        return [line for line in self.log().splitlines() if text in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
