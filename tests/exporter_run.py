"""Runs the real ``dlcourse-exporter`` as a subprocess and reads its /metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_exporter(*args: str) -> Iterator[str]:
    """Starts the exporter on a free localhost port; yields its /metrics URL."""
    port = free_port()
    command = [sys.executable, "-m", "dlcourse_exporter", f"--web.listen-address=127.0.0.1:{port}"]
    process = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 20, f"exporter did not become ready at {url}")
        yield f"{url}/metrics"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        print(process.stdout.read().decode(errors="replace"))  # shown when a test fails


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from one scrape."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(url: str, name: str, **labels: str) -> float | None:
    return samples(url).get((name, tuple(sorted(labels.items()))))


def wait_for(check: Callable[[], object], timeout: float, message: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.25)
