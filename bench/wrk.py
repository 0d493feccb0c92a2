"""`wrk`, the HTTP load generator (Debian package), run on a URL and its report parsed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
# The token comes from the environment, never from wrk's command line (ps shows that).
AUTH_SCRIPT = 'wrk.headers["Authorization"] = "Bearer " .. os.getenv("DLCOURSE_BENCH_TOKEN")\n'


class WrkError(Exception):
    pass


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    requests_per_second: float
    connections: int


def parse(report: str, connections: int) -> Latency:
    """p50 and p99 from `wrk --latency`; refuses a run with errors or failed answers."""
    percentiles = {int(q): float(v) * UNITS[unit] for q, v, unit in PERCENTILE.findall(report)}
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", report, re.M)
    if set(percentiles) != {50, 99} or rate is None:
        raise WrkError(f"no latency distribution in wrk's report:\n{report}")
    for problem in ("Non-2xx or 3xx responses", "Socket errors"):
        if problem in report:
            raise WrkError(f"wrk saw failures ({problem}):\n{report}")
    return Latency(percentiles[50], percentiles[99], float(rate.group(1)), connections)


def run(url: str, connections: int, seconds: int, token: str | None, workdir: Path) -> Latency:
    """`wrk -t<min(2, c)> -c<c> -d<seconds>s --latency url`, with the bearer token if any."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk is not installed (scripts/apt-packages.txt lists it)")
    argv = [wrk, f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    env = dict(os.environ)
    if token is not None:
        script = workdir / "auth.lua"
        script.write_text(AUTH_SCRIPT)
        argv += ["-s", str(script)]
        env["DLCOURSE_BENCH_TOKEN"] = token
    result = subprocess.run(
        [*argv, url], env=env, capture_output=True, text=True, timeout=seconds + 60
    )
    if result.returncode != 0:
        raise WrkError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse(result.stdout, connections)
