"""Preflight's refusals and warnings, and --dry-run: here (Debian, no GPU) and on a fake 24.04."""

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile

import pytest

from dlcourse_installer import cli
from dlcourse_installer.checklist import preflight, runner
from dlcourse_installer.inputs.options import Options, validate
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import UNITS, Ports

from .conftest import REPO
from .fakehost import UBUNTU_22_04, UBUNTU_24_04, FakeDryHost, FakeHost

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def test_supported_gpu_server_passes(tmp_path):
    f = preflight.check(FakeHost(tmp_path), Options(admins=("t",)))
    assert f.errors == [] and f.warnings == []
    assert f.gpus == ["0000:01:00.0"]  # the GPU, not its HDMI audio function


def test_refusal_lists_every_reason(tmp_path):
    host = FakeHost(tmp_path, gpu=False, os_release=DEBIAN)
    os.rmdir(host.local("/run/systemd/system"))
    errors = preflight.check(host, Options(admins=("t",))).errors
    assert len(errors) == 3
    assert "Debian GNU/Linux 12 (bookworm)" in errors[0] and "Ubuntu 22.04, 24.04" in errors[0]
    assert "systemd" in errors[1]
    assert "no NVIDIA GPU" in errors[2] and "--no-gpu" in errors[2]


def test_refused_install_changes_nothing(tmp_path):
    host = FakeHost(tmp_path, os_release=DEBIAN)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.install(["--admin", "t", "--yes"], host=host, paths=Paths())
    assert rc == runner.EXIT_REFUSED
    assert "refuses to install" in out.getvalue() and "Nothing was changed" in out.getvalue()
    assert host.actions == []


@pytest.mark.parametrize("release", ["22.04", "24.04", "26.04"])
def test_every_current_ubuntu_lts_is_accepted(tmp_path, release):
    host = FakeHost(tmp_path, os_release=f'ID=ubuntu\nVERSION_ID="{release}"\n')
    assert preflight.check(host, Options(admins=("t",))).errors == []


def test_every_download_host_is_checked_and_each_refusal_names_its_host(tmp_path):
    """Before: PyPI's files host, conda-forge and GitHub's release downloads (Miniforge, for
    TLJH) were not checked, and the install failed halfway instead."""
    host = FakeHost(tmp_path)
    host.unreachable = {"files.pythonhosted.org", "conda.anaconda.org", "github.com"}
    errors = preflight.check(host, Options(admins=("t",))).errors
    assert [e.split(" (")[0] for e in errors] == [
        "cannot reach github.com", "cannot reach files.pythonhosted.org",
        "cannot reach conda.anaconda.org",
    ]  # fmt: skip
    assert errors[0].startswith(
        "cannot reach github.com (TLJH's source and Miniforge's release download, https://"
        "github.com/conda-forge/miniforge/releases/download/24.7.1-2/Miniforge3-24.7.1-2-Linux-"
        "x86_64.sh): curl: (6) Could not resolve host: github.com"
    )
    checked = [c[-1] for c in host.commands if c[0] == "curl"]
    assert (
        "https://raw.githubusercontent.com/jupyterhub/the-littlest-jupyterhub/2.0.0/"
        "bootstrap/bootstrap.py" in checked
    )
    others = {"https://pypi.org/simple/", "https://download.pytorch.org/whl/",
              "https://apt.grafana.com/", "http://archive.ubuntu.com/ubuntu/"}  # fmt: skip
    assert others <= set(checked)


def test_ubuntu_20_04_is_refused_with_the_reason(tmp_path):
    """Its Python 3.8 cannot run dlcourse, and TLJH 2.0.0 refuses it too."""
    host = FakeHost(
        tmp_path, os_release='PRETTY_NAME="Ubuntu 20.04.6 LTS"\nID=ubuntu\nVERSION_ID="20.04"\n'
    )
    (error,) = preflight.check(host, Options(admins=("t",))).errors
    assert "Ubuntu 20.04.6 LTS" in error and "22.04, 24.04, 26.04" in error
    assert "Python 3.10" in error


def test_secure_boot_says_signed_modules_will_be_used(tmp_path):
    f = preflight.check(FakeHost(tmp_path, secure_boot=True), Options(admins=("t",)))
    assert f.secure_boot is True and f.errors == []
    assert "signed prebuilt NVIDIA modules" in f.warnings[0]


def test_secure_boot_from_efivars_without_mokutil(tmp_path):
    class NoMokutil(FakeHost):
        def query(self, argv, *, env=None, timeout=300):
            if argv[0] == "mokutil":
                return _missing(argv)
            return super().query(argv, env=env)

    host = NoMokutil(tmp_path)
    host.put("/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
             "\x06\x00\x00\x00\x01")  # fmt: skip
    assert preflight.secure_boot_state(host) is True


