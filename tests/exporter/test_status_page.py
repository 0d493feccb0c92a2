"""The class-status page in a real headless Chromium against a live exporter."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dlcourse_testing.exporter import value
from fakenvml import Gpu, Process, Scenario

GIB = 1024**3
# Kept for CI as an artifact (git-ignored); docs/class-status.png is a reviewed copy of it.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "artifacts" / "class-status.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def chromium(tmp_path: Path, *args: str) -> str:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=4000",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Rows(HTMLParser):
    """Collects the text of each <tr data-user=...> in the students table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._user: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr" and dict(attrs).get("data-user"):
            self._user = dict(attrs)["data-user"]
            self.rows[self._user] = []
        elif tag == "td" and self._user:
            self.rows[self._user].append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._user = None

    def handle_data(self, data):
        if self._user and self.rows[self._user]:
            self.rows[self._user][-1] += data


def test_status_page_shows_the_class(run_exporter, scenario_path, sleeper, tmp_path):
    alice, bob = sleeper(hub_user="alice"), sleeper(hub_user="bob")
    Scenario(
        gpus=[
            Gpu(utilization_gpu=90, memory_used=6 * GIB, processes=[Process(alice, 6 * GIB, 90)]),
            Gpu(utilization_gpu=0, memory_used=2 * GIB, processes=[Process(bob, 2 * GIB, 0)]),
        ]
    ).write(scenario_path)
    exporter = run_exporter()
    exporter.wait_for(lambda s: value(s, "dlcourse_user_gpu_processes", user="bob") == 1)

    dom = chromium(tmp_path, "--dump-dom", f"{exporter.url}/")
    rows = Rows()
    rows.feed(dom)
    assert set(rows.rows) >= {"alice", "bob"}, dom[-3000:]
    # columns: student, section, server, GPU, GPU memory, GPU util., kernels, crashes, ...
    assert rows.rows["alice"][3:6] == ["0", "6.0 GiB", "90 %"]
    assert rows.rows["bob"][3:6] == ["1", "2.0 GiB", "0 %"]
    assert "GPU 0: 90 % busy" in dom

    SCREENSHOT.parent.mkdir(exist_ok=True)
    chromium(tmp_path, "--window-size=1280,720", f"--screenshot={SCREENSHOT}", f"{exporter.url}/")
    assert SCREENSHOT.stat().st_size > 10_000
