"""The NVIDIA driver on the fake Ubuntu 24.04 server: Ubuntu's compute path, Secure Boot,
explicit branches, the PPA, NVSwitch, kernel headers, upgrades, persistence mode and the
checks after the reboot."""

import pytest

from dlcourse_installer.catalogs import driver
from dlcourse_installer.checklist import runner
from dlcourse_installer.machine import nvidia

from .conftest import install
from .fakehost import KERNEL, FakeHost

ARGV = ["--admin", "teacher", "--yes"]


def _driver_runs(host: FakeHost) -> list[str]:
    return [a for a in host.runs if "nvidia" in a or "linux-headers" in a or "dkms" in a]


def _install_and_reboot(host: FakeHost, argv=ARGV) -> tuple[int, str]:
    rc, out = install(host, argv)
    assert rc == runner.EXIT_REBOOT, out
    host.reboot_now()
    return install(host, argv)


def test_default_is_ubuntus_compute_path_with_signed_prebuilt_modules(tmp_path):
    """The branch `ubuntu-drivers list --gpgpu` puts first: -server-open from 560 on."""
    host = FakeHost(tmp_path)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_REBOOT
    assert "driver 580-server-open, ubuntu-drivers' choice for servers" in out
    host.reboot_now()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    assert _driver_runs(host)[:2] == [
        "run ubuntu-drivers install --gpgpu nvidia:580-server-open",
        "run apt-get install -y nvidia-utils-580-server",
    ]
    # Nothing is built on the server: no DKMS, no headers (the old path installed both).
    assert not any(p.startswith(("nvidia-dkms", "linux-headers", "dkms")) for p in host.packages)
    assert f"linux-modules-nvidia-580-server-open-{KERNEL}" in host.packages
    assert "driver 580-server-open, installed" in out
    assert "driver 580.65.06 loaded; nvidia-smi and NVML see all 1 GPU(s)" in out


def test_a_desktop_branch_is_installed_the_compute_way_too(tmp_path):
    """Before: `ubuntu-drivers install nvidia:580`, the desktop path with its X.org stack."""
    host = FakeHost(tmp_path)
    rc, out = _install_and_reboot(host, [*ARGV, "--driver", "580"])
    assert rc == runner.EXIT_OK, out
    assert "run ubuntu-drivers install --gpgpu nvidia:580" in host.runs
    assert "nvidia-headless-no-dkms-580" in host.packages
    assert not any(p.startswith(("xserver-", "nvidia-driver-")) for p in host.packages)


def test_secure_boot_with_signed_modules_needs_nothing_more(tmp_path):
    host = FakeHost(tmp_path, secure_boot=True)
    rc, out = _install_and_reboot(host)
    assert rc == runner.EXIT_OK, out
    assert host.driver_loaded


def test_secure_boot_without_signed_modules_stops_before_installing_anything(tmp_path):
    """Old behaviour: apt installed a DKMS module the kernel then refused to load."""
    host = FakeHost(tmp_path, secure_boot=True, prebuilt=False)
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_FAILED
    assert not any(p.startswith(("nvidia-", "linux-modules-nvidia")) for p in host.packages)
    assert host.reboots == 0 and "systemctl reboot" not in " ".join(host.runs)
    assert f"no signed prebuilt modules of driver 580-server-open for kernel {KERNEL}" in out
    assert (
        f"sudo apt install linux-headers-generic linux-headers-{KERNEL} "
        "nvidia-dkms-580-server-open" in out
    )
    assert "Enroll MOK" in out and "ubuntu-drivers list --gpgpu" in out


def test_after_the_mok_enrolment_the_rerun_completes_the_dkms_driver(tmp_path):
    """Before: nvidia-dkms-* alone was not an installed driver, and the same stop repeated."""
    host = FakeHost(tmp_path, secure_boot=True, prebuilt=False)
    assert install(host, ARGV)[0] == runner.EXIT_FAILED
    # The lecturer follows instruction 2 at the console: apt, reboot, "Enroll MOK".
    host.packages |= {"linux-headers-generic", f"linux-headers-{KERNEL}",
                      "nvidia-dkms-580-server-open"}  # fmt: skip
    host.mok_enrolled = True
    host.reboot_now()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_OK, out
    assert "driver 580-server-open, installed" in out
    assert {"nvidia-headless-no-dkms-580-server-open", "nvidia-utils-580-server"} <= host.packages
    assert not any("ubuntu-drivers install" in a for a in host.runs)
    assert "driver 580.65.06 loaded" in out