def _missing(argv):
    from dlcourse_installer.machine.host import Result

    return Result(tuple(argv), 127, "", "mokutil: command not found")


def test_little_disk_is_refused(tmp_path):
    class SmallDisk(FakeHost):
        def query(self, argv, *, env=None, timeout=300):
            if argv[0] == "df":
                from dlcourse_installer.machine.host import Result

                return Result(
                    tuple(argv), 0, "Filesystem 1K Used Avail Cap Mnt\n/dev/sda 1 1 1000 1% /\n"
                )
            return super().query(argv, env=env)

    errors = preflight.check(SmallDisk(tmp_path), Options(admins=("t",))).errors
    assert errors and "GiB free" in errors[0]


# --- the monitoring ports (issue 21): no student may take one --------------------------

SYSCTL = "/proc/sys/net/ipv4/ip_unprivileged_port_start"


def test_every_port_of_the_stack_is_one_no_account_may_bind():
    """Below the kernel's default ip_unprivileged_port_start (1024): only root and holders
    of CAP_NET_BIND_SERVICE bind them, whatever the address."""
    assert max(Ports().numbers().values()) < 1024
    assert len(set(Ports().numbers().values())) == len(Ports.names())


def test_a_lowered_unprivileged_port_start_is_refused_with_the_fix(tmp_path):
    host = FakeHost(tmp_path)
    host.put(SYSCTL, "80\n")  # rootless containers' advice: let everyone bind port 80 up
    (error,) = preflight.check(host, Options(admins=("t",))).errors
    assert "net.ipv4.ip_unprivileged_port_start is 80" in error
    assert "sysctl --system" in error and "ip_unprivileged_port_start=1024" in error
    host.put(SYSCTL, "1024\n")
    assert preflight.check(host, Options(admins=("t",))).errors == []


def test_a_port_held_by_another_service_is_refused(tmp_path):
    host = FakeHost(tmp_path)
    host.listen(Ports().prometheus, "named", "named.service")
    (error,) = preflight.check(host, Options(admins=("t",))).errors
    assert f"port {Ports().prometheus} (prometheus)" in error and "named.service" in error


def test_ports_held_by_the_stack_itself_pass(tmp_path):
    """A second run: every daemon is up on its port, in its own unit."""
    host = FakeHost(tmp_path)
    for name, port in Ports().numbers().items():
        host.listen(port, name[:15], UNITS[name])
    assert preflight.check(host, Options(admins=("t",))).errors == []


def test_grafana_on_a_port_anyone_may_bind_is_refused(tmp_path):
    (error,) = preflight.check(FakeHost(tmp_path), Options(admins=("t",), grafana_port=3000)).errors
    assert "--grafana-port 3000" in error and "below 1024" in error
    assert (
        preflight.check(FakeHost(tmp_path), Options(admins=("t",), grafana_port=843)).errors == []
    )


@pytest.mark.parametrize("name", ["student", "exporter"])
def test_grafana_on_a_port_of_the_stack_is_refused(tmp_path, name):
    """Grafana with --grafana-port listens on every address: on the port of another of the
    stack's services (the students' page's 952, say) one of the two could not start."""
    port = Ports().numbers()[name]
    errors = preflight.check(FakeHost(tmp_path), Options(admins=("t",), grafana_port=port)).errors
    assert errors == [
        f"--grafana-port {port}: dlcourse's {name} listens there (installer/layout/ports.py); "
        "choose another port below 1024"
    ]


def test_no_gpu_excludes_driver_choices():
    assert validate(Options(admins=("t",), no_gpu=True, driver="550")) == [
        "--no-gpu cannot be combined with --driver or --ppa"
    ]


def _normalize(text: str) -> str:
    text = text.replace(REPO, "<checkout>")
    return re.sub(r" \(\d+(\.\d+)?s\)| \(\d+m\d+s\)", "", text)


def test_cpu_limit_is_a_whole_number_as_tljh_requires():
    """tljh-config refuses limits.cpu 1.5 (tests/tljh_conformance checks it against TLJH)."""
    assert validate(Options(admins=("t",), cpu_limit="2")) == []
    for fraction in ("1.5", "0.5", "0"):
        assert validate(Options(admins=("t",), cpu_limit=fraction)) == [
            f"--cpu-limit {fraction!r}: use a positive whole number of CPUs, e.g. 2 (TLJH "
            "takes no fractions)"
        ]


