"""Step 3: the NVIDIA driver, the way Ubuntu documents it for compute servers
(catalogs/driver.py has the sources), then the reboot it needs, then a check of every GPU.

``dlcourse-install driver --purge`` (``purge_driver``) takes it back to nouveau.
"""

from __future__ import annotations

from dlcourse_installer.catalogs import driver
from dlcourse_installer.checklist.step import (
    Context,
    RebootRequired,
    Step,
    StepError,
    ensure_generated,
)
from dlcourse_installer.machine import apt, files, nvidia, systemd
from dlcourse_installer.machine.host import Host
from dlcourse_installer.rendered import generated, templates

# NVML through ctypes: proves the library the exporter uses answers, without any package.
NVML_CHECK = (
    "import ctypes, sys\n"
    "nvml = ctypes.CDLL('libnvidia-ml.so.1')\n"
    "if nvml.nvmlInit_v2() != 0: sys.exit('nvmlInit failed')\n"
    "buf = ctypes.create_string_buffer(80)\n"
    "nvml.nvmlSystemGetDriverVersion(buf, 80)\n"
    "count = ctypes.c_uint()\n"
    "nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))\n"
    "print(buf.value.decode(), count.value)\n"
    "nvml.nvmlShutdown()\n"
)


def chosen_branch(ctx: Context) -> driver.Branch | None:
    """--driver as given, else what ubuntu-drivers recommends for a compute server."""
    if ctx.opts.driver:
        return driver.parse_branch(ctx.opts.driver)
    apt.ensure_packages(ctx.host, ["ubuntu-drivers-common"])
    return nvidia.recommended(ctx.host)


def ensure_nvidia_driver(ctx: Context) -> None:
    host, opts = ctx.host, ctx.opts
    if opts.no_gpu:
        ctx.note("skipped: --no-gpu")
        return
    kernel = host.query(["uname", "-r"]).stdout.strip()
    present = nvidia.installed(host)
    if present and opts.driver and str(present) != opts.driver:
        raise StepError(
            f"driver {present} is installed, not {opts.driver}: to switch, run "
            "`dlcourse-install driver --purge`, reboot, and run this command again"
        )
    branch = present or chosen_branch(ctx)
    if branch is None:
        if not opts.dry_run:
            raise StepError(
                "`ubuntu-drivers list --gpgpu` names no NVIDIA driver for this server: choose "
                "one with --driver BRANCH (e.g. 580-server-open)"
            )
        branch = driver.Branch("<recommended by ubuntu-drivers>", server=True)
    chosen = "as given (--driver)" if opts.driver else "ubuntu-drivers' choice for servers"
    ctx.note(f"driver {branch}, {'installed' if present else chosen}")
    ctx.driver_branch = branch
    gpus = nvidia.nvidia_gpus(host)
    switches = nvidia.nvswitches(host)
    if switches and not branch.server:
        raise StepError(driver.fabric_manager_needs_server(str(branch)))
    if present is None:
        install_driver(ctx, branch, kernel)
    else:
        complete_driver(ctx, branch, kernel)
    if switches:  # NVSwitch systems: no CUDA without Fabric Manager of the same branch
        apt.ensure_packages(host, branch.fabric_manager_packages)
    ensure_driver_files(ctx)

    version = nvidia.driver_version(host)
    if version is None:
        if ctx.state.reboot_pending and ctx.state.boot_id != systemd.boot_id(host):
            raise StepError(driver_not_loaded(host, branch))
        ctx.state.reboot_pending = True
        ctx.state.boot_id = systemd.boot_id(host)
        ctx.note(
            f"after the reboot: the nvidia module is loaded, nvidia-smi lists all {len(gpus)} "
            f"GPU(s) ({', '.join(gpus)}), and the running driver is the installed {branch}"
            + ("; then Fabric Manager starts" if switches else "")
            + "; persistence mode is on"
        )
        raise RebootRequired(f"driver {branch} is installed; the kernel must boot with it")
    verify_driver(ctx, branch, version, gpus)
    if switches:
        ensure_fabric_manager(ctx, branch)
    ensure_persistence_mode(ctx)
    ctx.state.reboot_pending = False
    if files.ensure_absent(host, ctx.paths.unit(templates.RESUME_UNIT)):
        systemd.disable(host, templates.RESUME_UNIT)
        systemd.reload_daemon(host)