def test_without_secure_boot_dkms_builds_what_ubuntu_has_not_prebuilt(tmp_path):
    """Before: `list --gpgpu --recommended` names no branch without prebuilt modules, so the
    default stopped; and only the running kernel's headers came, none for the next kernel."""
    host = FakeHost(tmp_path, prebuilt=False)
    host.packages.add("linux-image-generic-hwe-24.04")
    rc, out = _install_and_reboot(host)
    assert rc == runner.EXIT_OK, out
    assert "run ubuntu-drivers install --gpgpu --include-dkms nvidia:580-server-open" in host.runs
    # The flavour's headers metapackages follow every kernel update; the running one's too.
    assert {f"linux-headers-{KERNEL}", "linux-headers-generic",
            "linux-headers-generic-hwe-24.04"} <= host.packages  # fmt: skip


def test_the_headers_follow_the_running_kernels_flavour(fake):
    fake.packages |= {"linux-image-generic-64k", "linux-image-lowlatency",
                      "linux-image-generic-hwe-24.04-edge"}  # fmt: skip
    assert nvidia.headers_packages(fake, KERNEL) == [
        "linux-headers-generic", "linux-headers-generic-hwe-24.04-edge", f"linux-headers-{KERNEL}",
    ]  # fmt: skip
    assert nvidia.headers_packages(fake, "6.8.12-custom") == ["linux-headers-6.8.12-custom"]


@pytest.mark.parametrize(
    ("choice", "command", "utils"),
    [
        ("580-server-open", "ubuntu-drivers install --gpgpu nvidia:580-server-open",
         "nvidia-utils-580-server"),
        ("575", "ubuntu-drivers install --gpgpu nvidia:575", "nvidia-utils-575"),
        ("535-server", "ubuntu-drivers install --gpgpu nvidia:535-server",
         "nvidia-utils-535-server"),
    ],
)  # fmt: skip
def test_an_explicit_branch_is_installed_as_given(tmp_path, choice, command, utils):
    host = FakeHost(tmp_path)
    rc, out = _install_and_reboot(host, [*ARGV, "--driver", choice])
    assert rc == runner.EXIT_OK, out
    assert f"run {command}" in host.runs and utils in host.packages
    assert not any("ubuntu-drivers list" in " ".join(c) for c in host.commands)


def test_the_ppa_builds_with_dkms_and_is_refused_under_secure_boot(tmp_path):
    host = FakeHost(tmp_path / "a")
    rc, out = _install_and_reboot(host, [*ARGV, "--ppa", "--driver", "580"])
    assert rc == runner.EXIT_OK, out
    assert "run add-apt-repository -y ppa:graphics-drivers/ppa" in host.runs
    assert (
        f"run apt-get install -y linux-headers-generic linux-headers-{KERNEL} nvidia-driver-580"
        in host.runs
    )

    secure = FakeHost(tmp_path / "b", secure_boot=True)
    rc, out = install(secure, [*ARGV, "--ppa", "--driver", "580"])
    assert rc == runner.EXIT_REFUSED and secure.actions == []
    assert "graphics-drivers PPA ships its drivers as DKMS sources only" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--driver", "latest"], "--driver 'latest': give a branch"),
        (["--ppa"], "--ppa needs --driver BRANCH without -server"),
        (["--ppa", "--driver", "580-server"], "--ppa needs --driver BRANCH without -server"),
    ],
)
def test_bad_driver_options_are_refused(tmp_path, capsys, args, message):
    host = FakeHost(tmp_path)
    assert install(host, [*ARGV, *args])[0] == runner.EXIT_BAD_OPTIONS
    assert message in capsys.readouterr().err
    assert host.commands == []


def test_nvswitch_systems_get_the_matching_fabric_manager(tmp_path):
    host = FakeHost(tmp_path, gpus=8, nvswitch=True)
    rc, out = _install_and_reboot(host)
    assert rc == runner.EXIT_OK, out
    assert {"nvidia-fabricmanager-580", "libnvidia-nscq-580"} <= host.packages
    assert "nvidia-fabricmanager" in host.enabled and "nvidia-fabricmanager" in host.active
    assert "all 8 GPU(s)" in out and "nvlsm" not in host.packages


