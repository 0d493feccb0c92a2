"""The wheel is the install: built from the source, installed outside the checkout, it finds
every rule, dashboard and Alertmanager file (the documented `curl | sudo python3 -` path)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dlcourse_installer.checklist import runner
from dlcourse_testing.rendered import parse_owners

from .conftest import REPO as CHECKOUT

REPO = Path(CHECKOUT)

# What a build needs; the rest of the checkout (venvs, caches, outputs) stays behind.
SKIP = shutil.ignore_patterns(
    ".git", ".venv", ".demo", "build", "*.egg-info", "__pycache__", ".pytest_cache", "node_modules"
)


@pytest.fixture(scope="module")
def wheel_venv():
    """A venv outside the checkout, world-readable (an unprivileged account runs it too)."""
    top = Path(tempfile.mkdtemp(prefix="dlcourse-wheel-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        source = top / "source"
        shutil.copytree(REPO, source, ignore=SKIP)
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(top / "dist"),
             str(source)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert built.returncode == 0, built.stdout + built.stderr
        (wheel,) = (top / "dist").glob("dlcourse-*.whl")
        venv = top / "venv"
        subprocess.run([_system_python(), "-m", "venv", str(venv)], check=True, timeout=120)
        # The installer needs no other dependency than bcrypt (render and install make the
        # monitoring daemons' bcrypt hashes; a dry run needs only the standard library).
        installed = subprocess.run(
            [venv / "bin/python", "-m", "pip", "install", "-q", "--no-deps", str(wheel), "bcrypt"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        shutil.rmtree(source)  # nothing of the checkout is left to find
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
        yield venv
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _system_python() -> str:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


# What the wheel holds: the product, and the stand-in NVML (fakenvml, a development and
# demo tool the wheel still carries). The test helpers (testing/, dlcourse_testing) are a
# distribution of their own, testing/pyproject.toml, installed by `make setup` only.
WHEEL_PACKAGES = {
    "dlcourse_exporter", "dlcourse_installer", "dlcourse_status", "dlcourse_culler",
    "dlcourse_secretfile", "dlcourse_prometheus", "dlcourse_grafana", "dlcourse_labextension",
    "fakenvml",
}  # fmt: skip


def test_the_wheel_holds_the_product_and_no_test_helpers(wheel_venv):
    """Old behaviour: dlcourse_testing (live hubs, accounts, leftovers) went onto servers."""
    (record,) = wheel_venv.glob("lib/python3*/site-packages/dlcourse-*.dist-info/RECORD")
    top = {line.split("/", 1)[0] for line in record.read_text().splitlines() if "/" in line}
    packages = {name for name in top if name != ".." and not name.endswith(".dist-info")}
    assert packages == WHEEL_PACKAGES


def test_dry_run_from_the_wheel_finds_every_asset(wheel_venv):
    result = subprocess.run(
        [wheel_venv / "bin/dlcourse-install", "--dry-run", "--admin", "teacher"],
        capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    out = result.stdout
    # This machine may be refused (not Ubuntu, no GPU): the plan is printed all the same.
    assert result.returncode in (runner.EXIT_OK, runner.EXIT_REFUSED), out + result.stderr
    for rule in sorted(os.listdir(REPO / "prometheus" / "rules")):
        assert f"/etc/prometheus/dlcourse/{rule} " in out, rule
        assert f"(a copy of prometheus/rules/{rule} from the dlcourse package)" in out
    for dashboard in sorted(os.listdir(REPO / "grafana" / "dashboards")):
        assert f"/etc/grafana/dashboards/dlcourse/{dashboard} " in out, dashboard
    assert "(a copy of prometheus/alertmanager.yml from the dlcourse package)" in out
    assert "2 rule files from prometheus/rules/" in out
    assert "0.0.0+unknown" not in out and "dlcourse-install 0.1.0" in out


def test_render_from_the_wheel_needs_no_root(wheel_venv, make_linux_user, tmp_path):
    account = make_linux_user(home=False)
    root = Path(tempfile.mkdtemp(prefix="dlcourse-render-", dir="/tmp"))
    try:
        os.chown(root, account.pw_uid, account.pw_gid)
        result = subprocess.run(
            ["runuser", "-u", account.pw_name, "--", str(wheel_venv / "bin/dlcourse-install"),
             "render", "--root", str(root / "site"), "--admin", "teacher"],
            capture_output=True, text=True, timeout=120, cwd="/",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        owners = parse_owners((root / "site" / "OWNERS").read_text())
        assert "/etc/prometheus/dlcourse/dlcourse-alerts.yml" in owners
        assert "/etc/grafana/dashboards/dlcourse/class-overview.json" in owners
        secret = root / "site" / "etc/dlcourse/hub-token"
        assert secret.stat().st_uid == account.pw_uid and secret.stat().st_mode & 0o777 == 0o600
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_dry_run_needs_no_root(wheel_venv, make_linux_user):
    """Old behaviour: a non-root dry run ended "refused: not running as root" (exit 2)."""
    account = make_linux_user(home=False)
    result = subprocess.run(
        ["runuser", "-u", account.pw_name, "--", str(wheel_venv / "bin/dlcourse-install"),
         "--dry-run", "--admin", "teacher"],
        capture_output=True, text=True, timeout=300, cwd="/",
    )  # fmt: skip
    out = result.stdout
    assert result.returncode in (runner.EXIT_OK, runner.EXIT_REFUSED), out + result.stderr
    assert "not running as root" not in out
    assert "warning: a real install runs as root (sudo)" in out
    assert "[10/10] Final check" in out and "Once installed:" in out
