"""A golden end-to-end scrape, diffed like node_exporter's end-to-end-test.sh.

Regenerate after an intended change with `pytest tests/exporter/test_golden.py --update-golden`
and review the diff. Values that change run to run (durations, timestamps, the process's own
process_* metrics) are masked; everything else must match byte for byte.
"""

from __future__ import annotations

import re
from pathlib import Path

from dlcourse_testing.exporter import value
from fakenvml import Gpu, Process, Scenario, XidEvent

GOLDEN = Path(__file__).parent / "golden" / "two-gpu-class.prom"
VOLATILE = re.compile(
    r"^(dlcourse_collector_duration_seconds|dlcourse_collector_last_success_timestamp_seconds)"
    r"(\{[^}]*\}) .*$"
)


def normalize(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith(("process_", "# HELP process_", "# TYPE process_")):
            continue
        lines.append(VOLATILE.sub(r"\1\2 <volatile>", line))
    return "\n".join(lines) + "\n"


def test_golden_scrape(run_exporter, scenario_path, sleeper, request):
    pids = [sleeper(hub_user=user) for user in ("alice", "alice", "bob")]
    Scenario(
        gpus=[
            Gpu(
                uuid="GPU-golden-0",
                utilization_gpu=75,
                memory_used=12 * 1024**3,
                processes=[Process(pids[0], 8 * 1024**3, 50), Process(pids[1], 2 * 1024**3, 20)],
                xid_events=[XidEvent(1, 79)],
            ),
            Gpu(
                uuid="GPU-golden-1",
                clocks_event_reasons=0x40,
                not_supported={"ecc"},
                processes=[Process(pids[2], 1024**3, 0)],
            ),
        ]
    ).write(scenario_path)
    # kernels, host and students read this machine's /proc and cgroups (its kernels are
    # whoever runs one now; GPU time grows with time): not reproducible, tested apart.
    exporter = run_exporter(
        "--no-collector.kernels", "--no-collector.host", "--no-collector.students"
    )
    exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_gpu_xid_errors_total", xid="79") == 1
            and value(s, "dlcourse_user_gpu_processes", user="bob") == 1
            and value(s, "dlcourse_user_gpu_utilization_ratio", user="alice") == 0.7
        ),
        what="the whole scenario",
    )
    scraped = normalize(exporter.scrape_text())
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(scraped)
    assert scraped == GOLDEN.read_text(), "scrape differs from the golden file (see docstring)"
