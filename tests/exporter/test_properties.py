"""Property-based tests (hypothesis): arbitrary Unicode and JSON from the hub, and arbitrary
label values through the exposition, checked with prometheus_client's own parser and
`promtool check metrics`.

Issue 11, "Why" 3: one lone surrogate in a hub name made /metrics answer 500.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from dlcourse_exporter.collectors.hub import HubCollector
from dlcourse_exporter.model import HubSnapshot
from dlcourse_exporter.sources.hub import (
    HubResponseError,
    parse_json,
    parse_page,
    parse_user,
    parse_users,
)
from dlcourse_exporter.untrusted import (
    MAX_LABEL_CHARS,
    label_value,
    log_text,
    shown_text,
    valid_text,
)

# Any code point, and often a lone surrogate (what JSON's "\udXXX" escapes produce);
# st.text() would leave surrogates out, so the characters are joined by hand.
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | SURROGATES, max_size=40).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
TIMESTAMP = st.none() | ANY_TEXT | st.sampled_from(["2026-01-05T09:00:00Z", "9999-12-31T23:59:59Z"])
SERVER = st.fixed_dictionaries(
    {"ready": JSON, "pending": st.none() | ANY_TEXT, "started": TIMESTAMP}
)
USER = st.fixed_dictionaries(
    {
        "name": ANY_TEXT,
        "admin": JSON,
        "groups": st.lists(ANY_TEXT, max_size=5) | JSON,
        "last_activity": TIMESTAMP,
        "servers": st.dictionaries(ANY_TEXT, SERVER | JSON, max_size=3) | JSON,
    }
)
QUICK = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@QUICK
@given(ANY_TEXT)
def test_label_values_are_valid_and_bounded(text):
    value = label_value(text)
    assert encodable(value) and len(value) <= MAX_LABEL_CHARS
    if encodable(text) and len(text) <= MAX_LABEL_CHARS:
        assert value == text  # ordinary names are untouched


@QUICK
@given(ANY_TEXT, ANY_TEXT)
def test_long_names_never_share_a_label(a, b):
    a, b = valid_text(a) + "x" * MAX_LABEL_CHARS, valid_text(b) + "x" * MAX_LABEL_CHARS
    if a != b:
        assert label_value(a) != label_value(b)


@QUICK
@given(ANY_TEXT)
def test_log_text_is_one_printable_line(text):
    line = log_text(text)
    assert "\n" not in line and "\x1b" not in line and encodable(line)
    assert len(line) <= 4 * 200 + 40


@QUICK
@given(ANY_TEXT, st.integers(min_value=1, max_value=50))
def test_shown_text_is_one_printable_line_within_its_limit(text, limit):
    line = shown_text(text, limit)
    assert len(line) <= limit and encodable(line)
    assert all(char.isprintable() for char in line) and line == line.strip()


def parses_or_refuses(parse, body) -> object:
    """parse(body), or None when it raised HubResponseError: the only error allowed."""
    try:
        return parse(body)
    except HubResponseError:
        return None


@QUICK
@given(JSON)
def test_any_json_shape_is_a_page_or_a_clear_error(body):
    parses_or_refuses(parse_page, body)


@QUICK
@given(USER | JSON)
def test_any_user_model_parses_to_valid_names_or_a_clear_error(model):
    user = parses_or_refuses(parse_user, model)
    if user is not None:
        for text in (user.name, *user.groups, *(s.name for s in user.servers)):
            assert encodable(text) and len(text) <= MAX_LABEL_CHARS


@QUICK
@given(st.lists(USER, max_size=6))
def test_any_answer_bytes_parse_or_refuse(models):
    # ensure_ascii turns a lone surrogate into "\ud800", as a hub's JSON encoder may.
    body = json.dumps({"items": models, "_pagination": {"limit": 200, "total": len(models)}})
    page = parses_or_refuses(parse_page, parses_or_refuses(parse_json, body.encode()))
    if page is not None:
        parses_or_refuses(parse_users, page.items)


def test_deeply_nested_json_is_refused_not_a_crash():
    with pytest.raises(HubResponseError, match="malformed JSON"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


class Rendered:
    def __init__(self, snapshot: HubSnapshot) -> None:
        self.families = list(HubCollector().render(snapshot))

    def collect(self):
        return self.families


@pytest.mark.live
@settings(database=None, deadline=None, max_examples=40)
@given(st.lists(st.tuples(ANY_TEXT.filter(bool), ANY_TEXT), min_size=1, max_size=15))
def test_any_names_make_an_exposition_every_parser_accepts(pairs):
    models = [
        {"name": name, "admin": False, "groups": [group], "last_activity": None, "servers": {}}
        for name, group in pairs
    ]
    snapshot = parse_users(models)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Rendered(snapshot))

    text = generate_latest(registry).decode()
    users = {
        s.labels["user"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if f.name == "dlcourse_hub_user_info"
    }
    assert users == {label_value(name) for name, _ in pairs}
    openmetrics = generate_openmetrics(registry).decode()
    assert {f.name for f in parse_openmetrics(openmetrics)} >= {"dlcourse_hub_user_info"}
    if shutil.which("promtool"):
        result = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