def install_driver(ctx: Context, branch: driver.Branch, kernel: str) -> None:
    """Signed prebuilt modules when Ubuntu has them; DKMS only where Secure Boot allows it."""
    host, opts = ctx.host, ctx.opts
    secure_boot = bool(ctx.findings and ctx.findings.secure_boot)
    if opts.ppa:  # DKMS sources only (refused with Secure Boot by the preflight)
        if not host.glob(f"{ctx.paths.apt_sources_d}/graphics-drivers-*"):
            apt.add_ppa(host, "graphics-drivers/ppa")  # refreshes the package lists itself
        apt.ensure_packages(
            host, [*nvidia.headers_packages(host, kernel), f"nvidia-driver-{branch.number}"]
        )
        return
    prebuilt = nvidia.prebuilt_available(host, branch, kernel)
    if not prebuilt and secure_boot:
        headers = nvidia.headers_packages(host, kernel)
        raise StepError(driver.secure_boot_instructions(branch, kernel, headers, ppa=False))
    if not prebuilt:
        ctx.note(f"no prebuilt modules for kernel {kernel}: DKMS builds them (Secure Boot is off)")
        apt.ensure_packages(host, nvidia.headers_packages(host, kernel))
    apt.refresh(host)
    host.run(driver.install_command(branch, dkms=not prebuilt), env=apt.APT_ENV)
    apt.ensure_packages(host, [branch.utils_package])  # nvidia-smi, left out by --gpgpu
    if nvidia.installed(host) is None and not opts.dry_run:
        raise StepError(
            f"`{' '.join(driver.install_command(branch, dkms=not prebuilt))}` installed no "
            "driver: see `ubuntu-drivers list --gpgpu` for the branches this GPU can use"
        )


def complete_driver(ctx: Context, branch: driver.Branch, kernel: str) -> None:
    """An installed driver gets what it lacks: nvidia-smi, and for DKMS modules (the PPA's, or
    the ones a lecturer installed for Secure Boot by the instructions) the headers of future
    kernels and the headless userspace."""
    host = ctx.host
    wanted = [branch.utils_package]
    if apt.is_installed(host, branch.dkms_package):
        wanted[:0] = nvidia.headers_packages(host, kernel)
        userspace = [f"nvidia-driver-{branch}", f"nvidia-driver-{branch.number}"]
        if not apt.installed_matching(host, [branch.headless_package, *userspace]):
            wanted.append(branch.headless_package)
    installed = apt.ensure_packages(host, wanted)
    if installed:
        ctx.note(f"added to the installed driver: {' '.join(installed)}")


def ensure_driver_files(ctx: Context) -> None:
    """The nouveau blacklist (then the initramfs), unattended-upgrades leaving the driver and
    kernel alone, and nvidia-persistenced's settings."""
    changed = {f.path for f in generated.part(ctx.files, "driver")
               if ensure_generated(ctx.host, f, planning=ctx.opts.dry_run)}  # fmt: skip
    if ctx.paths.modprobe_blacklist in changed:
        ctx.host.run(["update-initramfs", "-u"])  # nouveau is loaded from the initramfs
    if any(path.startswith(ctx.paths.systemd_dir) for path in changed):
        systemd.reload_daemon(ctx.host)


def ensure_fabric_manager(ctx: Context, branch: driver.Branch) -> None:
    """Fabric Manager running; on HGX B200-class systems (fourth-generation NVSwitches) with
    NVIDIA's NVLink Subnet Manager beside it."""
    host = ctx.host
    caps = nvidia.compute_capabilities(host) or []
    if driver.needs_nvlsm(caps):
        if apt.version(host, driver.NVLSM_PACKAGE) is None:  # neither installed nor in apt
            raise StepError(driver.NVLSM_MISSING)
        apt.ensure_packages(host, [driver.NVLSM_PACKAGE])
    systemd.ensure_running(host, "nvidia-fabricmanager")


