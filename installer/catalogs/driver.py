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
  prebuilt modules are chosen; `install --gpgpu` exits 0 even when it installed nothing, so
  the result is checked here.
  - `install --gpgpu nvidia:580` takes every branch, not only -server ones: the driver string
    becomes the glob ``nvidia*580`` over the GPU's driver packages (UbuntuDrivers/detect.py,
    gpgpu_install_filter), and `install_gpgpu` installs the branch's
    nvidia-headless-no-dkms-<branch> and linux-modules-nvidia-<branch>-<flavour> with
    `--no-install-recommends` (ubuntu-drivers, install_gpgpu): the compute path for any branch.
    Without `--gpgpu` it is the desktop path (`command_install`, nvidia-driver-<branch> with
    its recommends).
  - `list --gpgpu` prints the GPU's driver packages best first (sorted by
    _cmp_gfx_alternatives_gpgpu), each as "nvidia-driver-<branch>, (kernel modules provided by
    linux-modules-nvidia-<branch>-<flavour>)"; a branch whose modules would need DKMS is left
    out unless `--include-dkms` is given. The best is -server-open for a driver that prefers
    open modules (its Prefer-Variant header, or from 560 on, _is_open_prefered), -server
    otherwise (_get_fit_level_gpgpu). (`--recommended` prints only the first line, as
    "package modules", and prints branches without any modules package bare before it.)
- Ubuntu Server documentation (canonical/ubuntu-server-documentation at 89b7ab7, 2026-07-23,
  install-nvidia-drivers.md): the DKMS path installs "the linux-headers metapackage for your
  kernel flavour" and then checks linux-headers-$(uname -r); Fabric Manager and NSCQ are
  "only available with the ERDs or -server driver versions".
