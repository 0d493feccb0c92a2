"""dlcourse-install sets TLJH up with TLJH's own tljh-config: every command it runs is one
TLJH accepts, and the config.yaml they leave passes TLJH's schema and reads back as the
installer expects, so that a second run changes nothing."""

import os

import pytest
import yaml

from dlcourse_installer import cli
from dlcourse_testing.tljh_hub import (
    installer_tljh_config_commands,
    probe,
    tljh_config,
    write_roster,
)


def test_tljh_accepts_every_tljh_config_command_of_the_installer(make_tljh_hub, tmp_path):
    roster, people = write_roster(tmp_path)
    # The fixture runs each command with TLJH's tljh-config and raises on a refusal.
    hub = make_tljh_hub(
        "--roster", str(roster), "--mem-limit", "1.5G", "--cpu-limit", "2",
        "--gpu-policy", "round-robin", "--gpu-strict", "--gpu-idle-cull", start=False,
    )  # fmt: skip
    ran = [argv[1:3] for argv in hub.configured]
    assert ran == [["add-item", "users.allowed"]] * len(people) + [
        ["set", "limits.memory"], ["set", "limits.cpu"],
        ["set", "dlcourse.gpu_policy"], ["set", "dlcourse.gpu_strict"],
        ["set", "dlcourse.gpu_idle_cull"],
    ]  # fmt: skip
    assert probe("validate", prefix=hub.prefix) == {"errors": []}
    config = yaml.safe_load((hub.prefix / "config" / "config.yaml").read_text())
    assert config["users"] == {"admin": [hub.admin], "allowed": people}
    assert config["limits"] == {"memory": "1.5G", "cpu": 2}
    # The GPU hook's settings: a section TLJH's schema lets through (docs/gpu-assignment.md).
    assert config["dlcourse"] == {
        "gpu_policy": "round-robin", "gpu_strict": True, "gpu_idle_cull": True,
    }  # fmt: skip
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
    if os.geteuid() != 0:
        pytest.skip("tljh-config runs only as root (CI runs as root)")
    (tmp_path / "config").mkdir()
    tljh_accepts = tljh_config(tmp_path, "set", key, value).returncode == 0
    _, errors = cli.options_from(cli.build_parser().parse_args(["--admin", "t", option, value]))
    assert not errors or any(e.startswith(f"{option} {value!r}") for e in errors), errors
    installer_accepts = not errors
    assert installer_accepts <= tljh_accepts, f"{option} {value}: TLJH refuses it"
