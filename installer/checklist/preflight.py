"""Step 1: is this a machine the installer can turn into the course server?

Every check looks and nothing changes. Problems that make the install fail (not Ubuntu,
not root, no GPU) are errors and the installer refuses with all of them listed; what a
person should know first (Secure Boot) is a warning.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from dlcourse_installer.catalogs import driver
from dlcourse_installer.checklist.step import Context, Findings, Step, StepError, bullets
from dlcourse_installer.inputs.options import Options
from dlcourse_installer.layout.ports import UNITS, Ports
from dlcourse_installer.machine import nvidia
from dlcourse_installer.machine.host import Host

# The LTS releases TLJH 2.0.0 accepts (>= 22.04, bootstrap/bootstrap.py) whose Python runs
# dlcourse (>= 3.10): 22.04 (3.10), 24.04 (3.12), 26.04 (3.14).
SUPPORTED = ("22.04", "24.04", "26.04")
MIN_FREE_BYTES = 25 * 1024**3  # driver + TLJH + PyTorch/CUDA wheels + a term of metrics
# Every host the install downloads from, each with a URL that answers a HEAD request when the
# host serves it. TLJH's bootstrap clones and pip-installs TLJH from github.com and its
# installer downloads Miniforge from GitHub's release downloads (the-littlest-jupyterhub
# 2.0.0, bootstrap/bootstrap.py and tljh/installer.py, MINIFORGE_VERSION 24.7.1-2); pip reads
# PyPI's index and downloads from its files host; conda-forge packages come from
# conda.anaconda.org. The NVIDIA driver comes from Ubuntu's archive and CUDA's libraries as
# wheels from PyTorch's index: no NVIDIA host is contacted.
MINIFORGE_URL = (
    "https://github.com/conda-forge/miniforge/releases/download/24.7.1-2/"
    "Miniforge3-24.7.1-2-Linux-{arch}.sh"
)
SOURCES = (
    ("Ubuntu's archive", "http://archive.ubuntu.com/ubuntu/"),
    ("TLJH's bootstrap", "https://raw.githubusercontent.com/jupyterhub/the-littlest-jupyterhub/"
     "{tljh_version}/bootstrap/bootstrap.py"),
    ("TLJH's source and Miniforge's release download", MINIFORGE_URL),
    ("PyPI's index", "https://pypi.org/simple/"),
    ("PyPI's files", "https://files.pythonhosted.org/"),
    ("PyTorch's wheels", "https://download.pytorch.org/whl/"),
    ("conda-forge", "https://conda.anaconda.org/conda-forge/noarch/repodata.json"),
    ("Grafana's APT repository", "https://apt.grafana.com/"),
)  # fmt: skip

# Ports from this one up are anyone's to bind (a network namespace's sysctl; 1024 unless
# lowered, and kernels before 4.11 have no such setting: then it is 1024).
UNPRIVILEGED_PORT_START = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
DEFAULT_UNPRIVILEGED_PORT_START = 1024

SECURE_BOOT_NOTE = (
    "Secure Boot is on: the kernel loads only signed modules. The installer uses Ubuntu's "
    "signed prebuilt NVIDIA modules, and stops with instructions before installing anything "
    "if there are none for this kernel"
)


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip().strip('"')
    return out


def secure_boot_state(host: Host) -> bool | None:
    result = host.query(["mokutil", "--sb-state"])
    if result.ok or "SecureBoot" in result.stdout:
        return "SecureBoot enabled" in result.stdout
    # No mokutil: the EFI variable's last byte is 1 when Secure Boot is on.
    for var in host.glob("/sys/firmware/efi/efivars/SecureBoot-*"):
        data = host.read_text(var)
        if data:
            return data[-1] == "\x01"
    return None  # legacy BIOS boot, or unknown


def free_bytes(host: Host, path: str = "/") -> int | None:
    result = host.query(["df", "-P", "-k", path])
    try:
        return int(result.stdout.splitlines()[1].split()[3]) * 1024
    except (IndexError, ValueError):
        return None


def unprivileged_port_start(host: Host) -> int:
    text = (host.read_text(UNPRIVILEGED_PORT_START) or "").strip()
    return int(text) if text.isdigit() else DEFAULT_UNPRIVILEGED_PORT_START


def listeners(host: Host) -> dict[int, list[tuple[str, str]]]:
    """port -> (command, systemd unit) of each process listening on it, from iproute2's
    ``ss`` (on every Ubuntu); a command of "" where this account may not see the process."""
    found: dict[int, list[tuple[str, str]]] = {}
    for line in host.query(["ss", "-Hltnp"]).stdout.splitlines():
        fields = line.split()
        port = fields[3].rpartition(":")[2] if len(fields) > 3 else ""
        if port.isdigit():
            owners = re.findall(r'\("([^"]*)",pid=(\d+)', line) or [("", "")]
            for command, pid in owners:
                found.setdefault(int(port), []).append((command, unit_of(host, pid)))
    return found


def unit_of(host: Host, pid: str) -> str:
    """The systemd unit a process runs in (its cgroup's last part), or ""."""
    for line in (host.read_text(f"/proc/{pid}/cgroup") or "").splitlines() if pid else []:
        name = line.rpartition("/")[2]
        if name.endswith((".service", ".scope")):
            return name
    return ""


def port_findings(host: Host, opts: Options, ports: Ports, f: Findings) -> None:
    """Every port of the stack is one no student may bind, and free or already ours.

    Below ``net.ipv4.ip_unprivileged_port_start`` only root and holders of
    CAP_NET_BIND_SERVICE may listen, so no student can take a daemon's port while it
    restarts and receive its clients' credentials (installer/layout/ports.py)."""
    start = unprivileged_port_start(host)
    numbers = ports.numbers()
    if start <= max(numbers.values()):
        f.errors.append(
            f"net.ipv4.ip_unprivileged_port_start is {start}: every account may listen on "
            f"ports from {start} up, where dlcourse's daemons listen "
            f"({min(numbers.values())}-{max(numbers.values())}), so a student could take one "
            "while its daemon restarts and receive its clients' credentials. Set the kernel's "
            "default back: `echo net.ipv4.ip_unprivileged_port_start=1024 | sudo tee "
            "/etc/sysctl.d/99-dlcourse-ports.conf && sudo sysctl --system` (what lowered it: "
            "`grep -rs ip_unprivileged_port_start /etc/sysctl.conf /etc/sysctl.d "
            "/usr/lib/sysctl.d /run/sysctl.d`)"
        )
    if opts.grafana_port is not None and opts.grafana_port >= start:
        f.errors.append(
            f"--grafana-port {opts.grafana_port}: any account may listen there while Grafana "
            f"restarts, and staff's browsers would bring it their sign-in: choose a port "
            f"below {min(start, DEFAULT_UNPRIVILEGED_PORT_START)}, or leave --grafana-port out "
            "(Grafana under the hub, /services/grafana/)"
        )
    taken_by = {port: name for name, port in numbers.items()}
    if opts.grafana_port in taken_by:
        f.errors.append(
            f"--grafana-port {opts.grafana_port}: dlcourse's {taken_by[opts.grafana_port]} "
            "listens there (installer/layout/ports.py); choose another port below 1024"
        )
    held = listeners(host)
    for name, port in numbers.items():
        for command, unit in held.get(port, []):
            if not command:
                f.warnings.append(f"port {port} ({name}) is in use, by what only root may see")
            elif unit != UNITS[name]:
                f.errors.append(
                    f"port {port} ({name}) is taken by {command} ({unit or 'no systemd unit'}):"
                    f" dlcourse's {name} listens there (installer/layout/ports.py); stop or move "
                    "that service first"
                )


def check(host: Host, opts: Options, ports: Ports | None = None) -> Findings:
    f = Findings()
    if host.query(["id", "-u"]).stdout.strip() != "0":
        if opts.dry_run:  # looking needs no root; the machine is not refused for it
            f.warnings.append("a real install runs as root (sudo)")
        else:
            f.errors.append("not running as root: run it with sudo")

    release = parse_os_release(host.read_text("/etc/os-release") or "")
    distro, version = release.get("ID", "unknown"), release.get("VERSION_ID", "")
    f.distro = release.get("PRETTY_NAME", f"{distro} {version}".strip())
    if distro != "ubuntu" or version not in SUPPORTED:
        f.errors.append(
            f"this is {f.distro}; dlcourse-install supports Ubuntu {', '.join(SUPPORTED)} LTS "
            "(older releases lack the Python 3.10 dlcourse and TLJH 2.0.0 need)"
        )

    if not host.exists("/run/systemd/system"):
        f.errors.append("systemd is not running (no /run/systemd/system): it runs every service")

    free = free_bytes(host)
    if free is not None and free < MIN_FREE_BYTES:
        f.errors.append(
            f"only {free / 1024**3:.1f} GiB free on /; the install needs "
            f"{MIN_FREE_BYTES / 1024**3:.0f} GiB"
        )

    f.gpus = nvidia.nvidia_gpus(host)
    if not opts.no_gpu and not f.gpus:
        f.errors.append(
            "no NVIDIA GPU: no PCI display device with vendor 0x10de in /sys/bus/pci/devices "
            "(use --no-gpu for a CPU-only course server)"
        )

    f.nvswitches = nvidia.nvswitches(host)
    chosen = driver.parse_branch(opts.driver or "")
    if f.nvswitches and chosen and not chosen.server:
        f.errors.append(driver.fabric_manager_needs_server(str(chosen)))
    f.secure_boot = secure_boot_state(host)
    if f.secure_boot and opts.ppa:
        kernel = host.query(["uname", "-r"]).stdout.strip()
        branch = chosen or driver.Branch("<BRANCH>")
        headers = nvidia.headers_packages(host, kernel)
        f.errors.append(driver.secure_boot_instructions(branch, kernel, headers, ppa=True))
    elif f.secure_boot and not opts.no_gpu:
        f.warnings.append(SECURE_BOOT_NOTE)

    port_findings(host, opts, ports or Ports(), f)
    f.errors += unreachable_sources(host, opts, f.warnings)
    return f


def unreachable_sources(host: Host, opts: Options, warnings: list[str]) -> list[str]:
    """One line per download host the install cannot reach (redirects followed)."""
    arch = host.query(["uname", "-m"]).stdout.strip() or "x86_64"
    errors = []
    for what, template in SOURCES:
        url = template.format(tljh_version=opts.tljh_version, arch=arch)
        r = host.query(["curl", "-fsSL", "-o", "/dev/null", "-I", "--max-time", "10", url])
        if r.rc == 127:
            warnings.append("curl is missing: the download hosts were not checked")
            break
        if not r.ok:
            reason = (r.stderr.strip().splitlines() or [f"exit {r.rc}"])[-1]
            errors.append(f"cannot reach {urlsplit(url).hostname} ({what}, {url}): {reason}")
    return errors


class PreflightFailed(StepError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("on this machine dlcourse-install refuses to install:\n" + bullets(errors))


def ensure_preflight(ctx: Context) -> None:
    if ctx.findings is None:  # a dry run has looked already, to list refusals first
        ctx.findings = check(ctx.host, ctx.opts, ctx.ports)
    for warning in ctx.findings.warnings:
        ctx.note(f"warning: {warning}")
    if ctx.findings.gpus:
        ctx.note(f"NVIDIA GPU(s) at {', '.join(ctx.findings.gpus)}")
    if ctx.findings.errors:
        raise PreflightFailed(ctx.findings.errors)


# It reads --tljh-version for the download hosts it checks, --grafana-port for the ports no
# student may bind.
STEP = Step("preflight", "Preflight checks", ensure_preflight,
            ("driver", "ppa", "no_gpu", "tljh_version", "grafana_port"), always=True)  # fmt: skip
