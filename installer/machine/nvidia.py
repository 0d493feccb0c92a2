"""The NVIDIA hardware and driver as this machine reports them, one query each.

What the answers mean (branches, package names, ubuntu-drivers' output) is the catalog's,
catalogs/driver.py, with its upstream sources.
"""

from __future__ import annotations

from dlcourse_installer.catalogs import driver
from dlcourse_installer.catalogs.driver import Branch
from dlcourse_installer.machine import apt
from dlcourse_installer.machine.host import Host

NVIDIA_VENDOR = "0x10de"
# NVSwitch chips are NVIDIA PCI devices of class "bridge, other" (0x0680): NVIDIA's own
# nvswitch driver matches them so (NVIDIA/open-gpu-kernel-modules,
# kernel-open/nvidia/linux_nvswitch.c, nvswitch_pci_table).
NVSWITCH_CLASS = "0x0680"


def _nvidia_devices(host: Host, class_prefix: str) -> list[str]:
    found = []
    for vendor_file in host.glob("/sys/bus/pci/devices/*/vendor"):
        device = vendor_file.rsplit("/", 1)[0]
        vendor = (host.read_text(vendor_file) or "").strip().lower()
        pci_class = (host.read_text(f"{device}/class") or "").strip().lower()
        if vendor == NVIDIA_VENDOR and pci_class.startswith(class_prefix):
            found.append(device.rsplit("/", 1)[1])
    return found


def nvidia_gpus(host: Host) -> list[str]:
    """PCI display controllers (class 0x03xxxx) from NVIDIA; their audio functions don't count."""
    return _nvidia_devices(host, "0x03")


def nvswitches(host: Host) -> list[str]:
    return _nvidia_devices(host, NVSWITCH_CLASS)


def recommended(host: Host) -> Branch | None:
    """ubuntu-drivers' best branch for a compute server (-server-open from 560 on): the first
    that `list --gpgpu` lists with Ubuntu's prebuilt modules for this kernel; where no branch
    has them, the first that `list --gpgpu --include-dkms` lists (DKMS builds it)."""
    for extra in ([], ["--include-dkms"]):
        result = host.query(["ubuntu-drivers", "list", "--gpgpu", *extra])
        branch = driver.best_listed(result.stdout.splitlines() if result.ok else [])
        if branch:
            return branch
    return None


def installed(host: Host) -> Branch | None:
    """The branch whose driver is installed, if any: its userspace, or its DKMS modules alone
    (what the Secure Boot instructions have a lecturer install before enrolling the key)."""
    for package in apt.installed_matching(host, list(driver.DRIVER_PACKAGE_PATTERNS)):
        branch = driver.branch_of(package)
        if branch:
            return branch
    return None


def prebuilt_available(host: Host, branch: Branch, kernel: str) -> bool:
    """Ubuntu's archive has signed modules of this branch for the running kernel."""
    result = host.query(["apt-cache", "show", "--no-all-versions", branch.modules_package(kernel)])
    return result.ok


def headers_packages(host: Host, kernel: str) -> list[str]:
    """The headers DKMS needs for this kernel and the next ones (driver.headers_packages)."""
    flavour = driver.kernel_flavour(kernel)
    images = apt.installed_matching(host, [f"linux-image-{flavour}*"]) if flavour else []
    return driver.headers_packages(kernel, images)


def driver_version(host: Host) -> str | None:
    """The running driver's version, once its module is loaded (nvidia-smi answers)."""
    r = host.query(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return r.stdout.splitlines()[0].strip() if r.ok and r.stdout.strip() else None


def compute_capabilities(host: Host) -> list[tuple[int, int]] | None:
    """Each GPU's CUDA compute capability (8.6 -> (8, 6)); None if the driver cannot say."""
    r = host.query(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"])
    caps = []
    for line in r.stdout.splitlines() if r.ok else []:
        major, dot, minor = line.strip().partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            return None  # an older nvidia-smi: "compute_cap" is not a valid field
        caps.append((int(major), int(minor)))
    return caps or None


def persistence_mode_on(host: Host) -> bool:
    """Every GPU reports persistence mode Enabled."""
    r = host.query(["nvidia-smi", "--query-gpu=persistence_mode", "--format=csv,noheader"])
    modes = [line.strip() for line in r.stdout.splitlines() if line.strip()] if r.ok else []
    return bool(modes) and all(mode == "Enabled" for mode in modes)