def ensure_persistence_mode(ctx: Context) -> None:
    """nvidia-persistenced running with persistence mode on (its drop-in, ensure_driver_files)."""
    host = ctx.host
    if not systemd.is_active(host, templates.PERSISTENCED) or not nvidia.persistence_mode_on(host):
        systemd.restart(host, templates.PERSISTENCED)
    if not nvidia.persistence_mode_on(host) and not ctx.opts.dry_run:
        ctx.note(
            "warning: persistence mode is still off (`nvidia-smi --query-gpu=persistence_mode "
            f"--format=csv`); see `systemctl status {templates.PERSISTENCED}`"
        )
    else:
        ctx.note("persistence mode on (nvidia-persistenced)")


def verify_driver(ctx: Context, branch: driver.Branch, version: str, gpus: list[str]) -> None:
    """After the reboot: every GPU is there, on the driver that was installed."""
    host = ctx.host
    listed = host.query(["nvidia-smi", "--query-gpu=pci.bus_id", "--format=csv,noheader"])
    seen = {line.strip().lower()[-12:] for line in listed.stdout.splitlines() if line.strip()}
    missing = [g for g in gpus if g.lower()[-12:] not in seen]
    if missing and not ctx.opts.dry_run:
        raise StepError(
            f"nvidia-smi lists {len(seen)} of the {len(gpus)} NVIDIA GPUs; missing: "
            f"{', '.join(missing)} (see `sudo dmesg | grep -i -e nvrm -e xid`)"
        )
    installed = apt.upstream_version(host, branch.utils_package)
    if installed and installed != version and not ctx.opts.dry_run:
        raise StepError(
            f"the running driver is {version} but {installed} is installed: the old module "
            "is still loaded; reboot and run the same command again"
        )
    nvml = host.query(["/usr/bin/python3", "-c", NVML_CHECK])
    if not nvml.ok and not ctx.opts.dry_run:
        raise StepError(f"nvidia-smi works but NVML does not answer Python: {nvml.stderr.strip()}")
    ctx.note(f"driver {version} loaded; nvidia-smi and NVML see all {len(gpus)} GPU(s)")


def driver_not_loaded(host: Host, branch: driver.Branch) -> str:
    reason = "the nvidia module did not load after the reboot"
    if not host.exists("/sys/module/nvidia"):
        reason += " (no /sys/module/nvidia)"
    return (
        f"driver {branch} is installed and the machine rebooted, but {reason}. Check "
        "`sudo dmesg | grep -i -e nvidia -e nouveau`, `lsmod | grep nouveau` and, with "
        "Secure Boot on, `mokutil --sb-state` and `dkms status`"
    )


def purge_driver(ctx: Context) -> None:
    """``dlcourse-install driver --purge``: back to nouveau, as the seed's `apt purge nvidia*`."""
    host = ctx.host
    packages = apt.installed_matching(host, ["nvidia-*", "libnvidia-*", "linux-modules-nvidia-*"])
    if packages:
        apt.purge(host, packages)
    # The driver step's files go too: the kernel upgrades by itself again.
    removed = {
        f.path for f in generated.part(ctx.files, "driver") if files.ensure_absent(host, f.path)
    }
    if ctx.paths.modprobe_blacklist in removed:
        host.run(["update-initramfs", "-u"])
    if any(path.startswith(ctx.paths.systemd_dir) for path in removed):
        systemd.reload_daemon(host)
    ctx.state.done.pop("nvidia-driver", None)
    ctx.state.reboot_pending = bool(packages)
    ctx.state.boot_id = systemd.boot_id(host)


STEP = Step("nvidia-driver", "NVIDIA driver", ensure_nvidia_driver, ("driver", "ppa", "no_gpu"),
            parts=("driver",))  # fmt: skip
