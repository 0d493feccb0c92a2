"""Every dashboard query is valid PromQL (real promtool) and uses only metrics that exist.

Metrics that exist: the dlcourse contract, the recording rules in prometheus/rules/,
JupyterHub's own metrics (from the installed jupyterhub's registry) and what the real
node_exporter exports on this machine.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from dlcourse_dashboards.queries import iter_queries

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
QUERIES = list(iter_queries())

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
}  # fmt: skip
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?!\w)\s*(\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a parse good enough for our dashboards)."""
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges
    text = GROUPING.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def promtool_check(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`promtool check rules` on one recording rule per expression, each in its own group."""
    groups = [
        {"name": f"query_{i}", "rules": [{"record": f"dashboard:query_{i}", "expr": expr}]}
        for i, expr in enumerate(exprs)
    ]
    rules = tmp_path / "dashboard-queries.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus (scripts/apt-packages.txt)")
    return path


def test_metric_names_parser() -> None:
    expr = (
        'sum by (user, gpu) (rate(a_total{job="x", h=~"api[.].*"}[$__rate_interval])) '
        'unless on(user) (b:c:d{g=~"$g"} > 0) or vector(0) * on(gpu) group_left(name) e_info'
    )
    assert metric_names(expr) == {"a_total", "b:c:d", "e_info"}
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))") == {"x_bucket"}


def test_every_query_parses(promtool, tmp_path) -> None:
    exprs = [expr for _, _, expr in QUERIES]
    result = promtool_check(exprs, tmp_path)
    if result.returncode != 0:
        bad = sorted({int(i) for i in re.findall(r"query_(\d+)", result.stdout + result.stderr)})
        details = "\n".join(f"{QUERIES[i][0]} / {QUERIES[i][1]}: {QUERIES[i][2]}" for i in bad)
        pytest.fail(f"promtool rejects:\n{details}\n{result.stdout}{result.stderr}")


def test_promtool_check_catches_a_bad_query(promtool, tmp_path) -> None:
    result = promtool_check(["sum(rate(x[1m])", "up"], tmp_path)
    assert result.returncode != 0 and "query_0" in result.stdout + result.stderr


def contract_metrics() -> set[str]:
    """What the exporter defines (a superset of the public contract, checked in
    tests/test_metric_contract.py)."""
    from dlcourse_exporter.docs import all_metrics

    return {metric.exposed_name for metric in all_metrics()}


def recording_rules() -> set[str]:
    names = set()
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            names |= {rule["record"] for rule in group.get("rules", []) if "record" in rule}
    return names


def jupyterhub_metrics() -> set[str]:
    """Sample names of every metric jupyterhub.metrics defines, labelled or not."""
    import jupyterhub.metrics  # noqa: F401  (registers the hub's metrics)
    from prometheus_client import REGISTRY

    suffixes = {
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created"),
        "counter": ("_total", "_created"),
    }
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("jupyterhub_"):
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def node_exporter_metrics() -> set[str]:
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        pytest.fail("node_exporter not found: install prometheus-node-exporter (apt-packages.txt)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1].isalpha()}


def test_every_metric_a_panel_uses_exists(node_exporter_metrics) -> None:
    known = contract_metrics() | recording_rules() | jupyterhub_metrics() | node_exporter_metrics
    unknown = sorted(
        f"{dashboard} / {where}: {name}"
        for dashboard, where, expr in QUERIES
        for name in metric_names(expr) - known
    )
    assert not unknown, "metrics nothing exports:\n" + "\n".join(unknown)


def test_recording_rules_used_are_defined() -> None:
    """A level:metric:operation name in a panel must be a rule in prometheus/rules/."""
    used = {n for _, _, expr in QUERIES for n in metric_names(expr) if ":" in n}
    assert used, "the dashboards should reuse the recording rules"
    assert used <= recording_rules(), sorted(used - recording_rules())
