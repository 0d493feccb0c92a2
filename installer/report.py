"""``dlcourse-install report --since DATE [--csv]``: the term per student, for the lecturer.

Per student since DATE: GPU-hours (utilization integrated over time), peak GPU memory, kernel
crashes and kernels shut down for holding GPU memory idle; a table, or CSV with ``--csv``.
From Prometheus, which keeps one term (120 days): PromQL's ``increase()`` adds the exporter's
counters across its restarts, which the exporter alone could not. Prometheus asks for basic
auth; the report reads the instructor's credential file (root's alone), so it is staff only:
run it as root (sudo), or as whoever may read that file.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import io
import json
import math
import netrc
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports

TIMEOUT_SECONDS = 30
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# Each column: (heading, PromQL with {range}, how to show the value).
COLUMNS = (
    ("GPU-hours", "sum by (user) (increase(dlcourse_user_gpu_seconds_total[{range}])) / 3600"),
    ("peak GPU memory GiB",
     "max by (user) (max_over_time(user:dlcourse_user_gpu_memory_used_bytes:sum[{range}]))"
     " / 1073741824"),
    ("crashes", "sum by (user) (increase(dlcourse_user_kernel_crashes_total[{range}]))"),
    ("idle culls", "sum by (user) (increase(dlcourse_user_gpu_idle_culls_total[{range}]))"),
)  # fmt: skip
DECIMALS = (2, 1, 0, 0)


class ReportError(Exception):
    """str() is the one line the lecturer sees."""


@dataclass(frozen=True)
class Row:
    user: str
    values: tuple[float, ...]


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """YYYY-MM-DD (midnight, local time) or an ISO date and time; in the past."""
    try:
        since = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--since {text!r}: give a date, e.g. 2026-09-01") from None
    if since.tzinfo is None:
        since = since.astimezone()  # the server's local time
    if since >= now:
        raise ReportError(f"--since {text}: that is not in the past")
    return since


def credentials(netrc_file: str, host: str) -> tuple[str, str]:
    try:
        entry = netrc.netrc(netrc_file).authenticators(host)
    except (OSError, netrc.NetrcParseError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise ReportError(
            f"staff only: cannot read the instructor's credential file {netrc_file} ({reason}); "
            "run it as root (sudo)"
        ) from None
    if entry is None or entry[2] is None:
        raise ReportError(f"{netrc_file} has no password for {host}")
    return entry[0], entry[2]


def query(url: str, auth: tuple[str, str], promql: str, at: float) -> dict[str, float]:
    """user -> value of an instant query."""
    params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    request = urllib.request.Request(f"{url}/api/v1/query?{params}")
    basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            answer = json.loads(response.read(MAX_ANSWER_BYTES + 1)[:MAX_ANSWER_BYTES])
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise ReportError(f"Prometheus at {url} refused the instructor's password") from None
        raise ReportError(f"Prometheus at {url} answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"Prometheus at {url} did not answer: {exc}") from None
    out = {}
    for item in answer.get("data", {}).get("result", []):
        user = item.get("metric", {}).get("user")
        value = float(item["value"][1])
        if user is not None and math.isfinite(value):
            out[user] = value
    return out


def collect(
    ask: Callable[[str], dict[str, float]], since: dt.datetime, now: dt.datetime
) -> list[Row]:
    seconds = max(60, math.ceil((now - since).total_seconds()))
    columns = [ask(promql.format(range=f"{seconds}s")) for _, promql in COLUMNS]
    users = sorted(set().union(*columns))
    return [Row(user, tuple(column.get(user, 0.0) for column in columns)) for user in users]


def render_table(rows: list[Row], since: dt.datetime) -> str:
    headings = ["student", *(heading for heading, _ in COLUMNS)]
    cells = [[r.user, *(f"{v:.{d}f}" for v, d in zip(r.values, DECIMALS, strict=True))]
             for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in [headings, *cells]) for i in range(len(headings))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    title = f"GPU use per student since {since.isoformat(timespec='minutes')}"
    body = [line(headings), line(["-" * w for w in widths]), *(line(c) for c in cells)]
    if not rows:
        body.append("(no student used a GPU in this time)")
    return "\n".join([title, *body]) + "\n"


def render_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", "gpu_hours", "peak_gpu_memory_gib", "crashes", "idle_culls"])
    for r in rows:
        writer.writerow([r.user, *(f"{v:.{d}f}" for v, d in zip(r.values, DECIMALS, strict=True))])
    return out.getvalue()


def main(argv: list[str], paths: Paths | None = None) -> int:
    paths = paths or Paths.from_env()
    p = argparse.ArgumentParser(
        prog="dlcourse-install report",
        description="GPU-hours, peak GPU memory, crashes and idle culls per student since a "
        "date, from Prometheus (staff only: it reads the instructor's credential file).",
    )
    p.add_argument("--since", required=True, metavar="DATE", help="e.g. 2026-09-01")
    p.add_argument("--csv", action="store_true", help="CSV instead of a table")
    p.add_argument("--prometheus", default=f"http://{Ports().address('prometheus')}",
                   metavar="URL", help="default %(default)s")  # fmt: skip
    p.add_argument("--netrc", default=paths.instructor_netrc, metavar="FILE",
                   help="the instructor's credential file (default %(default)s)")  # fmt: skip
    args = p.parse_args(argv)
    now = dt.datetime.now().astimezone()
    try:
        since = parse_since(args.since, now)
        host = urllib.parse.urlsplit(args.prometheus).hostname or ""
        auth = credentials(args.netrc, host)
        url = args.prometheus.rstrip("/")
        rows = collect(lambda promql: query(url, auth, promql, now.timestamp()), since, now)
    except ReportError as exc:
        print(f"dlcourse-install report: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_csv(rows) if args.csv else render_table(rows, since))
    return 0
