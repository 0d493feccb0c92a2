"""The benchmark reads wrk's report: latencies in every unit, and failed runs refused."""

from __future__ import annotations

import pytest

from bench.wrk import WrkError, parse

REPORT = """Running 20s test @ http://127.0.0.1:9945/metrics
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  512.33us  12.11ms   90.10%
    Req/Sec     2.01k   150.22     2.40k    70.00%
  Latency Distribution
     50%  {p50}
     75%    1.10ms
     90%    1.50ms
     99%  {p99}
  80212 requests in 20.01s, 4.56GB read
{extra}Requests/sec:   4008.40
Transfer/sec:    233.51MB
"""


@pytest.mark.parametrize(
    ("p50", "p99", "expected"),
    [("812.00us", "4.02ms", (0.812, 4.02)), ("25.10ms", "1.20s", (25.1, 1200.0))],
)
def test_percentiles_in_any_unit(p50, p99, expected):
    latency = parse(REPORT.format(p50=p50, p99=p99, extra=""), connections=4)
    assert (latency.p50_ms, latency.p99_ms) == pytest.approx(expected)
    assert latency.requests_per_second == 4008.40 and latency.connections == 4


@pytest.mark.parametrize(
    "extra",
    [
        "  Non-2xx or 3xx responses: 12\n",
        "  Socket errors: connect 0, read 3, write 0, timeout 0\n",
    ],
)
def test_a_run_with_failures_is_refused(extra):
    # A run answered 401 (a wrong token) or timed out measures nothing worth reporting.
    with pytest.raises(WrkError, match="failures"):
        parse(REPORT.format(p50="1ms", p99="2ms", extra=extra), connections=4)


def test_a_report_without_latencies_is_refused():
    with pytest.raises(WrkError, match="no latency distribution"):
        parse("unable to connect to 127.0.0.1:9945 Connection refused\n", connections=1)