def test_a_desktop_branch_on_an_nvswitch_system_is_refused_before_anything_changes(tmp_path):
    """Before: Fabric Manager, built for the -server drivers, beside a desktop driver."""
    host = FakeHost(tmp_path, gpus=8, nvswitch=True)
    rc, out = install(host, [*ARGV, "--driver", "580"])
    assert rc == runner.EXIT_REFUSED and host.actions == []
    assert "driver 580 is not a -server (ERD) branch, and this system has NVSwitches" in out
    assert "Use --driver 580-server-open (or 580-server)" in out


@pytest.mark.parametrize("in_archive", [True, False])
def test_blackwell_hgx_gets_nvlink_subnet_manager_or_a_plain_stop(tmp_path, in_archive):
    host = FakeHost(tmp_path, gpus=8, nvswitch=True, compute_cap=(10, 0))
    if in_archive:
        host.archive_packages.add("nvlsm")
    rc, out = _install_and_reboot(host)
    if in_archive:
        assert rc == runner.EXIT_OK, out
        assert "nvlsm" in host.packages and "nvidia-fabricmanager" in host.active
    else:
        assert rc == runner.EXIT_FAILED
        assert "Fabric Manager needs NVIDIA's NVLink Subnet Manager (package nvlsm)" in out
        assert "nvidia-fabricmanager" not in host.active


def test_driver_and_kernel_upgrade_by_hand_and_persistence_mode_is_on(tmp_path):
    """Before: unattended-upgrades replaced the driver's libraries under the loaded module
    ("Driver/library version mismatch"), and Ubuntu's nvidia-persistenced ran without
    persistence mode."""
    host = FakeHost(tmp_path)
    rc, out = _install_and_reboot(host)
    assert rc == runner.EXIT_OK, out
    text = host.read_text("/etc/apt/apt.conf.d/51dlcourse-driver-upgrades")
    assert text.startswith("// Generated by dlcourse-install")
    for prefix in ("nvidia-", "libnvidia-", "linux-image-", "linux-modules-", "linux-headers-"):
        assert f'    "{prefix}";\n' in text
    assert "Unattended-Upgrade::Package-Blacklist {" in text and text.endswith("};\n")
    assert host.persistence_mode and "nvidia-persistenced" in host.active
    assert "persistence mode on (nvidia-persistenced)" in out
    host.reboot_now()  # and after the next boot too
    assert host.persistence_mode


def test_after_the_reboot_a_missing_gpu_is_named(tmp_path):
    host = FakeHost(tmp_path, gpus=2)
    host.gpus_answering = 1
    rc, out = _install_and_reboot(host)
    assert rc == runner.EXIT_FAILED
    assert "nvidia-smi lists 1 of the 2 NVIDIA GPUs; missing: 0000:02:00.0" in out


def test_after_the_reboot_the_running_driver_must_be_the_installed_one(tmp_path):
    host = FakeHost(tmp_path)
    assert _install_and_reboot(host)[0] == runner.EXIT_OK
    host.archive["580"] = "580.82.07"  # the packages were upgraded; the old module still runs
    rc, out = install(host, [*ARGV, "--recheck"])
    assert rc == runner.EXIT_FAILED
    assert "the running driver is 580.65.06 but 580.82.07 is installed" in out


def test_a_module_that_does_not_load_after_the_reboot_is_reported(tmp_path):
    host = FakeHost(tmp_path)
    assert install(host, ARGV)[0] == runner.EXIT_REBOOT
    host.packages -= {p for p in host.packages if p.startswith("linux-modules-nvidia")}
    host.reboot_now()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_FAILED
    assert "the nvidia module did not load after the reboot (no /sys/module/nvidia)" in out


def test_a_different_installed_driver_is_not_switched_silently(tmp_path):
    host = FakeHost(tmp_path)
    host.packages |= {"nvidia-driver-535", "linux-modules-nvidia-535-generic"}
    rc, out = install(host, [*ARGV, "--driver", "580-server"])
    assert rc == runner.EXIT_FAILED
    assert "driver 535 is installed, not 580-server: to switch, run `dlcourse-install " in out
    assert not any("ubuntu-drivers install" in a for a in host.runs)


def test_branch_names():
    assert str(driver.parse_branch("580-server-open")) == "580-server-open"
    assert driver.parse_branch("580").utils_package == "nvidia-utils-580"
    assert driver.parse_branch("580-open").modules_package("6.8.0-1-generic") == (
        "linux-modules-nvidia-580-open-6.8.0-1-generic"
    )
    assert driver.parse_branch("580-open-server") is None
    assert driver.parse_branch("nvidia-580") is None
