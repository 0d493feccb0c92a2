"""Reruns do what changed: an install rerun with one option changed runs again exactly the
steps that depend on it, and they act (docs/installer.md, "Reruns", is the table checked).

Old behaviour: `--gpu-policy round-robin` after an install said "done in an earlier run" and
set nothing (the course step read the option without declaring it), and a new `--source`
reran the exporter step, which installed nothing (it installed only into an empty venv).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlcourse_installer.checklist import STEPS, runner
from dlcourse_installer.inputs.options import OPTIONS

from .conftest import REPO, install
from .fakehost import FakeHost

BASE = ["--admin", "teacher", "--yes", "--mem-limit", "4G", "--cpu-limit", "2"]
HUB_PIP = "run /opt/tljh/hub/bin/python3 -m pip install"
EXPORTER_PIP = "run /opt/dlcourse/exporter/bin/python -m pip install"
GPU_HOOK = "/opt/tljh/config/jupyterhub_config.d/dlcourse-staff.py"


def rerun_table() -> dict[str, set[str]]:
    """docs/installer.md's table: each option (flag) -> the steps a change of it runs."""
    text = (Path(REPO) / "docs" / "installer.md").read_text()
    table = text.split("<!-- reruns:", 1)[1].split("<!-- end of reruns -->", 1)[0]
    every = {step.name for step in STEPS if not step.always}
    rows: dict[str, set[str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`--"):
            continue
        steps = every if cells[1] == "every step" else set(re.findall(r"`([a-z-]+)`", cells[1]))
        for flag in re.findall(r"`(--[a-z-]+)`", cells[0]):
            rows.setdefault(flag, steps)
    return rows


def changed(flag: str, *values: str) -> list[str]:
    """BASE with flag set to values (replacing BASE's own value, if any)."""
    argv = list(BASE)
    if flag in argv:
        del argv[argv.index(flag) : argv.index(flag) + 1 + len(values)]
    return [*argv, flag, *values]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def another_checkout(tmp_path: Path) -> str:
    folder = tmp_path / "dlcourse-next"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "dlcourse"\nversion = "0.1.0"\n')
    return str(folder)


# option -> (the rerun's argv, what the steps it runs must do, the exit status)
CASES = {
    "--admin": (
        lambda t: [*BASE, "--admin", "grace"],
        ["write /etc/dlcourse/hub-passwords/grace", "tljh-config add-item users.admin grace"],
        runner.EXIT_OK,
    ),
    "--driver": (lambda t: changed("--driver", "575-server"), [], runner.EXIT_FAILED),
    "--ppa": (lambda t: [*BASE, "--ppa", "--driver", "580"], [], runner.EXIT_FAILED),
    "--no-gpu": (
        lambda t: changed("--no-gpu"),
        ["--index-url https://download.pytorch.org/whl/cpu torch torchvision"],
        runner.EXIT_OK,
    ),
    "--tensorflow": (
        lambda t: changed("--tensorflow"),
        ["pip install 'tensorflow[and-cuda]'"],
        runner.EXIT_OK,
    ),
    "--roster": (
        lambda t: changed("--roster", write(t, "roster.csv", "username,section\nada,A\n")),
        ["tljh-config add-item users.allowed ada", "dlcourse-course.py", "restart jupyterhub"],
        runner.EXIT_OK,
    ),
    "--packages": (
        lambda t: changed("--packages", write(t, "packages.txt", "einops==0.8.1\n")),
        ["pytorch-constraints.txt einops==0.8.1", "userdel dlcourse-check-"],
        runner.EXIT_OK,
    ),
    "--mem-limit": (
        lambda t: changed("--mem-limit", "8G"),
        ["tljh-config set limits.memory 8G", "restart jupyterhub"],
        runner.EXIT_OK,
    ),
    "--cpu-limit": (
        lambda t: changed("--cpu-limit", "4"),
        ["tljh-config set limits.cpu 4", "restart jupyterhub"],
        runner.EXIT_OK,
    ),
    "--gpu-policy": (
        lambda t: changed("--gpu-policy", "round-robin"),
        ["tljh-config set dlcourse.gpu_policy round-robin", "restart jupyterhub"],
        runner.EXIT_OK,
    ),
    "--gpu-strict": (
        lambda t: changed("--gpu-strict"),
        ["tljh-config set dlcourse.gpu_strict true", "restart jupyterhub"],
        runner.EXIT_OK,
    ),
    "--gpu-idle-cull": (
        lambda t: changed("--gpu-idle-cull"),
        ["tljh-config set dlcourse.gpu_idle_cull true", "restart jupyterhub"],
        runner.EXIT_OK,
    ),
    "--staff-group": (
        lambda t: changed("--staff-group", "tutors"),
        [
            f"write {GPU_HOOK}",
            "dlcourse-gpus.py",
            "write /etc/grafana/grafana.ini",
            "restart jupyterhub",
            "restart grafana-server",
        ],
        runner.EXIT_OK,
    ),  # fmt: skip
    "--grafana-port": (
        lambda t: changed("--grafana-port", "954"),
        [f"write {GPU_HOOK}", "write /etc/grafana/grafana.ini", "restart grafana-server"],
        runner.EXIT_OK,
    ),
    "--domain": (
        lambda t: changed("--domain", "class.example.edu"),
        [f"write {GPU_HOOK}", "write /etc/grafana/grafana.ini", "restart grafana-server"],
        runner.EXIT_OK,
    ),
    "--tljh-version": (
        lambda t: changed("--tljh-version", "2.0.1"),
        ["tljh-bootstrap-2.0.1.py --version 2.0.1 --admin teacher --plugin"],
        runner.EXIT_OK,
    ),
    "--source": (
        lambda t: changed("--source", another_checkout(t)),
        [
            f"{HUB_PIP} --upgrade {{tmp}}/dlcourse-next",
            f"{EXPORTER_PIP} --upgrade {{tmp}}/dlcourse-next",
            "restart jupyterhub",
            "restart dlcourse-exporter",
        ],
        runner.EXIT_OK,
    ),  # fmt: skip
    "--reboot": (lambda t: changed("--reboot"), [], runner.EXIT_OK),
    # --yes is in BASE: its change is a rerun without it, which asks, and without a
    # terminal stops after the preflight.
    "--yes": (lambda t: [a for a in BASE if a != "--yes"], [], runner.EXIT_BAD_OPTIONS),
    "--dry-run": (lambda t: changed("--dry-run"), [], runner.EXIT_OK),
    "--recheck": (lambda t: changed("--recheck"), [], runner.EXIT_OK),
}
# Not a rerun of the same install: another prefix is another install, with its own state.
NOT_RERUNS = {"--prefix"}


def steps_that_ran(out: str) -> set[str]:
    by_title = {step.title: step for step in STEPS}
    ran = set()
    for title, rest in re.findall(r"^\[\d+/\d+\] (.+?) \.\.\.(.*)$", out, re.MULTILINE):
        step = by_title[title]
        if not step.always and "done in an earlier run" not in rest:
            ran.add(step.name)
    return ran


def test_every_option_is_in_the_table_and_the_cases():
    flags = {option.flag for option in OPTIONS} - NOT_RERUNS
    assert set(rerun_table()) == flags
    assert set(CASES) == flags


@pytest.mark.parametrize("flag", sorted(CASES))
def test_a_rerun_with_one_option_changed_runs_exactly_the_steps_that_depend_on_it(tmp_path, flag):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, BASE)
    assert rc == runner.EXIT_OK, out
    host.actions.clear()
    argv, actions, status = CASES[flag]
    rc, out = install(host, argv(tmp_path))
    assert rc == status, out
    assert steps_that_ran(out) == rerun_table()[flag], out
    if status == runner.EXIT_FAILED:  # the driver step refuses to switch in place
        assert "`dlcourse-install driver --purge`, reboot" in out, out
    for action in actions:
        action = action.format(tmp=tmp_path)
        assert any(action in done for done in host.actions), (action, host.actions)
    if not actions:  # nothing to do: only the state may note the new command line
        assert all("install-state.json" in done for done in host.actions), host.actions