- packages.ubuntu.com (read 2026-12): nvidia-fabricmanager-615 depends on
  nvidia-kernel-common-615-server; linux-modules-nvidia-580-generic depends on the modules of
  one kernel ABI and on nvidia-kernel-common-580 (>= the driver it was built for), so a new
  kernel's NVIDIA modules come with a new driver; linux-meta builds the headers metapackages
  beside the image ones (linux-headers-generic, linux-headers-generic-hwe-24.04, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BRANCH = re.compile(r"^(?P<number>\d{3,})(?P<server>-server)?(?P<open>-open)?$")
# The packages that name an installed driver's branch: its userspace (headless, desktop) or
# its DKMS module source, which the Secure Boot instructions have a lecturer install alone.
DRIVER_PACKAGE = re.compile(
    r"^nvidia-(?:headless-no-dkms|headless|driver|dkms)-(?P<branch>\d{3,}(?:-server)?(?:-open)?)$"
)
# One line of `ubuntu-drivers list --gpgpu`: the package, and what provides its modules.
LISTED = re.compile(
    r"^(?P<package>nvidia-\S+?),?(?:\s+\(kernel modules provided by (?P<modules>\S+)\))?$"
)
# A running Ubuntu kernel: version, ABI, flavour (6.8.0-45-generic; the same split as
# ubuntu-drivers' UbuntuDrivers/kerneldetection.py, _get_linux_flavour).
KERNEL_RELEASE = re.compile(r"^\d+\.\d+\.\d+-\d+-(?P<flavour>[a-z0-9-]+)$")


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
    def headless_package(self) -> str:
        """The userspace of a headless server, without the kernel modules."""
        return f"nvidia-headless-no-dkms-{self}"

    @property
    def fabric_manager_packages(self) -> list[str]:
        """Named without -server, built for the -server drivers (see the sources above)."""
        return [f"nvidia-fabricmanager-{self.number}", f"libnvidia-nscq-{self.number}"]


def parse_branch(text: str) -> Branch | None:
    """``580``, ``580-server``, ``580-open``, ``580-server-open``; None for anything else."""
    m = BRANCH.match(text.strip())
    if m is None:
        return None
    return Branch(m["number"], server=bool(m["server"]), open=bool(m["open"]))


# The installed packages that name a driver's branch, as dpkg patterns (DRIVER_PACKAGE).
DRIVER_PACKAGE_PATTERNS = (
    "nvidia-headless-no-dkms-*", "nvidia-headless-*", "nvidia-driver-*", "nvidia-dkms-*",
)  # fmt: skip


def branch_of(package: str) -> Branch | None:
    """The branch a driver package names: nvidia-headless-no-dkms-580-server -> 580-server."""
    m = DRIVER_PACKAGE.match(package)
    return parse_branch(m["branch"]) if m else None


def best_listed(lines: list[str]) -> Branch | None:
    """The first branch `ubuntu-drivers list --gpgpu` prints with a package for its modules
    (best first; a bare line has no modules of any kind to install)."""
    for m in filter(None, (LISTED.match(line.strip()) for line in lines)):
        branch = branch_of(m["package"])
        if branch and m["modules"]:
            return branch
    return None


def install_command(branch: Branch, *, dkms: bool) -> list[str]:
    """The compute path for every branch: headless userspace and the modules' metapackage."""
    argv = ["ubuntu-drivers", "install", "--gpgpu"]
    if dkms:
        argv.append("--include-dkms")
    return [*argv, f"nvidia:{branch}"]


def kernel_flavour(kernel: str) -> str | None:
    """6.8.0-45-generic -> generic; None for a kernel Ubuntu did not build."""
    m = KERNEL_RELEASE.match(kernel)
    return m["flavour"] if m else None


def headers_packages(kernel: str, images: list[str]) -> list[str]:
    """Headers for DKMS: the running kernel's, and the metapackage of each installed kernel
    metapackage of its flavour among ``images`` (linux-image-generic-hwe-24.04 ->
    linux-headers-generic-hwe-24.04), so the next kernel update brings the headers DKMS
    builds the module against."""
    flavour = kernel_flavour(kernel)
    metas = []
    for package in images if flavour else []:
        rest = package.removeprefix("linux-image-")
        if rest == flavour or rest.startswith(f"{flavour}-hwe-"):
            metas.append(f"linux-headers-{rest}")
    return [*metas, f"linux-headers-{kernel}"]


def fabric_manager_needs_server(branch: str) -> str:
    """Ubuntu ships Fabric Manager and NSCQ for the -server drivers only (see the sources
    above)."""
    number = branch.split("-")[0]
    return (
        f"driver {branch} is not a -server (ERD) branch, and this system has NVSwitches: "
        "their Fabric Manager comes only with the -server drivers in Ubuntu's archive. Use "
        f"--driver {number}-server-open (or {number}-server)"
    )


# NVIDIA's Fabric Manager user guide (docs.nvidia.com/datacenter/tesla/fabric-manager-user-guide,
# Release 2.3, 2025-05-06: 1.3.2 "Systems Using Fourth Generation NVSwitches", 1.5 "What is
# NVLink Subnet Manager?", 1.6.4 "NVIDIA HGX B200/B100 GPU Baseboard") adds NVLink Subnet
# Manager beside Fabric Manager for the HGX B200/B100 generation. Their GPUs are compute
# capability 10.x (Blackwell 10.0 in PyTorch's CUDA support matrix, pytorch/pytorch#175253;
# the workstation Blackwells are 12.0). Only the guide's table of contents could be read here,
# and no nvlsm package shows in Ubuntu's package lists: which package, from where, only a
# real HGX B200 confirms.
NVLSM_PACKAGE = "nvlsm"
NVLSM_MISSING = (
    "this NVSwitch system has Blackwell data-center GPUs (compute capability 10.x, HGX "
    "B200-class): Fabric Manager needs NVIDIA's NVLink Subnet Manager (package nvlsm), which "
    "apt does not offer here. Install nvlsm of the same driver branch from NVIDIA's CUDA "
    "repository (NVIDIA's Fabric Manager user guide, 'What is NVLink Subnet Manager?'), then "
    "run the same command again"
)


def needs_nvlsm(caps: list[tuple[int, int]]) -> bool:
    return any(major == 10 for major, _ in caps)


def secure_boot_instructions(branch: Branch, kernel: str, headers: list[str], *, ppa: bool) -> str:
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
        f"{' '.join(headers)} {branch.dkms_package}`; it asks for a one-time password; "
        "`sudo reboot`; in the blue 'MOK management' screen choose 'Enroll MOK' and type "
        "that password;\n"
        "  3. turn Secure Boot off in the firmware settings."
    )
