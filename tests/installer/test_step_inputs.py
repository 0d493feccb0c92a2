"""A step sees only the options it declares, and is done only while its inputs and the
releases it installed are unchanged (checklist/step.py Step, runner.run)."""

from __future__ import annotations

import io

import pytest

from dlcourse_installer import cli
from dlcourse_installer.checklist import STEPS, runner
from dlcourse_installer.checklist.state import State
from dlcourse_installer.checklist.step import Context, Step
from dlcourse_installer.inputs.options import BY_NAME, RUN_OPTIONS, Options, UndeclaredOption
from dlcourse_installer.layout.paths import Paths

from .conftest import install
from .fakehost import EXPORTER_ENV, TLJH_ENV, FakeHost

BASE = ["--admin", "teacher", "--yes"]


def test_a_view_holds_only_the_declared_options_and_those_of_the_run():
    opts = Options(admins=("teacher",), gpu_policy="round-robin", dry_run=True)
    view = opts.only(["admins"])
    assert view.admins == ("teacher",) and view.dry_run is True
    with pytest.raises(UndeclaredOption, match="--gpu-policy"):
        view.gpu_policy  # noqa: B018 - the read is the test
    with pytest.raises(UndeclaredOption, match="--roster"):
        view.groups()  # read through a helper all the same


def test_a_step_that_reads_an_undeclared_option_stops_the_run(tmp_path):
    """The runner hands each step its view: a step cannot depend on an option that would
    not run it again."""
    seen = []
    reader = Step("reader", "Reads --gpu-policy", lambda ctx: seen.append(ctx.opts.gpu_policy))
    host = FakeHost(tmp_path)
    ctx = Context(host=host, paths=Paths(), opts=Options(gpu_policy="all", yes=True),
                  state=State(), out=io.StringIO())  # fmt: skip
    with pytest.raises(UndeclaredOption):
        runner.run(ctx, [reader], closing=lambda ctx: [])
    declared = Step("reader", "Reads --gpu-policy", reader.ensure, ("gpu_policy",))
    assert runner.run(ctx, [declared], closing=lambda ctx: []) == runner.EXIT_OK
    assert seen == ["all"]


def test_steps_declare_only_options_that_exist_and_are_not_the_runs():
    for step in STEPS:
        assert set(step.reads) <= set(BY_NAME), step.name
        assert not set(step.reads) & RUN_OPTIONS, step.name


def roster(tmp_path) -> str:
    path = tmp_path / "roster.csv"
    path.write_text("username,section,role,gpu\nada,A,student,0\nbea,B,student,0\ntom,,ta,\n")
    return str(path)


def packages(tmp_path) -> str:
    path = tmp_path / "course-packages.txt"
    path.write_text("einops==0.8.1\ntorchaudio\n\nconda:\nffmpeg\n")
    return str(path)


def every_option(tmp_path) -> list[str]:
    """Every option that an install on a GPU server can take at once."""
    return [
        "--roster", roster(tmp_path), "--packages", packages(tmp_path), "--gpu-policy",
        "roster", "--gpu-strict", "--mem-limit", "4G", "--cpu-limit", "2", "--tensorflow",
        "--staff-group", "tutors", "--grafana-port", "954", "--domain",
        "https://class.example.edu", "--driver", "580-server", "--reboot",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        every_option,
        lambda t: ["--no-gpu", "--tensorflow"],  # the CPU-only paths of the driver and PyTorch
        lambda t: ["--ppa", "--driver", "580"],  # the PPA's path of the driver step
    ],
    ids=["all-options", "no-gpu", "ppa"],
)
def test_every_step_reads_only_the_options_it_declares(tmp_path, extra):
    """The whole install on the fake server, every step running: an undeclared read would
    raise UndeclaredOption here, as it does in a real install."""
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    rc, out = install(host, [*BASE, *extra(tmp_path)])
    assert rc == runner.EXIT_OK, out
    assert "done in an earlier run" not in out
    assert out.count("      ok: ") == len(STEPS)