GOLDENS = {
    # The command the README gives, on 24.04.
    "dry-run-ubuntu-24.04.txt": (UBUNTU_24_04, ["--driver", "580"]),
    # ubuntu-drivers' own choice, and 22.04's node_exporter 1.3.1.
    "dry-run-ubuntu-22.04.txt": (UBUNTU_22_04, []),
}


@pytest.mark.parametrize("golden", sorted(GOLDENS))
def test_dry_run_on_a_fresh_ubuntu_server_prints_the_plan(tmp_path, golden):
    """The golden plans a lecturer reads before installing (UPDATE_GOLDEN=1 rewrites them)."""
    os_release, driver_args = GOLDENS[golden]
    host = FakeDryHost(tmp_path, os_release=os_release)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.install(["--dry-run", "--admin", "teacher", *driver_args],
                         host=host, paths=Paths())  # fmt: skip
    assert rc == runner.EXIT_OK
    plan = _normalize(out.getvalue())
    assert not host.exists("/opt/dlcourse/state/install-state.json")  # nothing written
    assert host.packages == FakeHost(tmp_path / "x").packages  # nothing installed
    # Concrete: the driver and the PyTorch build, the checks after the reboot, where
    # everything will be and where each credential is.
    branch = driver_args[1] if driver_args else "580-server-open"
    for text in (
        f"ubuntu-drivers install --gpgpu nvidia:{branch}",
        "whl/cu132",
        "after the reboot: the nvidia module is loaded, nvidia-smi lists all 1 GPU(s)",
        "http://gpu-server.example.edu/services/grafana/",
        "admin teacher: password in /etc/dlcourse/hub-passwords/teacher",
    ):
        assert text in plan
    path = os.path.join(os.path.dirname(__file__), "golden", golden)
    if os.environ.get("UPDATE_GOLDEN"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(plan)
    with open(path) as f:
        assert plan == f.read()


def _dlcourse_temp_files() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("dlcourse-install")}


@pytest.mark.live
def test_dry_run_here_lists_the_reasons_first_then_the_whole_plan():
    """This machine is Debian without a GPU: the real CLI, as a lecturer would run it."""
    before = _dlcourse_temp_files()
    result = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer", "--dry-run", "--admin", "teacher"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == runner.EXIT_REFUSED, out + result.stderr
    lines = out.splitlines()
    assert lines[1] == "This machine would be refused, for these reasons:"
    assert "Ubuntu 22.04, 24.04, 26.04" in lines[2] and out.index("no NVIDIA GPU") < out.index(
        "[1/10]"
    )
    for n in range(1, 11):
        assert f"[{n}/10]" in out
    # Step 1 says it would refuse, and nothing else (not "ok: nothing to change").
    step1 = out[out.index("[1/10]") : out.index("[2/10]")]
    assert "would refuse this machine (the reasons are at the top)" in step1
    assert "ok:" not in step1
    assert "$ /opt/tljh/hub/bin/tljh-config add-item users.admin teacher" in out
    assert "Once installed:" in out and "This machine would be refused (see the top)" in out
    # It leaves nothing behind: no state, no log, here or in /tmp.
    assert not os.path.exists("/opt/dlcourse/state/install-state.json")
    assert _dlcourse_temp_files() == before


@pytest.mark.live
def test_bootstrap_dry_run_is_stdlib_only():
    """installer/bootstrap.py under the system Python, with no venv and no dlcourse installed."""
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3")
    result = subprocess.run(
        ["/usr/bin/python3", "-I", os.path.join(REPO, "installer", "bootstrap.py"),
         "--dry-run", "--admin", "teacher", "--no-gpu"],
        capture_output=True, text=True, timeout=300, cwd="/",
    )  # fmt: skip
    assert "[10/10] Final check" in result.stdout, result.stderr
    assert result.returncode in (runner.EXIT_OK, runner.EXIT_REFUSED)
    assert "dlcourse-install 0.1.0" in result.stdout  # its version, from the checkout


@pytest.mark.live
def test_bootstrap_help_changes_nothing(tmp_path):
    """Old behaviour: as root it made the venv under the prefix before showing the help."""
    prefix = tmp_path / "prefix"
    result = subprocess.run(
        ["/usr/bin/python3", "-I", os.path.join(REPO, "installer", "bootstrap.py"), "--help"],
        capture_output=True, text=True, timeout=120, cwd="/",
        env={**os.environ, "DLCOURSE_PREFIX": str(prefix)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: dlcourse-install" in result.stdout and "--driver" in result.stdout
    assert not prefix.exists()
