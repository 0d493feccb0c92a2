"""The NVIDIA driver, the way Ubuntu documents it for compute servers.

Sources, read 2026-08:
- Ubuntu Server documentation, "NVIDIA drivers installation"
  (canonical/ubuntu-server-documentation, how-to/graphics/install-nvidia-drivers.md):
  `ubuntu-drivers install --gpgpu [nvidia:BRANCH-server]` on servers, because it installs only
  signed modules; the prebuilt `linux-modules-nvidia-<branch>[-server]-<flavour>` (ABI-specific
  `...-$(uname -r)`) rather than DKMS when Secure Boot is on; `nvidia-utils-<branch>-server`
  beside the headless driver; `nvidia-fabricmanager-<branch>` and `libnvidia-nscq-<branch>`
  (no -server in their names, matching the -server drivers) on NVSwitch systems.
- ubuntu-drivers-common (canonical/ubuntu-drivers-common at d3d7856, 2026-08-11): `install`
  and `list` take `--gpgpu` after the verb (click, since 0.8.4); without `--include-dkms` only
  prebuilt modules are chosen; `list --gpgpu --recommended` prints
  "nvidia-headless-no-dkms-<branch>-server linux-modules-nvidia-<branch>-server-<flavour>";
  `install --gpgpu` exits 0 even when it installed nothing, so the result is checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlcourse_installer import apt
from dlcourse_installer.host import Host

BRANCH = re.compile(r"^(?P<number>\d{3,})(?P<server>-server)?(?P<open>-open)?$")
# The userspace packages of a driver, which also name its branch.
DRIVER_PACKAGE = re.compile(
    r"^nvidia-(?:headless-no-dkms|driver)-(?P<branch>\d{3,}(?:-server)?(?:-open)?)$"
)


@dataclass(frozen=True)
class Branch:
    number: str  # "580"
    server: bool = False  # the Enterprise Ready Driver build ("-server")
    open: bool = False  # NVIDIA's open kernel modules ("-open")

    def __str__(self) -> str:
        return self.number + ("-server" if self.server else "") + ("-open" if self.open else "")

    @property
    def utils_package(self) -> str:
        """nvidia-smi; one package serves the open and the closed modules."""
        return f"nvidia-utils-{self.number}" + ("-server" if self.server else "")

    def modules_package(self, kernel: str) -> str:
        """The prebuilt, signed modules for exactly this kernel (uname -r)."""
        return f"linux-modules-nvidia-{self}-{kernel}"

    @property
    def dkms_package(self) -> str:
        return f"nvidia-dkms-{self}"

    @property
    def fabric_manager_packages(self) -> list[str]:
        return [f"nvidia-fabricmanager-{self.number}", f"libnvidia-nscq-{self.number}"]


def parse_branch(text: str) -> Branch | None:
    """``580``, ``580-server``, ``580-open``, ``580-server-open``; None for anything else."""
    m = BRANCH.match(text.strip())
    if m is None:
        return None
    return Branch(m["number"], server=bool(m["server"]), open=bool(m["open"]))


def recommended(host: Host) -> Branch | None:
    """ubuntu-drivers' choice for a compute server (a -server branch)."""
    result = host.query(["ubuntu-drivers", "list", "--gpgpu", "--recommended"])
    first = result.stdout.split()[0] if result.ok and result.stdout.split() else ""
    m = DRIVER_PACKAGE.match(first)
    return parse_branch(m["branch"]) if m else None


def installed(host: Host) -> Branch | None:
    """The branch whose userspace driver is installed, if any."""
    found = apt.installed_matching(host, ["nvidia-headless-no-dkms-*", "nvidia-driver-*"])
    for package in found:
        m = DRIVER_PACKAGE.match(package)
        if m:
            return parse_branch(m["branch"])
    return None


def prebuilt_available(host: Host, branch: Branch, kernel: str) -> bool:
    """Ubuntu's archive has signed modules of this branch for the running kernel."""
    result = host.query(["apt-cache", "show", "--no-all-versions", branch.modules_package(kernel)])
    return result.ok


def install_command(branch: Branch, *, dkms: bool) -> list[str]:
    """ubuntu-drivers picks the packages (headless on --gpgpu) and the modules' metapackage."""
    argv = ["ubuntu-drivers", "install"]
    if branch.server:
        argv.append("--gpgpu")  # it only knows -server branches in this mode
    if dkms:
        argv.append("--include-dkms")
    return [*argv, f"nvidia:{branch}"]


def package_version(host: Host, package: str) -> str | None:
    """Upstream version of an installed package: 580.65.06-0ubuntu1 -> 580.65.06."""
    result = host.query(["dpkg-query", "-W", "-f=${Version}", package])
    if not result.ok or not result.stdout.strip():
        return None
    version = result.stdout.strip().split(":")[-1]  # no epoch
    return version.split("-")[0]


def secure_boot_instructions(branch: Branch, kernel: str, *, ppa: bool) -> str:
    why = (
        "the graphics-drivers PPA ships its drivers as DKMS sources only"
        if ppa
        else f"Ubuntu's archive has no signed prebuilt modules of driver {branch} for kernel "
        f"{kernel} ({branch.modules_package(kernel)})"
    )
    return (
        f"Secure Boot is on and {why}. A module DKMS builds would not load until its signing "
        "key is enrolled at the console, so nothing was installed for the driver. Choose one, "
        "then run the same command again:\n"
        "  1. a branch with signed modules: `ubuntu-drivers list --gpgpu` marks them "
        "'(kernel modules provided by linux-modules-nvidia-...)'; pass it as --driver BRANCH"
        + (" without --ppa" if ppa else "")
        + ";\n"
        f"  2. at the server's console (not over ssh): `sudo apt install "
        f"linux-headers-{kernel} {branch.dkms_package}`; it asks for a one-time password; "
        "`sudo reboot`; in the blue 'MOK management' screen choose 'Enroll MOK' and type "
        "that password;\n"
        "  3. turn Secure Boot off in the firmware settings."
    )
