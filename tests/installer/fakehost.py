"""A fake Ubuntu GPU server for the installer's tests.

Files are real, under a temporary root. Commands are recorded and answered from a small
model of the machine (packages, services, users, TLJH's config, the driver), so a second
run sees what the first one did. An unknown command fails the test: nothing slips by.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import uuid

from dlcourse_installer.catalogs import pytorch
from dlcourse_installer.checklist import nvidia_driver
from dlcourse_installer.machine import tljh, user_env
from dlcourse_installer.machine.host import CommandError, DryRunHost, FileMeta, Host, Result

UBUNTU_24_04 = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'
UBUNTU_22_04 = 'PRETTY_NAME="Ubuntu 22.04.5 LTS"\nID=ubuntu\nVERSION_ID="22.04"\n'
KERNEL = "6.8.0-45-generic"
# The branches ubuntu-drivers lists for this model's GPU, best first for a compute server
# (ubuntu-drivers-common's _cmp_gfx_alternatives_gpgpu: -server-open from 560 on).
LISTED_BRANCHES = ("580-server-open", "580-server", "580-open", "580",
                   "535-server", "535-server-open", "535", "535-open")  # fmt: skip
# prometheus-node-exporter in each release's archive (22.04's from packages.ubuntu.com; the
# others a model of a version >= 1.5).
NODE_EXPORTER = {"22.04": "1.3.1-1ubuntu0.22.04.3", "24.04": "1.7.0-1ubuntu0.3"}
# The upstream version each branch's packages carry in this model's archive.
DRIVER_VERSIONS = {"580": "580.65.06", "575": "575.57.08", "550": "550.163.01", "535": "535.247.01"}
# The newest torch on each of PyTorch's indexes (RELEASE.md's matrix, see
# installer/catalogs/pytorch.py).
# A model: PyPI has 2.14.1 and 2.15.0; which of them each index serves was not read.
TORCH_ON_INDEX = {"cu132": "2.14.1", "cu130": "2.14.1", "cu126": "2.14.1",
                  "cu128": "2.11.0", "cu124": "2.6.0", "cu121": "2.5.1", "cu118": "2.7.1",
                  "cpu": "2.14.1"}  # fmt: skip
# The architectures each index's torch has code for (PyTorch's CUDA support matrix; the old
# builds' a model), and the torchvision of each torch release (a model: one release each).
SMS_ON_INDEX = {"cu132": {75, 80, 86, 90, 100, 120}, "cu130": {75, 80, 86, 90, 100, 120},
                "cu128": {75, 80, 86, 90, 100, 120}, "cu126": {50, 60, 70, 75, 80, 86, 90},
                "cu124": {50, 60, 70, 75, 80, 86, 90}, "cu121": {50, 60, 70, 75, 80, 86, 90},
                "cu118": {50, 60, 70, 75, 80, 86, 90}}  # fmt: skip
COMPANION = {"torchvision": {"2.14.1": "0.29.2", "2.11.0": "0.26.0", "2.6.0": "0.21.0",
                             "2.5.1": "0.20.1", "2.7.1": "0.22.1"}}  # fmt: skip
# What PyPI and conda-forge have in this model, when a spec names no version: torchaudio is in
# maintenance, its newest 2.11.1 (requires torch>=2.11, no pin).
NEWEST = {"torch": "2.15.0", "torchaudio": "2.11.1"}
# What a fresh Ubuntu server image already has.
PREINSTALLED = {"python3", "curl", "git", "ubuntu-drivers-common", "linux-generic",
                "linux-image-generic", "linux-image-6.8.0-45-generic"}  # fmt: skip
# Where pip puts distributions in an environment (the dist-info folders releases.py reads).
SITE = "lib/python3.12/site-packages"
TLJH_ENV, EXPORTER_ENV = "/opt/tljh/hub", "/opt/dlcourse/exporter"


class FakeHost(Host):
    def __init__(self, root, *, gpu: bool = True, os_release: str = UBUNTU_24_04,
                 secure_boot: bool = False, driver_needs_reboot: bool = True,
                 gpus: int = 1, prebuilt: bool = True, nvswitch: bool = False,
                 compute_cap: tuple[int, int] = (8, 6)):  # fmt: skip
        super().__init__(root=str(root))
        self.commands: list[tuple[str, ...]] = []  # every command, queries included
        self.packages = set(PREINSTALLED)
        self.enabled: set[str] = set()
        self.active: set[str] = set()
        self.users = {"root"}
        self.owners: dict[str, tuple[str, str]] = {}
        self.driver_loaded = False
        self.driver_needs_reboot = driver_needs_reboot
        self.secure_boot = secure_boot
        self.prebuilt = prebuilt  # the archive has signed modules for KERNEL
        self.mok_enrolled = False  # the key DKMS signs with is enrolled (Secure Boot)
        self.compute_caps = [compute_cap] * gpus
        self.node_exporter = NODE_EXPORTER.get(
            re.search(r'VERSION_ID="([\d.]+)"', os_release)[1], NODE_EXPORTER["24.04"]
        )
        self.archive_packages = {"ubuntu-drivers-common", "prometheus-node-exporter"}
        self.unreachable: set[str] = set()  # hosts curl cannot reach
        self.archive = dict(DRIVER_VERSIONS)  # branch -> version its packages carry
        self.loaded_version: str | None = None  # of the module in the running kernel
        self.gpus_answering = gpus  # what nvidia-smi lists (a lost GPU: fewer)
        self.tljh_config: dict = {}
        self.builds = 0  # pip builds of dlcourse: each gives its installation a new RECORD
        self.hub_passwords: set[str] = set()  # accounts with an entry in TLJH's password store
        self.claimable_when_hub_started: list[str] = []  # admins without one at first start
        self.user_pip: dict[str, str] = {}  # the users' environment: pip name -> version
        self.user_conda: dict[str, str] = {}  # conda package -> version
        # Top-level modules of a distribution, where not its own name; and import errors.
        self.modules = {"scikit-learn": ["sklearn"], "gdal": ["osgeo"], "ffmpeg": []}
        self.import_errors: dict[str, str] = {}
        self.conda_needs_pytorch = {"torchmetrics"}  # conda-forge packages that need pytorch
        # The CUDA builds that compute on this server's GPUs (a GPU too new for a build's
        # code would fail under minor-version compatibility).
        self.torch_runs = {"cu132", "cu130", "cu128", "cu126", "cu124", "cu121", "cu118"}
        self.checked_as: list[str] = []  # accounts the torch check ran as
        self.persistence_mode = False
        self.fail: str | None = None  # a run command containing this text fails
        self.reboots = 0
        self.restarts: list[str] = []
        # Listening TCP sockets, as `ss -Hltnp` shows them: (address, port, pid, command).
        self.listening: list[tuple[str, int, int, str]] = []
        self.put("/etc/os-release", os_release)
        self.put("/proc/sys/kernel/random/boot_id", str(uuid.uuid4()))
        os.makedirs(self.local("/run/systemd/system"), exist_ok=True)
        for n in range(gpus if gpu else 0):
            self.put(f"/sys/bus/pci/devices/0000:{n + 1:02x}:00.0/vendor", "0x10de\n")
            self.put(f"/sys/bus/pci/devices/0000:{n + 1:02x}:00.0/class", "0x030000\n")
            self.put(f"/sys/bus/pci/devices/0000:{n + 1:02x}:00.1/vendor", "0x10de\n")  # HDMI audio
            self.put(f"/sys/bus/pci/devices/0000:{n + 1:02x}:00.1/class", "0x040300\n")
        if nvswitch:
            self.put("/sys/bus/pci/devices/0000:c1:00.0/vendor", "0x10de\n")
            self.put("/sys/bus/pci/devices/0000:c1:00.0/class", "0x068000\n")
        self.put("/sys/bus/pci/devices/0000:00:1f.0/vendor", "0x8086\n")
        self.put("/sys/bus/pci/devices/0000:00:1f.0/class", "0x060100\n")

    # -- fixtures ------------------------------------------------------------------
    def put(self, path: str, content: str) -> None:
        local = self.local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "w") as f:
            f.write(content)

    def listen(self, port: int, command: str, unit: str, address: str = "127.0.0.1") -> None:
        """A process of `unit` (a systemd unit) listening on address:port."""
        pid = 4000 + len(self.listening)
        self.listening.append((address, port, pid, command))
        self.put(f"/proc/{pid}/cgroup", f"0::/system.slice/{unit}\n")

    def reboot_now(self) -> None:
        """What a reboot changes: a new boot id, the new driver loaded, enabled units up."""
        self.reboots += 1
        self.put("/proc/sys/kernel/random/boot_id", str(uuid.uuid4()))
        self._load_driver()
        self.active = set(self.enabled)
        wants = "/etc/systemd/system/multi-user.target.d/dlcourse-nvidia-persistenced.conf"
        if self.driver_loaded and "nvidia-persistenced.service" in (self.read_text(wants) or ""):
            self.active.add("nvidia-persistenced")
        self.persistence_mode = (
            "nvidia-persistenced" in self.active and self._persistenced_turns_it_on()
        )

    def _persistenced_turns_it_on(self) -> bool:
        """Ubuntu's unit passes --no-persistence-mode (as reported); a drop-in replaces it."""
        dropin = "/etc/systemd/system/nvidia-persistenced.service.d/dlcourse.conf"
        return "--persistence-mode" in (self.read_text(dropin) or "")

    def _driver_branch(self) -> str | None:
        for p in sorted(self.packages):
            m = re.match(r"nvidia-(?:headless-no-dkms|driver|dkms)-(\d+)", p)
            if m:
                return m[1]
        return None

    def _load_driver(self) -> None:
        """The kernel loads signed prebuilt modules; DKMS-built ones only without Secure Boot."""
        branch = self._driver_branch()
        prebuilt = any(p.startswith("linux-modules-nvidia-") and p.endswith(KERNEL)
                       for p in self.packages)  # fmt: skip
        dkms = any(p.startswith("nvidia-dkms-") for p in self.packages)
        signed = not self.secure_boot or self.mok_enrolled
        self.driver_loaded = bool(branch) and (prebuilt or (dkms and signed))
        if self.driver_loaded:
            self.loaded_version = self.archive[branch]
            self.put("/sys/module/nvidia/version", self.loaded_version + "\n")
        else:
            shutil.rmtree(self.local("/sys/module/nvidia"), ignore_errors=True)

    @property
    def plugin_installed(self) -> bool:
        return self.distribution(TLJH_ENV, "dlcourse") is not None

    def distribution(self, prefix: str, name: str) -> str | None:
        """The version of a distribution in the environment at prefix (its dist-info)."""
        found = self.glob(f"{prefix}/{SITE}/{name}-*.dist-info")
        if not found:
            return None
        return found[0].rsplit("/", 1)[1].removeprefix(f"{name}-").removesuffix(".dist-info")

    @property
    def torch(self) -> str | None:
        return self.user_pip.get("torch")

    @property
    def runs(self) -> list[str]:
        return [a for a in self.actions if a.startswith("run ")]

    # -- Host ----------------------------------------------------------------------
    def query(self, argv, *, env=None, timeout=300) -> Result:
        self.commands.append(tuple(argv))
        return self._answer(list(argv), env or {})

    def run(self, argv, *, env=None, input=None) -> Result:
        self.commands.append(tuple(argv))
        self._record(f"run {shlex.join(argv)}")
        if self.fail and self.fail in shlex.join(argv):
            raise CommandError(Result(tuple(argv), 1, "", f"simulated failure of {argv[0]}"))
        result = self._answer(list(argv), env or {})
        if not result.ok:
            raise CommandError(result)
        return result

    def sleep(self, seconds: float) -> None:
        pass

    def _chown(self, local: str, owner: str, group: str) -> None:
        self.owners[local] = (owner, group)

    def file_meta(self, path: str) -> FileMeta | None:
        local = self.local(path)
        if not os.path.exists(local):
            return None
        owner, group = self.owners.get(local, ("root", "root"))
        return FileMeta(os.stat(local).st_mode & 0o7777, owner, group)

    # -- the machine -----------------------------------------------------------------
    def _answer(self, argv: list[str], env: dict) -> Result:  # noqa: C901 - a dispatch table
        ok = Result(tuple(argv), 0, "", "")
        cmd = os.path.basename(argv[0])
        args = argv[1:]

        def out(text: str, rc: int = 0) -> Result:
            return Result(tuple(argv), rc, text, "" if rc == 0 else text)

        if cmd == "id":
            return out("0\n")
        if cmd == "hostname":
            return out("gpu-server.example.edu\n")
        if cmd == "df":
            return out("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
                       "/dev/sda1 500000000 1000 400000000 1% /\n")  # fmt: skip
        if cmd == "uname":
            return out("x86_64\n" if args == ["-m"] else f"{KERNEL}\n")
        if cmd == "hostname":
            return out("gpu-server.example.edu\n")
        if cmd == "ss":
            assert args == ["-Hltnp"], args
            return out("".join(
                f'LISTEN 0      4096   {address}:{port}   0.0.0.0:*    '
                f'users:(("{command}",pid={pid},fd=3))\n'
                for address, port, pid, command in self.listening
            ))  # fmt: skip
        if cmd == "mokutil":
            return out(f"SecureBoot {'enabled' if self.secure_boot else 'disabled'}\n")
        if cmd == "curl":
            return self._curl(argv, args)
        if cmd == "dpkg-query":
            fmt, names = args[1], args[2:]
            if fmt == "-f=${Status}":
                have = names[0] in self.packages
                return out("install ok installed" if have else "", 0 if have else 1)
            if fmt == "-f=${Version}" and names[0] == "prometheus-node-exporter":
                have = names[0] in self.packages
                return out(self.node_exporter if have else "", 0 if have else 1)
            if fmt == "-f=${Version}":
                m = re.search(r"-(\d{3})(-|$)", names[0])
                have = names[0] in self.packages and m
                return out(f"{self.archive[m[1]]}-0ubuntu1" if have else "", 0 if have else 1)
            hits = sorted({p for p in self.packages for n in names if fnmatch.fnmatch(p, n)})
            return out("".join(f"{p} install ok installed\n" for p in hits))
        if cmd == "apt-get":
            assert env.get("DEBIAN_FRONTEND") == "noninteractive", argv
            names = [a for a in args[1:] if not a.startswith("-")]
            if args[0] == "install":
                self.packages |= set(names)
                if any(n.startswith("nvidia-driver-") for n in names):
                    self.packages.add(f"nvidia-dkms-{self._driver_branch()}")  # the PPA's
                    if not self.driver_needs_reboot:
                        self._load_driver()
                for n in names:
                    if n in ("prometheus", "grafana"):
                        self.users.add(n)
            elif args[0] == "purge":
                gone = {p for p in self.packages for n in names if fnmatch.fnmatch(p, n)}
                self.packages -= gone  # the module stays loaded until the reboot
            return ok
        if cmd == "add-apt-repository":
            self.put("/etc/apt/sources.list.d/graphics-drivers-ubuntu-ppa-noble.sources", "x\n")
            return ok
        if cmd == "ubuntu-drivers":
            return self._ubuntu_drivers(args, env)
        if cmd == "apt-cache":
            assert args[:2] == ["show", "--no-all-versions"], args
            if args[2] == "prometheus-node-exporter":
                return out(f"Package: {args[2]}\nVersion: {self.node_exporter}\n")
            known = args[2] in self.archive_packages or (
                self.prebuilt
                and args[2].startswith("linux-modules-nvidia-")
                and args[2].endswith(KERNEL)
            )
            return (
                out(f"Package: {args[2]}\nVersion: 1.0\n")
                if known
                else out("E: No packages found", 100)
            )
        if cmd == "nvidia-smi":
            if not self.driver_loaded:
                return out(
                    "NVIDIA-SMI has failed because it couldn't communicate with the driver", 9
                )
            version = self.loaded_version
            if args[0] == "--query-gpu=pci.bus_id":
                return out(
                    "".join(f"00000000:{n + 1:02X}:00.0\n" for n in range(self.gpus_answering))
                )
            if args[0] == "--query-gpu=compute_cap":
                return out("".join(f"{a}.{b}\n" for a, b in self.compute_caps))
            if args[0] == "--query-gpu=persistence_mode":
                mode = "Enabled" if self.persistence_mode else "Disabled"
                return out(f"{mode}\n" * self.gpus_answering)
            assert args[0] == "--query-gpu=driver_version", args
            return out(f"{version}\n" * self.gpus_answering)
        if cmd == "update-initramfs":
            return ok
        if cmd == "getent":  # every account here has its own group
            return ok if args[1] in self.users else out("", 2)
        if cmd == "useradd":
            self.users.add(args[-1])
            return ok
        if cmd == "userdel":
            self.users.discard(args[-1])
            return ok
        if cmd == "runuser":
            account, command = args[1], args[3:]
            assert args[0] == "-u" and args[2] == "--" and account in self.users, args
            assert account != "root" and command[0].endswith("/user/bin/python"), args
            self.checked_as.append(account)
            return self._user_python(command[1:], env, as_student=True)
        if cmd == "systemctl":
            return self._systemctl(args)
        if cmd == "tljh-config":
            return self._tljh_config(args)
        if argv[0] == "/usr/bin/python3" and args[:2] == ["-m", "venv"]:
            self.put(f"{args[2]}/bin/python", "")
            return ok
        if argv[0] == "/usr/bin/python3" and args[0] == "-c":
            assert args[1] == nvidia_driver.NVML_CHECK
            if not self.driver_loaded:
                return out("nvmlInit failed", 1)
            return out(f"{self.loaded_version} {self.gpus_answering}\n")
        if argv[0] == "/usr/bin/python3" and "tljh-bootstrap" in args[0]:
            return self._tljh_bootstrap(args, env)
        if argv[0].endswith("/hub/bin/python3"):
            if args[:2] == ["-m", tljh.PASSWORDS]:
                return self._hub_passwords(args[2:])
            if args[0] == "-c":
                assert args[1] == tljh._SHOW
                return out(json.dumps(self.tljh_config))
            assert args[:3] == ["-m", "pip", "install"], args
            self._pip_dlcourse(argv[0].removesuffix("/bin/python3"), args[3:])
            return ok
        if argv[0].endswith("/user/bin/python"):
            if not self.exists(argv[0]):
                return out(f"{argv[0]}: No such file or directory", 127)
            return self._user_python(args, env)
        if argv[0].endswith("/user/bin/conda") and args[:2] == ["install", "--yes"]:
            return self._conda_install(argv)
        if argv[0].endswith("/exporter/bin/python") and args[:3] == ["-m", "pip", "install"]:
            self._pip_dlcourse(argv[0].removesuffix("/bin/python"), args[3:])
            self.put(argv[0].replace("/python", "/dlcourse-exporter"), "")
            return ok
        raise AssertionError(f"the fake host does not know `{shlex.join(argv)}`")

    def _pip_dlcourse(self, prefix: str, args: list[str]) -> None:
        """pip installing dlcourse: a release of the installed version is kept, unless it
        comes from a local folder or --force-reinstall says so (pip's resolver,
        resolution/resolvelib/resolver.py)."""
        spec = args[-1]
        version = spec.partition("==")[2] if spec.startswith("dlcourse==") else "0.1.0"
        folder = os.path.isdir(spec)  # a checkout on this machine, not under the fake root
        if self.distribution(prefix, "dlcourse") == version and not (
            folder or "--force-reinstall" in args
        ):
            return
        self.builds += 1
        self._dist_info(prefix, "dlcourse", version, f"from {spec}, build {self.builds}\n")

    def _dist_info(self, prefix: str, name: str, version: str, record: str) -> None:
        for old in self.glob(f"{prefix}/{SITE}/{name}-*.dist-info"):
            shutil.rmtree(self.local(old))
        self.put(f"{prefix}/{SITE}/{name}-{version}.dist-info/RECORD", record)

    def _ubuntu_drivers(self, args, env) -> Result:
        """ubuntu-drivers-common's behaviour: prebuilt modules unless --include-dkms, and exit
        0 even when it found nothing to install; `list` prints a branch whose modules need
        DKMS only with --include-dkms, and with --recommended only the first, as "package
        modules"."""
        if args[0] == "list":
            assert args[1] == "--gpgpu" and set(args[2:]) <= {"--include-dkms", "--recommended"}
            lines = []
            for flavour in LISTED_BRANCHES:
                modules = (f"linux-modules-nvidia-{flavour}-generic" if self.prebuilt
                           else f"nvidia-dkms-{flavour}")  # fmt: skip
                if "dkms" in modules and "--include-dkms" not in args:
                    continue
                if "--recommended" in args:
                    lines = [f"nvidia-driver-{flavour} {modules}"]
                    break
                lines.append(f"nvidia-driver-{flavour}, (kernel modules provided by {modules})")
            return Result(("ubuntu-drivers", *args), 0, "".join(f"{x}\n" for x in lines))
        assert args[0] == "install" and env.get("DEBIAN_FRONTEND") == "noninteractive", args
        flavour = args[-1].removeprefix("nvidia:")
        # The desktop path installs the full driver with its X.org and graphics recommends.
        desktop = {"nvidia-driver-" + flavour, f"xserver-xorg-video-nvidia-{flavour}"}
        userspace = {"nvidia-headless-no-dkms-" + flavour} if "--gpgpu" in args else desktop
        if self.prebuilt:
            self.packages |= {*userspace, f"linux-modules-nvidia-{flavour}-generic",
                              f"linux-modules-nvidia-{flavour}-{KERNEL}"}  # fmt: skip
        elif "--include-dkms" in args:
            self.packages |= {*userspace, f"nvidia-dkms-{flavour}"}
        if not self.driver_needs_reboot:
            self._load_driver()
        return Result(("ubuntu-drivers", *args), 0, "All the available drivers are installed.")

    def _curl(self, argv, args) -> Result:
        if "-o" in args and args[args.index("-o") + 1] != "/dev/null":
            self.put(args[args.index("-o") + 1], "# downloaded\n")
            return Result(tuple(argv), 0)
        url = args[-1]
        if any(f"://{host}/" in url for host in self.unreachable):
            host = url.split("/")[2]
            return Result(tuple(argv), 6, "", f"curl: (6) Could not resolve host: {host}")
        if url.endswith("/api/v1/targets"):
            jobs = {"prometheus": "prometheus", "node": "prometheus-node-exporter",
                    "dlcourse": "dlcourse-exporter", "jupyterhub": "jupyterhub",
                    "alertmanager": "prometheus-alertmanager"}  # fmt: skip
            targets = [
                {"labels": {"job": job}, "health": "up" if unit in self.active else "down"}
                for job, unit in jobs.items()
            ]
            return Result(tuple(argv), 0, json.dumps({"data": {"activeTargets": targets}}))
        if url.endswith("/hub/api/"):
            up = "jupyterhub" in self.active
            return Result(tuple(argv), 0 if up else 7, "", "" if up else "Connection refused")
        if url.endswith("/api/v1/query"):
            series = [{"metric": {"version": "0.1.0"}, "value": [0, "1"]}]
            return Result(tuple(argv), 0, json.dumps({"data": {"result": series}}))
        return Result(tuple(argv), 0)  # preflight's reachability check

    def _systemctl(self, args) -> Result:
        verb = args[0]
        units = [a.removesuffix(".service") for a in args[1:] if not a.startswith("-")]
        ok = Result(("systemctl", *args), 0)
        if verb == "is-active":
            return ok if units[0] in self.active else Result(("systemctl", *args), 3)
        if verb == "is-enabled":
            return ok if units[0] in self.enabled else Result(("systemctl", *args), 1)
        if verb == "enable":
            self.enabled.add(units[0])
            if "--now" in args:
                self.active.add(units[0])
        elif verb == "disable":
            self.enabled.discard(units[0])
        elif verb == "restart":
            self.active.add(units[0])
            self.restarts.append(units[0])
            if units[0] == "nvidia-persistenced":
                self.persistence_mode = self._persistenced_turns_it_on()
        elif verb == "reboot":
            pass  # the test calls reboot_now(): the installer's process would end here
        elif verb != "daemon-reload":
            raise AssertionError(f"systemctl {verb}?")
        return ok

    def _tljh_bootstrap(self, args, env) -> Result:
        """TLJH 2.0.0's order: install --plugin, run its tljh_config_post_install hook, set
        the admins, start the hub (tljh/installer.py main())."""
        prefix = env["TLJH_INSTALL_PREFIX"]
        for path in ("hub/bin/python3", "hub/bin/tljh-config", "user/bin/python"):
            self.put(f"{prefix}/{path}", "")
        version = args[args.index("--version") + 1] if "--version" in args else "2.0.0"
        self._dist_info(f"{prefix}/hub", "the_littlest_jupyterhub", version, "tljh\n")
        if "--plugin" in args:  # TLJH installs plugins with --upgrade (tljh/installer.py)
            self._pip_dlcourse(f"{prefix}/hub", ["--upgrade", args[args.index("--plugin") + 1]])
            self._seed(f"{env['DLCOURSE_ETC']}/hub-passwords")  # dlcourse's hook
        admins = [args[i + 1] for i, a in enumerate(args) if a == "--admin"]
        self.tljh_config.setdefault("users", {})["admin"] = admins
        self.claimable_when_hub_started = [a for a in admins if a not in self.hub_passwords]
        self.enabled.add("jupyterhub")
        self.active.add("jupyterhub")
        return Result(("bootstrap",), 0)

    def _seed(self, passwords_dir: str) -> list[str]:
        names = [os.path.basename(p) for p in self.glob(f"{passwords_dir}/*")]
        new = [n for n in names if n not in self.hub_passwords]
        self.hub_passwords |= set(new)
        return new

    def _hub_passwords(self, args) -> Result:
        passwords_dir, _store, *flags = args
        if flags == ["--missing"]:
            names = [os.path.basename(p) for p in self.glob(f"{passwords_dir}/*")]
            missing = [n for n in names if n not in self.hub_passwords]
            return Result(tuple(args), 0, "\n".join(missing))
        self._seed(passwords_dir)
        return Result(tuple(args), 0)

    def _tljh_config(self, args) -> Result:
        verb = args[0]
        if verb in ("set", "add-item"):
            node = self.tljh_config
            *parents, leaf = args[1].split(".")
            for part in parents:
                node = node.setdefault(part, {})
            if verb == "set":
                node[leaf] = args[2]
            else:
                node.setdefault(leaf, []).append(args[2])
        else:
            raise AssertionError(f"tljh-config {args}?")
        return Result(("tljh-config", *args), 0)

    def _user_python(self, args, env, as_student=False) -> Result:  # noqa: C901 - dispatch
        ok = Result(tuple(args), 0)
        if args[:2] == ["-c", user_env.probe_source()]:
            return self._probe(args[2], json.loads(args[3]), as_student)
        if args[:3] == ["-m", "pip", "show"]:
            return ok if args[-1] in self.user_pip else Result(tuple(args), 1)
        if args[:4] == ["-m", "pip", "list", "--format=freeze"]:
            return Result(tuple(args), 0, "".join(f"{n}=={v}\n" for n, v in self.user_pip.items()))
        if args[:3] == ["-m", "pip", "install"]:
            return self._pip_install(args[3:], env)
        if args[0] == "-c" and args[1] == pytorch.VERSION:
            return Result(tuple(args), 0, f"{self.torch}\n") if self.torch else Result((), 1)
        if args[0] == "-c" and args[1] == pytorch.CHECK:
            tag = (self.torch or "").partition("+")[2]
            if not (self.driver_loaded and tag in self.torch_runs and self._has_code_for(tag)):
                error = "RuntimeError: CUDA error: no kernel image is available for execution"
                return Result(tuple(args), 1, "", f"Traceback ...\n{error}\n")
            return Result(tuple(args), 0, f"{self.torch} {self.gpus_answering}\n")
        raise AssertionError(f"user python {args}?")

    def _has_code_for(self, tag: str) -> bool:
        """A cubin runs on GPUs of its major version and at least its minor one."""
        sms = SMS_ON_INDEX[tag]
        return all(any(sm // 10 == a and sm % 10 <= b for sm in sms) for a, b in self.compute_caps)

    def _pip_constraints(self, args, env) -> dict[str, str]:
        """name -> pinned version, from -c and, unless PIP_CONSTRAINT overrides it, pip.conf."""
        files = [args[i + 1] for i, a in enumerate(args) if a in ("-c", "--constraint")]
        conf = self.read_text("/opt/tljh/user/pip.conf")
        if conf and "PIP_CONSTRAINT" not in env:
            files.append(conf.split("constraint = ", 1)[1].strip())
        pins = {}
        for path in files:
            text = self.read_text(path)
            if text is None:
                raise FileNotFoundError(path)  # pip: "Could not open requirements file"
            for line in text.splitlines():
                if "==" in line and not line.startswith("#"):
                    name, _, version = line.partition("==")
                    pins[name] = version
        return pins

    def _pip_install(self, args, env) -> Result:
        """PyPI and PyTorch's indexes, modelled: a spec's == version, else the newest; the
        constraints hold, as pip's resolver holds them."""
        try:
            pins = self._pip_constraints(args, env)
        except FileNotFoundError as missing:
            return Result(tuple(args), 1, "", f"ERROR: Could not open requirements file: {missing}")
        index = (
            args[args.index("--index-url") + 1].rsplit("/", 1)[1] if "--index-url" in args else None
        )
        options_with_value = ("-c", "--constraint", "--index-url")
        specs = [a for i, a in enumerate(args) if not a.startswith("-")
                 and (i == 0 or args[i - 1] not in options_with_value)]  # fmt: skip
        wanted = {}
        for spec in specs:
            name, _, version = re.sub(r"\[.*?\]", "", spec).partition("==")
            if index and name in ("torch", *COMPANION) and not version:
                torch = TORCH_ON_INDEX[index]
                version = f"{torch if name == 'torch' else COMPANION[name][torch]}+{index}"
            version = version or pins.get(name) or NEWEST.get(name, "1.0")
            if name in pins and pins[name] != version:
                conflict = f"torch: the user requested {spec}, constraint {name}=={pins[name]}"
                return Result(tuple(args), 1, "", f"{conflict}\nERROR: ResolutionImpossible")
            wanted[name] = version
        if "--force-reinstall" not in args:
            wanted = {n: v for n, v in wanted.items() if self.user_pip.get(n) != v}
        self.user_pip.update(wanted)
        return Result(tuple(args), 0)

    def _conda_install(self, argv) -> Result:
        pinned = self.read_text("/opt/tljh/user/conda-meta/pinned") or ""
        for spec in argv[argv.index("conda-forge") + 1 :]:
            name, _, version = spec.partition("=")
            if name in self.conda_needs_pytorch and "pytorch ==" in pinned:
                return Result(tuple(argv), 1, "", f"{name} requires pytorch, pin-1 conflicts")
            self.user_conda[name] = version.lstrip("=") or "1.0"
        return Result(tuple(argv), 0)

    def _probe(self, command, listed, as_student) -> Result:
        rows = []
        for p in listed:
            have = (self.user_pip if p["kind"] == "pip" else self.user_conda).get(p["name"])
            row = {"name": p["name"], "kind": p["kind"]}
            if command == "installed":
                _, _, wanted = p["spec"].partition("==")
                row |= {"version": have, "satisfied": have is not None and wanted in ("", have)}
            else:
                assert as_student, "imports are checked as a student"
                modules = p["modules"] or self.modules.get(p["name"], [p["name"].replace("-", "_")])
                error = self.import_errors.get(p["name"]) if have else "not installed"
                row |= {"modules": modules, "error": error}
            rows.append(json.dumps(row))
        return Result(("probe",), 0, "".join(f"{r}\n" for r in rows))


class FakeDryHost(FakeHost):
    """--dry-run over the fake server: looks at it, prints what it would do, changes nothing."""

    run = DryRunHost.run
    exists = DryRunHost.exists
    write_file = DryRunHost.write_file
    set_attrs = DryRunHost.set_attrs
    make_dirs = DryRunHost.make_dirs
    remove = DryRunHost.remove
    _plan = DryRunHost._plan
