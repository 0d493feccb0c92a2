"""Runs `dlcourse-exporter` as a real subprocess and scrapes it, for end-to-end tests.

The exporter requires a bearer token. Every exporter a test starts gets this session's
`TOKEN` (from a 0600 file) unless the test passes its own `--web.token-file`; scrapes here
send it (`AUTH`), and `token_file()` hands the same token to Prometheus.
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .leftovers import die_with_parent, terminate

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

TOKEN = secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_TOKEN_DIR = tempfile.TemporaryDirectory(prefix="dlcourse-test-token-")


def token_file() -> Path:
    """A 0600 file holding TOKEN (in a 0755 folder: Prometheus may run as another user)."""
    folder = Path(_TOKEN_DIR.name)
    folder.chmod(0o755)
    path = folder / "exporter-token"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(TOKEN + "\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def limit_open_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def parse_samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class RunningExporter:
    def __init__(
        self,
        args: Sequence[str] = (),
        nvml_dir: Path | None = None,
        scenario: Path | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        open_files: int | None = None,
        port: int | None = None,
    ) -> None:
        """open_files: soft and hard RLIMIT_NOFILE both, so the exporter cannot raise it.
        port: a port chosen beforehand (a configuration names it), else a free one."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            k: v for k, v in os.environ.items() if not k.startswith(("DLCOURSE_", "JUPYTERHUB_"))
        }
        if nvml_dir is not None:
            environ["LD_LIBRARY_PATH"] = str(nvml_dir)
        if scenario is not None:
            environ["FAKENVML_SCENARIO"] = str(scenario)
        environ.update(env or {})
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        if not any(a.startswith("--web.token-file") for a in args):
            args = [f"--web.token-file={token_file()}", *args]
        self.process = subprocess.Popen(
            die_with_parent(
                [
                    sys.executable,
                    "-m",
                    "dlcourse_exporter",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *args,
                ]
            ),
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else lambda: limit_open_files(open_files),
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exporter exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"exporter not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def scrape_text(self, headers: Mapping[str, str] | None = None) -> str:
        response = httpx.get(f"{self.url}/metrics", headers={**AUTH, **(headers or {})}, timeout=5)
        response.raise_for_status()
        return response.text

    def scrape(self) -> Samples:
        return parse_samples(self.scrape_text())

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition") -> Samples:
        """Scrape until predicate(samples) is true; returns the samples that satisfied it."""
        deadline = time.monotonic() + timeout
        samples: Samples = {}
        while time.monotonic() < deadline:
            samples = self.scrape()
            if predicate(samples):
                return samples
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what}; "
            f"last scrape: {sorted(samples)[:50]}\n{self.log_tail()}"
        )

    def wait_poll_after(self, collector: str, seconds: float, timeout: float = 60.0) -> Samples:
        """Scrapes until a poll of the collector that began `seconds` after the last one so
        far ended has succeeded: it saw all that happened before now, `seconds` later."""
        moment = poll_ended(self.scrape(), collector) + seconds
        return self.wait_for(
            lambda s: poll_started(s, collector) >= moment,
            timeout,
            f"a {collector} poll that began after {moment:.1f}",
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            terminate(self.process)
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    """The value of the one sample whose labels include `labels`; None if absent."""
    matches = [
        v for (n, ls), v in samples.items() if n == metric and set(labels.items()) <= set(ls)
    ]
    if len(matches) > 1:
        raise AssertionError(f"{metric}{labels} matches {len(matches)} samples")
    return matches[0] if matches else None


def poll_ended(samples: Samples, collector: str) -> float:
    """When the collector's last successful poll ended (wall clock); 0 before any."""
    ended = value(samples, "dlcourse_collector_last_success_timestamp_seconds", collector=collector)
    return ended or 0.0


def poll_started(samples: Samples, collector: str) -> float:
    """When the collector's last successful poll began (wall clock); 0 before any."""
    took = value(samples, "dlcourse_collector_duration_seconds", collector=collector)
    return poll_ended(samples, collector) - (took or 0.0)


def wait_value(
    exporter: RunningExporter, name: str, expected: float, timeout: float = 60, **labels: str
) -> Samples:
    """Scrapes until name{labels} == expected; returns that scrape."""
    what = f"{name}{labels} == {expected}"
    return exporter.wait_for(lambda s: value(s, name, **labels) == expected, timeout, what)


def log_lines(exporter: RunningExporter, text: str) -> list[str]:
    return [line for line in exporter.log().splitlines() if text in line]
