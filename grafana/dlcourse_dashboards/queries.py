"""Every PromQL query of the committed dashboards, with Grafana's variables filled in.

For checks against a real Prometheus (and promtool): each panel target and each variable
query of grafana/dashboards/*.json, Grafana variables replaced by given values. Standard
library only; it reads the JSON files, so it checks what Grafana actually gets.

    for dashboard, panel, expr in iter_queries({"user": "alice"}):
        ...
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"

# Values that make every query valid PromQL. $__rate_interval is at least 4 scrape
# intervals (15 s); "All" of a multi-value variable is the regex ".*" (allValue).
DEFAULT_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "instance": ".*",
    "group": ".*",
    "gpu": ".*",
    "user": "student",
}

# $name, ${name}, ${name:format} and [[name]].
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
# label_values(selector, label) and query_result(expr): the PromQL inside.
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


class UnknownVariable(KeyError):
    """A query uses a variable no value was given for."""


def substitute(expr: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise UnknownVariable(f"no value for ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(replace, expr)


def variable_promql(query: str) -> str | None:
    """The PromQL inside a Prometheus variable query; None for label_names() and the like."""
    for pattern in (LABEL_VALUES, QUERY_RESULT):
        match = pattern.match(query)
        if match:
            return match.group(1)
    if re.match(r"^\s*(label_names|metrics)\(", query):
        return None
    return query  # a bare expression: Grafana runs it as query_result


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[str, dict]:
    """File name -> dashboard JSON."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_raw_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, query) of every variable query and panel target, unsubstituted."""
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            promql = variable_promql(query or "")
            if promql:
                yield f"variable ${variable['name']}", promql
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", ""), target["expr"]


def iter_queries(
    values: Mapping[str, str] | None = None, directory: Path = DASHBOARDS_DIR
) -> Iterator[tuple[str, str, str]]:
    """(dashboard title, panel title or "variable $name", PromQL) with variables substituted.

    `values` overrides DEFAULT_VALUES (e.g. {"user": "alice", "__range": "6h"}).
    """
    merged = {**DEFAULT_VALUES, **(values or {})}
    for dashboard in load_dashboards(directory).values():
        for where, query in iter_raw_queries(dashboard):
            yield dashboard["title"], where, substitute(query, merged)
