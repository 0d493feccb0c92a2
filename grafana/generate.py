#!/usr/bin/env python3
"""Write the course dashboards, built with grafana-foundation-sdk, as JSON files.

The JSON under grafana/dashboards/ is generated and committed: Grafana provisions it as is,
and CI regenerates it and fails on any difference. Edit the Python, then `make dashboards`.

    python grafana/generate.py [--out DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # grafana/ is a folder of the repo, not an installed package

from dlcourse_dashboards import (  # noqa: E402
    class_overview,
    gpu_health,
    hub_health,
    student_detail,
)
from dlcourse_dashboards.common import finish  # noqa: E402
from dlcourse_dashboards.jobs import Jobs  # noqa: E402

DASHBOARDS = {
    "class-overview.json": class_overview,
    "student-detail.json": student_detail,
    "gpu-health.json": gpu_health,
    "hub-health.json": hub_health,
}
DEFAULT_OUT = HERE / "dashboards"
# The job names the alert rules select by default (prometheus/prometheus.yml's jobs).
THRESHOLDS = HERE.parent / "prometheus" / "thresholds.json"


def default_jobs() -> Jobs:
    return Jobs(**json.loads(THRESHOLDS.read_text(encoding="utf-8"))["jobs"])


def render(jobs: Jobs | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard, selecting `jobs` (default: default_jobs())."""
    jobs = jobs or default_jobs()
    return {
        name: json.dumps(finish(module.build(jobs)), indent=2, ensure_ascii=False) + "\n"
        for name, module in DASHBOARDS.items()
    }


def stale_files(out: Path, rendered: dict[str, str]) -> list[str]:
    """Files in `out` that differ from `rendered`, are missing, or are left over."""
    present = {p.name for p in out.glob("*.json")} if out.is_dir() else set()
    stale = [
        name
        for name, text in rendered.items()
        if name not in present or (out / name).read_text(encoding="utf-8") != text
    ]
    return sorted(stale + sorted(present - rendered.keys()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are stale"
    )
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = stale_files(args.out, rendered)
        if stale:
            print(
                f"generate.py: stale dashboards in {args.out}: {', '.join(stale)} "
                "(run `make dashboards`)",
                file=sys.stderr,
            )
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (args.out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
