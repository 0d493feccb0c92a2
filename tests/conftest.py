"""Fixtures every test area shares: real Linux accounts and a Python they can run; and
the rule that a test not marked ``live`` starts no process."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dlcourse_testing import students
from dlcourse_testing.leftovers import create_account, reap_accounts, remove_account

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
NOT_ROOT_REASON = "needs root to create Linux accounts with useradd (CI runs as root)"


# Fixtures that start real components: a test that uses one is live.
LIVE_FIXTURES = frozenset(
    {
        "run_exporter",  # tests/exporter/conftest.py
        "sleeper",
        "live_hub",
        "make_live_hub",
        "alerting_stack",
        "make_linux_user",
        "fake_nvml_dir",  # compiles the stand-in NVML
        "lib_dir",
        "run_pynvml",  # tests/stand_in_nvml/conftest.py
        "helm",  # tests/helm/conftest.py
        "default_objects",
        "sharing_objects",
        "promtool",  # tests/prometheus/conftest.py, tests/helm/conftest.py
        "amtool",
        "node_exporter_bin",
        "site",  # tests/installer/test_generated_files.py: dlcourse-install render
        "wheel_venv",  # tests/installer/test_wheel.py: pip builds and installs the wheel
        "tljh_python",  # pip builds TLJH's hub environment
        "make_tljh_hub",
        "report_history",  # tests/installer/test_report.py: Prometheus with a backfill
        "student_course",  # tests/students/conftest.py: a hub, its services, an exporter
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A test that starts a process (the exporter, a hub, promtool, useradd...) must be
    marked ``live``, so that `make test-unit` (``-m "not live"``) stays a matter of seconds."""
    if request.node.get_closest_marker("live") is not None:
        return

    def refuse(self, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"a test not marked live starts a process: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def user_env() -> Path:
    """A venv with jupyterhub, jupyter_server and ipykernel that every account can run.

    `make test` builds it (Makefile target `userenv`, path in DLCOURSE_USERENV); students'
    servers and kernels must not use the test runner's Python, which may live under /root.
    """
    path = students.user_env()
    if not (path / "bin" / "python").exists():
        if not IS_ROOT:
            return Path(sys.prefix)  # everything runs as the current user anyway
        pytest.fail(f"no user environment at {path}: run `make userenv` (or `make test`)")
    return path


@pytest.fixture
def make_linux_user() -> Iterator[Callable[..., pwd.struct_passwd]]:
    """Creates real accounts (useradd) named dlct-<random>; removes them afterwards."""
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON)
    created: list[str] = []

    def make(name: str | None = None, home: bool = True) -> pwd.struct_passwd:
        name = name or f"dlct-{uuid.uuid4().hex[:8]}"
        entry = create_account(name, home=home)
        created.append(name)
        return entry

    yield make
    for name in created:
        remove_account(name)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Removes the accounts that killed test runs and demos left (dlcourse_testing.leftovers)."""
    if IS_ROOT:
        reaped = reap_accounts()
        if reaped:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"removed accounts left by dead runs: {', '.join(reaped)}")


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in libnvidia-ml.so.1, compiled once per test session."""
    from fakenvml import build_library

    return build_library(tmp_path_factory.mktemp("fakenvml"))


@pytest.fixture
def scenario_path(tmp_path: Path) -> Path:
    """Where a test writes its fake GPUs; world-readable, as exporters may run as others."""
    tmp_path.chmod(0o755)
    return tmp_path / "gpus.scn"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files (e.g. tests/exporter/golden/*.prom) from this run",
    )


@pytest.fixture
def alerting_stack(tmp_path: Path):
    """A factory: alerting_stack(targets={job: [host:port]}, overrides=...) -> AlertingStack.

    Real Prometheus and Alertmanager on free 127.0.0.1 ports, stopped after the test.
    """
    from dlcourse_testing.alerting import AlertingStack, find_tool

    for names in (("prometheus",), ("prometheus-alertmanager", "alertmanager")):
        if find_tool(*names) is None:
            pytest.skip(f"{names[0]} is not installed (scripts/setup-system.sh installs it)")
    stacks: list[AlertingStack] = []

    def start(targets: dict[str, list[str]], **kwargs) -> AlertingStack:
        workdir = tmp_path / f"stack{len(stacks)}"
        workdir.mkdir()
        stack = AlertingStack(workdir, targets, **kwargs).__enter__()
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        stack.close()


# --- A live JupyterHub (dlcourse_testing.hub) ----------------------------------------------
from dlcourse_testing.hub import LiveHub  # noqa: E402 - appended section, kept apart on purpose


@pytest.fixture(scope="session")
def live_hub(user_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """One real JupyterHub for the whole session (see dlcourse_testing.hub for its API).

    Tests share it: each adds its own users (`add_user()` picks unique names) and looks
    only at those. Stopping or restarting a hub belongs in `make_live_hub`.
    """
    hub = LiveHub(tmp_path_factory.mktemp("live-hub"), user_env)
    try:
        hub.start()
        yield hub
    finally:
        hub.close()


@pytest.fixture
def make_live_hub(
    user_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LiveHub]]:
    """Private hubs for one test (started; stop()/start() at will), closed afterwards."""
    hubs: list[LiveHub] = []

    def make(**kwargs: object) -> LiveHub:
        hub = LiveHub(tmp_path_factory.mktemp("private-hub"), user_env, **kwargs)  # type: ignore[arg-type]
        hubs.append(hub)
        hub.start()
        return hub

    yield make
    for hub in hubs:
        hub.close()


# --- TLJH itself, and a hub as TLJH runs it (dlcourse_testing.tljh_env, .tljh_hub) -------
from dlcourse_testing import tljh_env  # noqa: E402
from dlcourse_testing.tljh_hub import TljhHub  # noqa: E402


@pytest.fixture(scope="session")
def tljh_python() -> Path:
    """The Python of TLJH 2.0.0's hub environment, with dlcourse as its plugin (built on
    first use, cached in build/tljh). Skips where TLJH's source is absent."""
    reason = tljh_env.absent_reason()
    if reason:
        pytest.skip(reason)
    return tljh_env.ensure()


@pytest.fixture(scope="module")
def make_tljh_hub(
    tljh_python: Path, user_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., TljhHub]]:
    """make_tljh_hub(*install_args, start=True, hub_port=None) -> TljhHub: TLJH's own hub
    configuration over the files `dlcourse-install render <install_args>` writes. Each lives
    until the end of the test module (or its close()), then goes with the accounts TLJH made."""
    if not IS_ROOT:
        pytest.skip("TLJH's tljh-config and its spawner's useradd need root (CI runs as root)")
    hubs: list[TljhHub] = []

    def make(*install_args: str, start: bool = True, hub_port: int | None = None) -> TljhHub:
        hub = TljhHub(tmp_path_factory.mktemp("tljh-hub"), user_env, *install_args,
                      hub_port=hub_port)  # fmt: skip
        hubs.append(hub)
        if start:
            hub.start(timeout=120)
        return hub

    yield make
    for hub in hubs:
        hub.close()