def test_the_packages_command_reads_only_what_its_step_declares(tmp_path, capsys):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, BASE)[0] == runner.EXIT_OK
    assert cli.packages([packages(tmp_path)], host=host, paths=Paths()) == runner.EXIT_OK


def test_dlcourse_changed_by_hand_in_the_exporter_venv_is_put_back(tmp_path):
    """The exporter step is done only while its venv holds the release it installed."""
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, BASE)[0] == runner.EXIT_OK
    host.run([f"{EXPORTER_ENV}/bin/python", "-m", "pip", "install", "dlcourse==0.0.9"])
    host.actions.clear()
    rc, out = install(host, BASE)
    assert rc == runner.EXIT_OK, out
    assert out.count("done in an earlier run") == 7 and "[8/10] dlcourse exporter ...\n" in out
    assert host.distribution(EXPORTER_ENV, "dlcourse") == "0.1.0"
    assert "run systemctl restart dlcourse-exporter.service" in host.actions


def test_the_same_checkout_with_new_contents_is_installed_again(tmp_path):
    checkout = tmp_path / "dlcourse"
    (checkout / "installer").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "dlcourse"\nversion = "0.1.0"\n')
    (checkout / "installer" / "steps.py").write_text("# first\n")
    argv = [*BASE, "--source", str(checkout)]
    host = FakeHost(tmp_path / "server", driver_needs_reboot=False)
    assert install(host, argv)[0] == runner.EXIT_OK
    host.actions.clear()
    assert install(host, argv)[0] == runner.EXIT_OK and host.actions == []  # unchanged

    (checkout / "installer" / "steps.py").write_text("# second\n")  # a git pull
    rc, out = install(host, argv)
    assert rc == runner.EXIT_OK, out
    for python in (f"{TLJH_ENV}/bin/python3", f"{EXPORTER_ENV}/bin/python"):
        assert f"run {python} -m pip install --upgrade {checkout}" in host.actions
    assert out.count("done in an earlier run") == 6  # all but TLJH's and the exporter's


def test_a_same_version_build_from_a_url_replaces_the_installed_one(tmp_path):
    """pip keeps an installed release of the same version from a URL: the installer sees
    that the release did not change and reinstalls it without its dependencies."""
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, BASE)[0] == runner.EXIT_OK
    url = "dlcourse @ git+https://git.example.edu/dlcourse@v0.1.0-fix"
    host.actions.clear()
    rc, out = install(host, [*BASE, "--source", url])
    assert rc == runner.EXIT_OK, out
    for python in (f"{TLJH_ENV}/bin/python3", f"{EXPORTER_ENV}/bin/python"):
        upgrade = host.actions.index(f"run {python} -m pip install --upgrade '{url}'")
        reinstall = f"run {python} -m pip install --force-reinstall --no-deps '{url}'"
        assert host.actions[upgrade + 1] == reinstall
    host.actions.clear()
    assert install(host, [*BASE, "--source", url])[0] == runner.EXIT_OK
    assert host.actions == []


def test_tljh_changed_by_hand_is_brought_back_to_the_pinned_release(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    assert install(host, BASE)[0] == runner.EXIT_OK
    # Someone ran TLJH's own bootstrap with another version.
    host._tljh_bootstrap(["--version", "2.1.0", "--admin", "teacher"],
                         {"TLJH_INSTALL_PREFIX": "/opt/tljh"})  # fmt: skip
    host.actions.clear()
    rc, out = install(host, BASE)
    assert rc == runner.EXIT_OK, out
    assert "TLJH 2.1.0 is installed; its bootstrap installs 2.0.0" in out
    assert host.distribution(TLJH_ENV, "the_littlest_jupyterhub") == "2.0.0"
    assert out.count("done in an earlier run") == 7
