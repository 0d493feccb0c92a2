"""The installation, as the checklist a careful sysadmin would follow by hand.

Each ``ensure_*`` step looks before it acts, so a second run changes nothing. The order
follows the seed guide (base packages, driver, reboot, TLJH, packages for all users) with
the course, the exporter and monitoring after it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, replace
from functools import cached_property
from typing import TextIO
from urllib.parse import urlsplit

from dlcourse_installer import (
    apt,
    assets,
    course_packages,
    driver,
    files,
    generated,
    grafana_config,
    preflight,
    pytorch,
    staff,
    systemd,
    templates,
    tljh,
    user_env,
    users,
)
from dlcourse_installer.course_packages import CoursePackages, Package
from dlcourse_installer.generated import Facts, GeneratedFile
from dlcourse_installer.host import CommandError, Host
from dlcourse_installer.options import Options
from dlcourse_installer.paths import Paths
from dlcourse_installer.ports import Ports
from dlcourse_installer.state import State

# What the steps run before TLJH's bootstrap installs its own (git: it resolves --version).
BASE_PACKAGES = ["python3", "python3-venv", "git", "curl"]
MONITORING_PACKAGES = ["prometheus", "prometheus-alertmanager", "prometheus-node-exporter"]
TLJH_BOOTSTRAP_URL = (
    "https://raw.githubusercontent.com/jupyterhub/the-littlest-jupyterhub/{version}"
    "/bootstrap/bootstrap.py"
)
GRAFANA_KEY_URL = "https://apt.grafana.com/gpg.key"
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


class StepError(Exception):
    """The step cannot go on; the message says what to do."""


class RebootRequired(Exception):
    """The driver is installed; the kernel must boot with it before the install goes on."""


@dataclass
class Context:
    host: Host
    paths: Paths
    opts: Options
    state: State
    facts: Facts = field(default_factory=lambda: Facts(python=sys.executable))
    ports: Ports = field(default_factory=Ports)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    findings: preflight.Findings | None = None
    driver_branch: driver.Branch | None = None  # chosen by the driver step
    pytorch_build: pytorch.CudaBuild | None = None  # chosen by the users' environment step

    def note(self, text: str) -> None:
        self.out.write(f"      {text}\n")

    @cached_property
    def files(self) -> list[GeneratedFile]:
        """Every file this install writes (generated.plan, the one registry)."""
        return generated.plan(self.paths, self.ports, self.opts, self.facts)

    def learned(self, facts: Facts) -> None:
        """What the install found out (PyTorch's exact build): the files follow it."""
        self.facts = facts
        self.__dict__.pop("files", None)


def ensure_part(ctx: Context, part: str) -> bool:
    """Write this part of the registry's files where they differ. True if any changed."""
    changed = False
    for f in generated.part(ctx.files, part):
        changed |= files.ensure_generated(ctx.host, f, planning=ctx.opts.dry_run)
    return changed


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    ensure: Callable[[Context], None]
    # The options a step depends on: when they change, a finished step runs again.
    inputs: Callable[[Options], dict] = lambda o: {}
    always: bool = False  # looks only; runs every time
    # The parts of generated.plan() it writes: when their contents change (a new
    # dlcourse, new rules or dashboards), a finished step runs again too.
    parts: tuple[str, ...] = ()


# -- 1. preflight --------------------------------------------------------------------
class PreflightFailed(StepError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(
            "on this machine dlcourse-install refuses to install:\n" + _bullets(errors)
        )


def ensure_preflight(ctx: Context) -> None:
    if ctx.findings is None:  # a dry run has looked already, to list refusals first
        ctx.findings = preflight.check(ctx.host, ctx.opts)
    for warning in ctx.findings.warnings:
        ctx.note(f"warning: {warning}")
    if ctx.findings.gpus:
        ctx.note(f"NVIDIA GPU(s) at {', '.join(ctx.findings.gpus)}")
    if ctx.findings.errors:
        raise PreflightFailed(ctx.findings.errors)


# -- 2. base packages ----------------------------------------------------------------
def ensure_base_packages(ctx: Context) -> None:
    installed = apt.ensure_packages(ctx.host, BASE_PACKAGES)
    if installed:
        ctx.note(f"new packages: {' '.join(installed)}")


# -- 3. NVIDIA driver ----------------------------------------------------------------
def driver_version(host: Host) -> str | None:
    r = host.query(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return r.stdout.splitlines()[0].strip() if r.ok and r.stdout.strip() else None


def boot_id(host: Host) -> str:
    return (host.read_text("/proc/sys/kernel/random/boot_id") or "").strip()


def chosen_branch(ctx: Context) -> driver.Branch | None:
    """--driver as given, else what ubuntu-drivers recommends for a compute server."""
    if ctx.opts.driver:
        return driver.parse_branch(ctx.opts.driver)
    apt.ensure_packages(ctx.host, ["ubuntu-drivers-common"])
    return driver.recommended(ctx.host)


def ensure_nvidia_driver(ctx: Context) -> None:
    host, opts = ctx.host, ctx.opts
    if opts.no_gpu:
        ctx.note("skipped: --no-gpu")
        return
    kernel = host.query(["uname", "-r"]).stdout.strip()
    present = driver.installed(host)
    if present and opts.driver and str(present) != opts.driver:
        raise StepError(
            f"driver {present} is installed, not {opts.driver}: to switch, run "
            "`dlcourse-install driver --purge`, reboot, and run this command again"
        )
    branch = present or chosen_branch(ctx)
    if branch is None:
        if not opts.dry_run:
            raise StepError(
                "`ubuntu-drivers list --gpgpu --recommended` names no NVIDIA driver for this "
                "server: choose one with --driver BRANCH (e.g. 580-server)"
            )
        branch = driver.Branch("<recommended by ubuntu-drivers>", server=True)
    chosen = "as given (--driver)" if opts.driver else "ubuntu-drivers' choice for servers"
    ctx.note(f"driver {branch}, {chosen}")
    ctx.driver_branch = branch
    if present is None:
        install_driver(ctx, branch, kernel)
    gpus = preflight.nvidia_gpus(host)
    switches = preflight.nvswitches(host)
    if switches:  # NVSwitch systems: no CUDA without Fabric Manager of the same branch
        apt.ensure_packages(host, branch.fabric_manager_packages)
    if ensure_part(ctx, "driver"):
        host.run(["update-initramfs", "-u"])  # nouveau is loaded from the initramfs

    version = driver_version(host)
    if version is None:
        if ctx.state.reboot_pending and ctx.state.boot_id != boot_id(host):
            raise StepError(driver_not_loaded(host, branch))
        ctx.state.reboot_pending = True
        ctx.state.boot_id = boot_id(host)
        ctx.note(
            f"after the reboot: the nvidia module is loaded, nvidia-smi lists all {len(gpus)} "
            f"GPU(s) ({', '.join(gpus)}), and the running driver is the installed {branch}"
            + ("; then Fabric Manager starts" if switches else "")
        )
        raise RebootRequired(f"driver {branch} is installed; the kernel must boot with it")
    verify_driver(ctx, branch, version, gpus)
    if switches:
        systemd.ensure_running(host, "nvidia-fabricmanager")
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
        apt.ensure_packages(host, [f"linux-headers-{kernel}", f"nvidia-driver-{branch.number}"])
        return
    prebuilt = driver.prebuilt_available(host, branch, kernel)
    if not prebuilt and secure_boot:
        raise StepError(driver.secure_boot_instructions(branch, kernel, ppa=False))
    if not prebuilt:
        ctx.note(f"no prebuilt modules for kernel {kernel}: DKMS builds them (Secure Boot is off)")
        apt.ensure_packages(host, [f"linux-headers-{kernel}"])
    apt.refresh(host)
    host.run(driver.install_command(branch, dkms=not prebuilt), env=apt.APT_ENV)
    apt.ensure_packages(host, [branch.utils_package])  # nvidia-smi, left out by --gpgpu
    if driver.installed(host) is None and not opts.dry_run:
        raise StepError(
            f"`{' '.join(driver.install_command(branch, dkms=not prebuilt))}` installed no "
            "driver: see `ubuntu-drivers list --gpgpu` for the branches this GPU can use"
        )


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
    installed = driver.package_version(host, branch.utils_package)
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
    if files.ensure_absent(host, ctx.paths.modprobe_blacklist):
        host.run(["update-initramfs", "-u"])
    ctx.state.done.pop("nvidia-driver", None)
    ctx.state.reboot_pending = bool(packages)
    ctx.state.boot_id = boot_id(host)


# -- 4. TLJH -------------------------------------------------------------------------
PLUGIN_CHECK = "import dlcourse_installer.tljh_plugin"


def ensure_tljh(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    # The admins' passwords exist before TLJH first starts the hub: the plugin writes them
    # into TLJH's password store from these files (hub_passwords.py), so the hub never
    # listens with an admin account whoever comes first could claim.
    if not host.exists(paths.hub_passwords_dir):
        host.make_dirs(paths.hub_passwords_dir, mode=0o700)
    ensure_part(ctx, "tljh")
    fresh = not tljh.is_installed(host, paths)
    if fresh:
        bootstrap = f"{paths.cache}/tljh-bootstrap-{opts.tljh_version}.py"
        if not host.exists(bootstrap):
            host.make_dirs(paths.cache)
            download(host, TLJH_BOOTSTRAP_URL.format(version=opts.tljh_version), bootstrap)
        admins = [a for admin in opts.admins for a in ("--admin", admin)]
        host.run(
            ["/usr/bin/python3", bootstrap, "--version", opts.tljh_version, *admins,
             "--plugin", opts.source],
            env={"TLJH_INSTALL_PREFIX": paths.tljh_prefix, "DLCOURSE_ETC": paths.etc},
        )  # fmt: skip
    elif not host.query([f"{paths.hub_env}/bin/python3", "-c", PLUGIN_CHECK]).ok:
        # TLJH was there before dlcourse: add the plugin to its hub environment.
        host.run([f"{paths.hub_env}/bin/python3", "-m", "pip", "install", opts.source])
        restart_hub(ctx)
    if not (fresh and opts.dry_run) and tljh.passwords_missing(host, paths):
        tljh.seed_passwords(host, paths)
    for admin in opts.admins:
        ctx.note(f"hub admin {admin}: password in {paths.hub_password(admin)}")


def restart_hub(ctx: Context) -> None:
    """Restart the hub for new configuration and wait for its API, two minutes at most.

    Not `tljh-config reload hub`: it polls until the hub answers, forever if it never does
    (tljh/config.py reload_component, TLJH 2.0.0).
    """
    if not tljh.restart_hub(ctx.host, ctx.ports, wait=not ctx.opts.dry_run):
        raise StepError(
            "the hub did not come back within two minutes after a restart: "
            "see `journalctl -u jupyterhub -n 50`"
        )


def download(host: Host, url: str, dest: str) -> None:
    """Network downloads are retried: a flaky mirror should not stop the install."""
    host.run(["curl", "-fsSL", "--retry", "3", "--retry-delay", "5", "-o", dest, url])


# -- 5. users' environment -----------------------------------------------------------
def ensure_user_environment(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    if not tljh.is_installed(host, paths) and not opts.dry_run:
        raise StepError(f"TLJH's user environment {paths.user_env} is missing: rerun the TLJH step")
    ensure_part(ctx, "user-environment")
    wanted = templates.USER_PIP_PACKAGES + (["tensorflow"] if opts.tensorflow else [])
    todo = [p for p in wanted if not tljh.user_pip_installed(host, paths, p.partition("==")[0])]
    if todo:
        specs = [
            "tensorflow[and-cuda]" if p == "tensorflow" and not opts.no_gpu else p for p in todo
        ]
        tljh.user_pip_install(host, paths, specs)
    if opts.no_gpu:
        install_torch(ctx, pytorch.CPU)
        ctx.note("no GPU check: --no-gpu (the CPU build of PyTorch)")
    else:
        ensure_torch_on_the_gpus(ctx)
    pin_pytorch(ctx)


def pin_pytorch(ctx: Context) -> None:
    """PyTorch stays at the installed build: pip constraints, which every pip in the users'
    environment reads through its pip.conf, and conda pins, which conda and mamba read."""
    pins = user_env.pytorch(ctx.host, ctx.paths)
    if not pins:
        if ctx.opts.dry_run:
            ctx.note(
                f"then PyTorch is pinned at the installed build: {ctx.paths.pytorch_constraints} "
                f"(pip, through {ctx.paths.user_pip_conf}) and {ctx.paths.user_conda_pinned}"
            )
        return
    ctx.learned(replace(ctx.facts, pytorch=pins))
    if ensure_part(ctx, "pytorch-pins"):
        ctx.note(f"PyTorch pinned for pip and conda: {', '.join(pins)}")


def ensure_torch_on_the_gpus(ctx: Context) -> None:
    """The newest build the driver runs, proven on every GPU, or the fallback, said so."""
    host, opts = ctx.host, ctx.opts
    branch = ctx.driver_branch
    running = driver_version(host) or (branch.number if branch else "")
    build = ctx.pytorch_build = pytorch.first_choice(running)
    if build is None:
        if not opts.dry_run:
            raise StepError(
                f"driver {running or '(none answers)'} is too old for any PyTorch CUDA build "
                "(CUDA 12 needs 525 or newer): reinstall with --driver 580-server"
            )
        ctx.note("PyTorch: the newest CUDA build the driver chosen by ubuntu-drivers runs")
        return
    installed = torch_tag(ctx)
    fallback = pytorch.fallback(running, tried=(build.tag,))
    if installed == build.tag or (fallback and installed == fallback.tag and installed_ok(ctx)):
        return  # a fallback chosen by an earlier run stays
    ctx.note(f"PyTorch {build.describe()}, the newest build that driver {running} runs")
    install_torch(ctx, build)
    if opts.dry_run:
        ctx.note(
            "then, as a temporary unprivileged account: torch.cuda.is_available() and a "
            "matrix product on each GPU; on failure, the build whose full-feature minimum "
            "driver this one meets"
        )
        return
    error = torch_check(ctx)
    if error is None:
        ctx.note(f"PyTorch {build.tag} checked on every GPU as an unprivileged account")
        return
    if fallback is None:
        raise StepError(f"PyTorch {build.tag} does not run on this server's GPUs: {error}")
    minimum = ".".join(str(n) for n in fallback.full_feature_driver)
    ctx.note(
        f"PyTorch {build.tag} failed on this server ({error}); falling back to "
        f"{fallback.describe()}, whose full feature set needs driver {minimum}, which "
        f"{running} meets"
    )
    ctx.pytorch_build = fallback
    install_torch(ctx, fallback)
    error = torch_check(ctx)
    if error is not None:
        raise StepError(
            f"PyTorch {fallback.tag} does not run on this server's GPUs either: {error}"
        )
    ctx.note(f"PyTorch {fallback.tag} checked on every GPU as an unprivileged account")


def torch_tag(ctx: Context) -> str | None:
    """The CUDA build of the installed torch (``2.13.0+cu130`` -> ``cu130``)."""
    current = ctx.host.query([f"{ctx.paths.user_env}/bin/python", "-c", pytorch.VERSION])
    if not current.ok:
        return None
    return current.stdout.strip().partition("+")[2] or None


def installed_ok(ctx: Context) -> bool:
    return ctx.opts.dry_run or torch_check(ctx) is None


def install_torch(ctx: Context, build: pytorch.CudaBuild) -> None:
    if torch_tag(ctx) == build.tag:
        return
    # --index-url: PyTorch's own index carries each CUDA build; PyPI's has one.
    # --force-reinstall: the same torch version of another build counts as installed.
    # PIP_CONSTRAINT: this one command replaces the pinned build on purpose (the environment
    # variable overrides pip.conf's constraint; pip's documentation, "Configuration").
    tljh.user_pip_install(
        ctx.host, ctx.paths, list(ctx.opts.torch_spec), "--force-reinstall",
        "--index-url", build.index, env={"PIP_CONSTRAINT": os.devnull},
    )  # fmt: skip


def torch_check(ctx: Context) -> str | None:
    """None if torch computes on every GPU for an ordinary account; else what went wrong."""
    python = f"{ctx.paths.user_env}/bin/python"
    with users.temporary_account(ctx.host) as account:
        check = ["runuser", "-u", account, "--", python, "-c", pytorch.CHECK]
        result = ctx.host.query(check, timeout=900)  # CUDA starts slowly on many GPUs
    if result.ok:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit {result.rc}"


# -- 6. course packages --------------------------------------------------------------
def ensure_course_packages(ctx: Context) -> None:
    """The lecturer's list (--packages FILE, else the one kept from an earlier run) in the
    users' environment, each package imported as a student would, PyTorch left as it is."""
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    listed = opts.packages or kept_course_packages(ctx)
    if listed is None:
        ctx.note("none listed (`--packages FILE` or `dlcourse-install packages FILE` adds them)")
        return
    ensure_part(ctx, "course-packages")
    if not listed.packages:
        ctx.note(f"{paths.course_packages} lists no package")
        return
    if not ctx.facts.pytorch and not opts.dry_run:
        raise StepError(
            "PyTorch is not in the users' environment yet: run the whole install first "
            "(dlcourse-install --admin NAME ...), then add course packages"
        )
    rows = user_env.installed(host, paths, list(listed.packages)) or []
    there = {(row["kind"], row["name"]) for row in rows if row["satisfied"]}
    todo = [p for p in listed.packages if (p.kind, p.name) not in there]
    ctx.note(
        f"{len(listed.packages)} listed ({', '.join(p.spec for p in listed.packages)}); "
        f"{len(listed.packages) - len(todo)} installed already"
    )
    if todo:
        snapshot_user_packages(ctx)
        install_course_packages(ctx, todo)
        pin_pytorch(ctx)  # a listed torchaudio joins the pins
    if opts.dry_run:
        ctx.note(
            "then, as a temporary unprivileged account, each package is imported (module "
            "names from its metadata, or import=), one line per failure with its own error"
        )
        return
    check_imports(ctx, list(listed.packages))


def kept_course_packages(ctx: Context) -> CoursePackages | None:
    text = ctx.host.read_text(ctx.paths.course_packages)
    if text is None:
        return None
    listed, errors = course_packages.parse(text, ctx.paths.course_packages)
    if errors:
        raise StepError("the kept course packages file has errors:\n" + _bullets(errors))
    return listed


def snapshot_user_packages(ctx: Context) -> None:
    """The environment as it was, for rollback: `pip install -r` takes it back."""
    frozen = user_env.pip_list(ctx.host, ctx.paths)
    folder = ctx.paths.package_snapshots
    if frozen is None:
        ctx.note(f"first a snapshot (pip list --format=freeze) of the environment to {folder}/")
        return
    path = f"{folder}/pip-list-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    ctx.host.write_file(path, frozen, mode=0o644)
    ctx.note(f"the environment before this change, for rollback: {path}")


def install_course_packages(ctx: Context, todo: list[Package]) -> None:
    """conda first, then pip (conda does not see what pip installs); PyTorch's own packages
    from the index of the installed build, so torchaudio matches torch's CUDA."""
    host, paths = ctx.host, ctx.paths
    conda = [p.spec for p in todo if p.kind == "conda"]
    from_pytorch = [p.spec for p in todo if p.is_pytorch]
    from_pypi = [p.spec for p in todo if p.kind == "pip" and not p.is_pytorch]
    try:
        if conda:
            user_env.conda_install(host, paths, conda)
        if from_pytorch:
            user_env.pip_install(host, paths, from_pytorch, "--index-url", pytorch_index(ctx))
        if from_pypi:
            user_env.pip_install(host, paths, from_pypi)
    except CommandError as exc:
        raise StepError(f"{exc}{_kept_pytorch_hint(ctx, exc)}") from exc


def pytorch_index(ctx: Context) -> str:
    torch = next((pin for pin in ctx.facts.pytorch if pin.startswith("torch==")), "")
    index = pytorch.index_of(torch) or (ctx.pytorch_build and ctx.pytorch_build.index)
    return index or pytorch.INDEX.format(tag="<the installed build>")


def _kept_pytorch_hint(ctx: Context, exc: CommandError) -> str:
    output = exc.result.stdout + exc.result.stderr
    if exc.result.argv[0].endswith("/conda") and "pytorch" in output:
        return (
            ". A conda-forge package here needs conda's pytorch, which would replace the "
            "installer's build: list it in the pip part instead"
        )
    if "ResolutionImpossible" in output and "torch" in output:
        return (
            f". A listed package needs another PyTorch than the installer's "
            f"({', '.join(ctx.facts.pytorch)}, kept by {ctx.paths.pytorch_constraints}): "
            "list a release of it that works with this PyTorch"
        )
    return ""


def check_imports(ctx: Context, packages: list[Package]) -> None:
    try:
        rows = user_env.imports(ctx.host, ctx.paths, packages)
    except RuntimeError as exc:
        raise StepError(f"the import check could not run as a temporary account: {exc}") from exc
    failed = [row for row in rows if row["error"]]
    for row in failed:
        ctx.note(f"{row['name']}: {row['error']}")
    if failed:
        raise StepError(
            f"{len(failed)} of {len(rows)} course packages do not import for a student (each "
            "with its own error above)"
        )
    modules = sorted({m for row in rows for m in row["modules"]})
    ctx.note(f"imported as a temporary unprivileged account: {', '.join(modules) or 'nothing'}")


# -- 7. course -----------------------------------------------------------------------
def ensure_course(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    cfg = tljh.config(host, paths)
    changed = False
    for key, names in (
        ("users.admin", opts.admins),
        ("users.allowed", [student.username for student in opts.roster]),
    ):
        present = set(tljh.lookup(cfg, key) or [])
        for name in names:
            if name not in present:
                tljh.config_add_item(host, paths, key, name)
                changed = True
    strict = None if opts.gpu_strict is None else str(opts.gpu_strict).lower()
    cull = None if opts.gpu_idle_cull is None else str(opts.gpu_idle_cull).lower()
    for key, value in (
        ("limits.memory", opts.mem_limit),
        ("limits.cpu", opts.cpu_limit),
        # The GPU hook reads these at each hub start (docs/gpu-assignment.md).
        ("dlcourse.gpu_policy", opts.gpu_policy),
        ("dlcourse.gpu_strict", strict),
        # The hub starts the GPU idle culler when this is true (installer/students.py).
        ("dlcourse.gpu_idle_cull", cull),
    ):
        # str().lower(): config.yaml holds 2 and true where the options hold "2" and "true".
        if value is not None and str(tljh.lookup(cfg, key)).lower() != value.lower():
            tljh.config_set(host, paths, key, value)
            changed = True
    changed |= ensure_part(ctx, "course")
    if tljh.is_installed(host, paths) and tljh.passwords_missing(host, paths):
        tljh.seed_passwords(host, paths)  # before the hub loads the TAs from the roster
    sections = {student.group for student in opts.roster if student.group}
    if opts.roster:
        ctx.note(f"{len(opts.roster)} people in {len(sections)} sections")
    for ta in opts.tas:
        ctx.note(f"TA {ta} (group {opts.staff_group}): password in {paths.hub_password(ta)}")
    if changed:
        restart_hub(ctx)


# -- 8. exporter ---------------------------------------------------------------------
def ensure_hub_services(ctx: Context) -> bool:
    host, paths = ctx.host, ctx.paths
    if not host.exists(paths.etc):
        host.make_dirs(paths.etc, mode=0o755)
    return ensure_part(ctx, "hub-services")


def ensure_exporter(ctx: Context) -> None:
    host, paths, opts = ctx.host, ctx.paths, ctx.opts
    users.ensure_system_user(host, templates.EXPORTER_USER)
    venv = paths.exporter_venv
    if not host.exists(f"{venv}/bin/python"):
        host.run(["/usr/bin/python3", "-m", "venv", venv])
    if not host.exists(f"{venv}/bin/dlcourse-exporter"):
        host.run([f"{venv}/bin/python", "-m", "pip", "install", opts.source])
    if ensure_hub_services(ctx):
        restart_hub(ctx)
    changed = ensure_part(ctx, "exporter")
    if changed:
        systemd.reload_daemon(host)
    systemd.ensure_running(host, f"{templates.EXPORTER_SERVICE}.service", restart_needed=changed)


# -- 9. monitoring -------------------------------------------------------------------
def ensure_grafana(ctx: Context) -> bool:
    host, paths = ctx.host, ctx.paths
    key = f"{paths.apt_keyrings}/grafana.asc"
    if not host.exists(key):
        host.make_dirs(paths.apt_keyrings)
        download(host, GRAFANA_KEY_URL, key)
    if ensure_part(ctx, "grafana-apt"):
        host.apt_lists_fresh = False  # a new source
    apt.ensure_packages(host, ["grafana"])
    # Grafana's secrets were written root-only before its account existed.
    for f in ctx.files:
        if f.group == "grafana" and f.part != "grafana":
            files.ensure_owner(host, f)
    ctx.note(f"{len(assets.dashboards())} dashboards from grafana/dashboards/")
    changed = ensure_part(ctx, "grafana")
    if changed:
        systemd.reload_daemon(host)  # the drop-in
    return changed


def ensure_monitoring(ctx: Context) -> None:
    host = ctx.host
    apt.ensure_packages(host, MONITORING_PACKAGES)
    # The hub's metrics token was written root-only before Prometheus's account existed.
    for f in generated.part(ctx.files, "hub-services"):
        files.ensure_owner(host, f)
    ctx.note(f"{len(assets.rules())} rule files from prometheus/rules/")
    changed = {
        unit: ensure_part(ctx, part)
        for unit, part in (
            ("prometheus", "prometheus"),
            ("prometheus-alertmanager", "alertmanager"),
            ("prometheus-node-exporter", "node-exporter"),
        )
    }
    changed["grafana-server"] = ensure_grafana(ctx)
    for unit, restart_needed in changed.items():
        systemd.ensure_running(host, unit, restart_needed=restart_needed)


# -- 10. final check -----------------------------------------------------------------
def _get_json(host: Host, netrc: str, url: str, *params: str) -> dict | None:
    args = [a for p in params for a in ("--data-urlencode", p)]
    # As the instructor: the password comes from a root-only netrc, never the command line.
    r = host.query(["curl", "-fsS", "--max-time", "10", "--netrc-file", netrc, "-G", *args, url])
    try:
        return json.loads(r.stdout) if r.ok else None
    except json.JSONDecodeError:
        return None


def ensure_final_check(ctx: Context) -> None:
    host, opts, netrc = ctx.host, ctx.opts, ctx.paths.instructor_netrc
    if opts.dry_run:
        ctx.note("after a real run: services active, Prometheus targets up, a sample query")
        return
    units = [
        "jupyterhub",
        templates.EXPORTER_SERVICE,
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-node-exporter",
        "grafana-server",
    ]
    inactive = [u for u in units if not systemd.is_active(host, u)]
    if inactive:
        raise StepError(f"not running: {', '.join(inactive)} (see `journalctl -u {inactive[0]}`)")

    prom = f"http://{ctx.ports.address('prometheus')}"
    active: list[dict] = []
    down: list[str] = ["(no answer from Prometheus)"]
    for _ in range(12):  # targets turn up after their first scrape (15 s)
        targets = _get_json(host, netrc, f"{prom}/api/v1/targets", "state=active")
        if targets is not None:
            active = targets.get("data", {}).get("activeTargets", [])
            down = [t["labels"].get("job", "?") for t in active if t.get("health") != "up"]
            if not down:
                break
        host.sleep(5)
    if down:
        raise StepError(f"Prometheus targets down: {', '.join(down)} (see {prom}/targets)")
    answer = _get_json(host, netrc, f"{prom}/api/v1/query", "query=dlcourse_exporter_build_info")
    series = (answer or {}).get("data", {}).get("result", [])
    if not series:
        raise StepError(
            "Prometheus has no dlcourse_exporter_build_info: the exporter is not scraped"
        )
    ctx.note(f"{len(active)} Prometheus targets up; a sample query answered")


def summary(ctx: Context) -> list[str]:
    """Where everything is once installed: URLs, and the file of each credential (never its
    value)."""
    paths, opts, ports = ctx.paths, ctx.opts, ctx.ports
    hub = generated.public_url(opts)
    admins = "; ".join(f"admin {a}: password in {paths.hub_password(a)}" for a in opts.admins)
    return [
        f"JupyterHub:   {hub}/  ({admins})",
        f"Staff only (hub admins and the group {opts.staff_group!r}), through the hub's login:",
        f"  class status {hub}/services/{staff.STATUS_SERVICE}/",
        f"  Grafana      {grafana_config.root_url(hub, opts.grafana_port)}",
        f"Prometheus:   http://{ports.address('prometheus')}/ and Alertmanager "
        f"http://{ports.address('alertmanager')}/, on the server only, user instructor "
        f"(ssh -L {ports.prometheus}:{ports.address('prometheus')} {urlsplit(hub).hostname}; "
        f"as root: curl --netrc-file {paths.instructor_netrc}, amtool)",
        f"Credentials:  in {paths.etc} and {paths.monitoring_auth}, each readable by root and "
        "the one service it is for (docs/security.md)",
        *(packages_summary(ctx)[:1] if opts.packages else []),
        f"Install log:  {paths.log_file}",
    ]


def packages_summary(ctx: Context) -> list[str]:
    paths = ctx.paths
    return [
        f"Packages:     {paths.course_packages} (`dlcourse-install status` shows what is "
        "installed of it)",
        f"Rollback:     the snapshots in {paths.package_snapshots}/ (`pip install -r` one)",
        f"Install log:  {paths.log_file}",
    ]


# -- the checklist -------------------------------------------------------------------
STEPS = [
    Step("preflight", "Preflight checks", ensure_preflight, always=True),
    Step("base-packages", "Base packages", ensure_base_packages),
    Step(
        "nvidia-driver", "NVIDIA driver", ensure_nvidia_driver,
        lambda o: {"driver": o.driver, "ppa": o.ppa, "no_gpu": o.no_gpu}, parts=("driver",),
    ),
    Step(
        "tljh", "The Littlest JupyterHub", ensure_tljh,
        lambda o: {"version": o.tljh_version, "admins": o.admins}, parts=("tljh",),
    ),
    Step(
        "user-environment", "Users' environment (PyTorch, CUDA)", ensure_user_environment,
        lambda o: {"tensorflow": o.tensorflow, "torch": o.torch_spec, "no_gpu": o.no_gpu},
        parts=("user-environment",),
    ),
    Step(
        "course-packages", "Course packages", ensure_course_packages,
        lambda o: {"packages": o.packages.text if o.packages else None},
        parts=("course-packages",),
    ),
    Step(
        "course", "Course: admins, roster, limits", ensure_course,
        lambda o: {"admins": o.admins, "roster": [astuple(s) for s in o.roster],
                   "staff": o.staff_group,
                   "mem": o.mem_limit, "cpu": o.cpu_limit},
        parts=("course",),
    ),
    Step(
        "exporter", "dlcourse exporter", ensure_exporter,
        lambda o: {"source": o.source}, parts=("hub-services", "exporter"),
    ),
    Step(
        "monitoring", "Monitoring stack", ensure_monitoring,
        parts=("prometheus", "alertmanager", "node-exporter", "grafana-apt", "grafana"),
    ),
    Step("final-check", "Final check", ensure_final_check, always=True),
]  # fmt: skip


def _bullets(items: list[str]) -> str:
    return "\n".join(f"  - {i}" for i in items)
