"""The installer's options come from one declaration (options.OPTIONS): the flags, their
checks, and the option table of docs/installer.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcourse_installer import cli, docs
from dlcourse_installer.inputs.options import OPTIONS, Options
from dlcourse_installer.layout.ports import parse_override

from .conftest import REPO


def test_the_option_table_of_docs_installer_md_is_current():
    """Written by `python -m dlcourse_installer.docs` from the declarations."""
    text = (Path(REPO) / "docs" / "installer.md").read_text()
    assert docs.with_options(text) == text, "run python -m dlcourse_installer.docs"
    for option in OPTIONS:
        assert f"| `{option.flag}" in text, option.flag


def test_every_declared_option_is_a_flag_and_nothing_else_is():
    parser = cli.build_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings}
    declared = {o.flag for o in OPTIONS} | {o.short for o in OPTIONS if o.short}
    assert flags - declared == {"-h", "--help", "--version"}
    assert declared <= flags


def test_options_not_given_take_their_declared_defaults():
    opts, errors = cli.options_from(cli.build_parser().parse_args(["--admin", "Teacher"]))
    assert errors == []
    assert opts.admins == ("teacher",)  # the hub lowercases names
    defaults = Options()
    for option in OPTIONS:
        if option.name not in ("admins", "source"):
            assert getattr(opts, option.name) == getattr(defaults, option.name), option.name
    assert opts.gpu_strict is None  # None: keep what TLJH's config.yaml says


def test_every_bad_value_is_listed_at_once():
    argv = ["--mem-limit", "lots", "--cpu-limit", "1.5", "--grafana-port", "http",
            "--tljh-version", "main", "--gpu-policy", "fair", "--domain", "a b"]  # fmt: skip
    _, errors = cli.options_from(cli.build_parser().parse_args(argv))
    assert [e.split(" ", 1)[0] for e in errors] == [
        "--grafana-port", "--mem-limit", "--cpu-limit", "--gpu-policy", "--domain",
        "--tljh-version", "--admin",
    ]  # fmt: skip


@pytest.mark.parametrize("port", ["٩٥٢", "²"])
def test_a_port_of_other_digits_than_0_to_9_is_refused(port):
    """str.isdigit() is true for both: '٩٥٢' was read as port 952, '²' gave int()'s error."""
    argv = ["--admin", "teacher", "--grafana-port", port]
    _, errors = cli.options_from(cli.build_parser().parse_args(argv))
    assert errors == [f"--grafana-port {port!r}: not a TCP port"]


@pytest.mark.parametrize("port", ["٩٤٧", "²"])
def test_a_render_port_of_other_digits_than_0_to_9_is_refused(port):
    """str.isdigit() is true for both: '٩٤٧' was read as port 947, '²' gave int()'s error."""
    with pytest.raises(ValueError) as refused:
        parse_override(f"prometheus={port}")
    assert str(refused.value) == f"--port 'prometheus={port}': {port!r} is not a TCP port"
