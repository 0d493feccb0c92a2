"""The public metric contract (shared/spec/metrics.md beside the checkout) against the code.

Every contract metric must be defined with its type and labels, and docs/metrics.md must be
what the code generates. The contract lives outside this repository; CI lays it beside the
clone. Where it is absent the contract check is skipped with that reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlcourse_exporter import docs
from dlcourse_exporter.docs import all_metrics

REPO = Path(__file__).resolve().parent.parent
CONTRACT = REPO.parent / "shared" / "spec" / "metrics.md"
ROW = re.compile(r"^\|\s*(dlcourse_\w+)\s*\|\s*([^|]+?)\s*\|\s*([^|]*?)\s*\|", re.M)


def contract_rows() -> list[tuple[str, str, set[str]]]:
    rows = []
    for name, kind, labels in ROW.findall(CONTRACT.read_text()):
        # "gpu, uuid, clock (sm, memory)": the parentheses list values, not labels.
        names = re.sub(r"\([^)]*\)", "", labels)
        label_set = {label.strip() for label in names.split(",") if label.strip()}
        rows.append((name, "counter" if kind.startswith("counter") else "gauge", label_set))
    return rows


@pytest.mark.skipif(not CONTRACT.exists(), reason=f"no metric contract at {CONTRACT}")
def test_every_contract_metric_is_defined_with_its_type_and_labels():
    defined = {metric.exposed_name: metric for metric in all_metrics()}
    rows = contract_rows()
    assert len(rows) > 30, "the contract's tables were not parsed"
    problems = []
    for name, kind, labels in rows:
        metric = defined.get(name)
        if metric is None:
            problems.append(f"{name}: not defined")
        elif metric.kind != kind or set(metric.labels) != labels:
            problems.append(
                f"{name}: {metric.kind}{sorted(metric.labels)} != {kind}{sorted(labels)}"
            )
    assert not problems, "\n".join(problems)


def test_every_metric_is_prefixed_and_documented_in_base_units():
    for metric in all_metrics():
        assert metric.name.startswith("dlcourse_"), metric.name
        assert metric.help.endswith("."), metric.name
        assert not metric.name.endswith(("_ms", "_mb", "_percent", "_kb")), metric.name


def test_generated_docs_are_current():
    """docs/metrics.md and docs/exporter.md's settings are what `python -m
    dlcourse_exporter.docs` writes from the code's declarations."""
    metrics_md = (REPO / "docs" / "metrics.md").read_text()
    exporter_md = (REPO / "docs" / "exporter.md").read_text()
    assert metrics_md == docs.metrics_md(), "docs/metrics.md: run python -m dlcourse_exporter.docs"
    assert exporter_md == docs.with_settings(exporter_md), "docs/exporter.md: the same"
