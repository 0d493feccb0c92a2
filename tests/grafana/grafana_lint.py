"""The rules of grafana/dashboard-linter, reimplemented for the dlcourse dashboards.

Each rule takes a dashboard's JSON and returns its problems as one-line strings (empty:
clean). Rules, after the linter's names:
- template-datasource-rule: a `datasource` variable of type prometheus;
- template-instance-rule: an `instance` variable (and `group`, our section filter);
- panel-datasource-rule / no hard-coded datasource: every panel, target and variable
  uses ${datasource}; no `__inputs` (import-time placeholders break provisioning);
- target-rate-interval-rule: rate() and irate() range over $__rate_interval; increase()
  over $__rate_interval or $__range (the linter's documented exception: a count over the
  whole time range, e.g. "crashes today");
- panel-units-rule: every data panel sets a unit Grafana knows;
- panel-title-description-rule: no empty titles, every data panel described;
- unique panel ids, and a stable uid (set, short, one of the known ones).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

DATASOURCE_REF = "${datasource}"
BUILTIN_GRAFANA = "-- Grafana --"
STABLE_UIDS = {"dlcourse-class", "dlcourse-student", "dlcourse-gpu", "dlcourse-hub"}
DATA_PANELS = {"stat", "timeseries", "table", "gauge", "bargauge", "state-timeline", "barchart"}
# Grafana unit ids (packages/grafana-data/src/valueFormats/categories.ts) used or likely here.
GRAFANA_UNITS = {
    "none",
    "short",
    "percent",
    "percentunit",
    "bool",
    "bool_yes_no",
    "bytes",
    "decbytes",
    "bits",
    "s",
    "ms",
    "h",  # "hours (h)": GPU-hours (toHours in the same file)
    "dtdurations",
    "dtdurationms",
    "dateTimeFromNow",
    "dateTimeAsIso",
    "celsius",
    "watt",
    "kwatt",
    "hertz",
    "reqps",
    "ops",
    "cps",
    "wps",
    "rps",
}
RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase)\s*\(")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def blank_strings(expr: str) -> str:
    """`expr` with the contents of its string literals blanked (same length, no brackets)."""
    return STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', expr)


def iter_panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def range_selectors(expr: str, start: int) -> list[str]:
    """The [range] selectors inside the call that starts at `start` (the opening paren)."""
    depth, i = 0, start
    while i < len(expr):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                break
        i += 1
    return re.findall(r"\[([^\]]*)\]", expr[start:i])


def rule_template_datasource(dashboard: dict) -> list[str]:
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if ds is None:
        return ["no `datasource` variable"]
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        return ["`datasource` variable is not a prometheus datasource variable"]
    return []


def rule_template_instance(dashboard: dict) -> list[str]:
    names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    return [f"no `{name}` variable" for name in ("instance", "group") if name not in names]


def _datasource_problems(where: str, ref: object) -> list[str]:
    uid = ref.get("uid") if isinstance(ref, dict) else ref
    if uid != DATASOURCE_REF:
        return [f"{where}: datasource {ref!r} is not {DATASOURCE_REF}"]
    return []


def rule_datasource_everywhere(dashboard: dict) -> list[str]:
    problems = []
    if "__inputs" in dashboard:
        problems.append("dashboard has __inputs (an export for sharing, not for provisioning)")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            problems += _datasource_problems(
                f"variable ${variable['name']}", variable.get("datasource")
            )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        ref = annotation.get("datasource") or {}
        if not (annotation.get("builtIn") == 1 and ref.get("uid") == BUILTIN_GRAFANA):
            problems += _datasource_problems(f"annotation {annotation.get('name')}", ref)
    for panel in iter_panels(dashboard):
        if panel.get("type") == "row" or not panel.get("targets"):
            continue
        title = panel.get("title")
        problems += _datasource_problems(f"panel {title!r}", panel.get("datasource"))
        for target in panel["targets"]:
            problems += _datasource_problems(
                f"panel {title!r} target {target.get('refId')}", target.get("datasource")
            )
    return problems


def rule_rate_interval(dashboard: dict) -> list[str]:
    problems = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            expr = blank_strings(target.get("expr", ""))
            for match in RANGE_FUNCTION.finditer(expr):
                allowed = {"$__rate_interval"}
                if match.group(1) == "increase":
                    allowed.add("$__range")
                for selector in range_selectors(expr, match.end() - 1):
                    if selector not in allowed:
                        problems.append(
                            f"panel {panel.get('title')!r}: {match.group(1)}() over "
                            f"[{selector}], not {' or '.join(sorted(allowed))}"
                        )
    return problems


def rule_units(dashboard: dict) -> list[str]:
    problems = []
    for panel in iter_panels(dashboard):
        if panel.get("type") not in DATA_PANELS:
            continue
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit:
            problems.append(f"panel {panel.get('title')!r} has no unit")
        elif unit not in GRAFANA_UNITS:
            problems.append(f"panel {panel.get('title')!r}: unknown unit {unit!r}")
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "unit" and prop.get("value") not in GRAFANA_UNITS:
                    problems.append(
                        f"panel {panel.get('title')!r}: unknown unit {prop.get('value')!r}"
                    )
    return problems


def rule_titles(dashboard: dict) -> list[str]:
    problems = [] if dashboard.get("title", "").strip() else ["dashboard has no title"]
    for panel in iter_panels(dashboard):
        if not str(panel.get("title", "")).strip():
            problems.append(f"panel id {panel.get('id')} ({panel.get('type')}) has no title")
        elif panel.get("type") != "row" and not str(panel.get("description", "")).strip():
            problems.append(f"panel {panel['title']!r} has no description")
    return problems


def rule_panel_ids(dashboard: dict) -> list[str]:
    seen: dict[int, str] = {}
    problems = []
    for panel in iter_panels(dashboard):
        pid = panel.get("id")
        if not isinstance(pid, int):
            problems.append(f"panel {panel.get('title')!r} has no id")
        elif pid in seen:
            problems.append(f"panels {seen[pid]!r} and {panel.get('title')!r} share id {pid}")
        else:
            seen[pid] = panel.get("title", "")
    return problems


def rule_stable_uid(dashboard: dict) -> list[str]:
    uid = dashboard.get("uid")
    if not uid:
        return ["dashboard has no uid (Grafana would make a random one per install)"]
    if uid not in STABLE_UIDS:
        return [f"uid {uid!r} is not one of the documented ones {sorted(STABLE_UIDS)}"]
    return []


RULES = {
    "template-datasource-rule": rule_template_datasource,
    "template-instance-rule": rule_template_instance,
    "panel-datasource-rule": rule_datasource_everywhere,
    "target-rate-interval-rule": rule_rate_interval,
    "panel-units-rule": rule_units,
    "panel-title-description-rule": rule_titles,
    "panel-id-rule": rule_panel_ids,
    "uid-rule": rule_stable_uid,
}


def lint(dashboard: dict) -> list[str]:
    return [f"{name}: {p}" for name, rule in RULES.items() for p in rule(dashboard)]
