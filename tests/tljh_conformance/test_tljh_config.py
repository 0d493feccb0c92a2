"""dlcourse-install sets TLJH up with TLJH's own tljh-config: every command it runs is one
TLJH accepts, and the config.yaml they leave passes TLJH's schema and reads back as the
installer expects, so that a second run changes nothing."""

import uuid

import pytest
import yaml
from conftest import IS_ROOT, NOT_ROOT_REASON
from tljh_hub import installer_tljh_config_commands, probe, tljh_config

from dlcourse_installer import cli


def write_roster(folder):
    students = [f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    ta = f"dlct-ta-{uuid.uuid4().hex[:6]}"
    roster = folder / "roster.csv"
    rows = [f"{students[0]},A", f"{students[1]},A", f"{students[2]},B", f"{ta},,ta"]
    roster.write_text("username,section,role\n" + "\n".join(rows) + "\n")
    return roster, [*students, ta]


def test_tljh_accepts_every_tljh_config_command_of_the_installer(make_tljh_hub, tmp_path):
    roster, people = write_roster(tmp_path)
    # The fixture runs each command with TLJH's tljh-config and raises on a refusal.
    hub = make_tljh_hub(
        "--roster", str(roster), "--mem-limit", "1.5G", "--cpu-limit", "2", start=False
    )
    ran = [argv[1:3] for argv in hub.configured]
    assert ran == [["add-item", "users.allowed"]] * len(people) + [
        ["set", "limits.memory"], ["set", "limits.cpu"],
    ]  # fmt: skip
    assert probe("validate", prefix=hub.prefix) == {"errors": []}
    config = yaml.safe_load((hub.prefix / "config" / "config.yaml").read_text())
    assert config["users"] == {"admin": [hub.admin], "allowed": people}
    assert config["limits"] == {"memory": "1.5G", "cpu": 2}
    # The installer reads TLJH's file back (with TLJH's hub Python) and finds nothing to do.
    assert installer_tljh_config_commands(hub.prefix, *hub.install_args) == []


@pytest.mark.parametrize(
    ("option", "key", "value"),
    [
        ("--cpu-limit", "limits.cpu", "2"),
        ("--cpu-limit", "limits.cpu", "1.5"),
        ("--cpu-limit", "limits.cpu", "0.5"),
        ("--mem-limit", "limits.memory", "4G"),
        ("--mem-limit", "limits.memory", "1.5G"),
        ("--mem-limit", "limits.memory", "4"),
    ],
)
def test_the_installer_refuses_up_front_what_tljh_would_refuse(
    tljh_python, tmp_path, option, key, value
):
    """Refused at the start, with every other error, not by tljh-config half-way through."""
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON + "; tljh-config refuses to run without it")
    (tmp_path / "config").mkdir()
    tljh_accepts = tljh_config(tmp_path, "set", key, value).returncode == 0
    _, errors = cli.options_from(cli.build_parser().parse_args(["--admin", "t", option, value]))
    assert not errors or any(e.startswith(f"{option} {value!r}") for e in errors), errors
    installer_accepts = not errors
    assert installer_accepts <= tljh_accepts, f"{option} {value}: TLJH refuses it"
