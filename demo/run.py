"""`make demo`: a deep-learning class on simulated GPUs, with everything else real.

A real JupyterHub with TLJH's login (the first login sets a password; the instructor's is
pre-set) with four students in two course sections, their servers and notebook kernels
running for real (as root: as real Linux accounts, as on TLJH), two stand-in GPUs whose
processes are those kernels, the exporter attributing them to the students, Prometheus with
the course's recording and alert rules, Alertmanager, and node_exporter. One student's kernel
crashes every few minutes, so the crash metrics and alerts have something to show; another
holds GPU memory idle, so the GPU idle culler (on, with demo thresholds) warns and then shuts
his kernel down, and he opens it again. Each student has their own page (my-gpu). Ctrl-C
(or SIGTERM, or closing the terminal) stops it all and removes what it created; a demo that
could not (killed, crashed) is cleaned up by the next one (demo/lifecycle.py).

The protections are the installed server's (docs/security.md): the hub's staff snippet,
status page and exporter token come from `dlcourse-install render`; the instructor alone
sees the class-status page; Prometheus, Alertmanager and node_exporter ask for basic auth.
The demo prints its own credentials: they protect nothing real.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lifecycle import Refusal, claim_workdir, shield_cleanup, stop_like_ctrl_c  # demo/

from dlcourse_installer.rendered.students import CULLER_SERVICE, STUDENT_SERVICE
from dlcourse_testing.alerting import AlertingStack, find_tool
from dlcourse_testing.alerting import Process as StackProcess
from dlcourse_testing.exporter import RunningExporter, free_port
from dlcourse_testing.hub import DEFAULT_SERVICES, LiveHub, tljh_authenticator
from dlcourse_testing.leftovers import Ledger
from dlcourse_testing.rendered import Site, render_site
from dlcourse_testing.student_course import running
from fakenvml import Gpu, Process, Scenario, build_library

REPO = Path(__file__).resolve().parent.parent

GIB = 1024**3
STUDENTS = {"ada": "monday", "grace": "monday", "alan": "thursday", "katherine": "thursday"}
CRASHING_STUDENT = "katherine"
CRASH_EVERY_SECONDS = 180
IDLE_STUDENT = "alan"
# TLJH's config.yaml as a lecturer would set it (`tljh-config set dlcourse.gpu_idle_*`), with
# minutes a demo can wait for: warned after 2 min at 0 %, shut down 1 min later.
IDLE_SETTINGS = {"gpu_idle_cull": True, "gpu_idle_warn": 2, "gpu_idle_grace": 1}
REOPEN_AFTER_SECONDS = 60
DEMO_OVERRIDES = Path(__file__).with_name("alert-overrides.json")


class Demo:
    def __init__(self, workdir: Path, user_env: Path, ledger: Ledger, prefix: str = "") -> None:
        self.dir = workdir
        self.user_env = user_env
        self.ledger = ledger  # what this demo started, for the next one if this one is killed
        self.prefix = prefix  # of account names: tests run demos beside each other
        self.hub: LiveHub | None = None
        self.stack: AlertingStack | None = None
        self.node: StackProcess | None = None
        self.seen_alerts = 0
        self.exporter: RunningExporter | None = None
        self.kernels: dict[str, list[int]] = {}
        self.site: Site | None = None
        self.instructor = prefix + "teacher"

    # --- the class ------------------------------------------------------------------

    def configure_hub(self) -> None:
        services = {**DEFAULT_SERVICES, "prometheus": ("read:metrics",)}
        self.hub = LiveHub(self.dir / "hub", self.user_env, services=services)
        # The installed server's hub configuration: the staff snippet (status page, staff
        # role) and its secrets, rendered on this hub's ports. Grafana is not in the demo:
        # on its own port, it gets no route and no link.
        self.exporter_port = free_port()
        self.prometheus_port = free_port()
        self.site = render_site(
            self.dir / "site", "--admin", self.instructor, "--grafana-port", "3000",
            "--domain", self.hub.public_url, relocate=True,
            ports={"hub": self.hub.hub_port, "exporter": self.exporter_port,
                   "status": free_port(), "student": free_port(),
                   "prometheus": self.prometheus_port},
        )  # fmt: skip
        # TLJH's config.yaml (relocated): the hub's public port, where the culler reaches the
        # students' servers, and the idle settings. JSON is YAML.
        config_yaml = self.site.local("/opt/tljh/config/config.yaml")
        config_yaml.parent.mkdir(parents=True, exist_ok=True)
        config_yaml.write_text(
            json.dumps({"http": {"port": self.hub.public_port}, "dlcourse": IDLE_SETTINGS})
        )
        store = self.dir / "state" / "passwords.dbm"
        subprocess.run(  # the instructor's password, as the installer pre-sets it
            [sys.executable, "-m", "dlcourse_installer.hub.hub_passwords",
             str(self.site.local("/etc/dlcourse/hub-passwords")), str(store)],
            check=True, capture_output=True,
        )  # fmt: skip
        self.hub.add_config(tljh_authenticator(store))  # the users added below may log in
        for snippet in ("dlcourse-staff.py", "dlcourse-students.py"):
            self.hub.add_config(self.site.read(f"/opt/tljh/config/jupyterhub_config.d/{snippet}"))

    def start_class(self) -> None:
        self.hub.start()
        self.hub.wait_for_service("dlcourse-status")
        self.hub.wait_for_service(STUDENT_SERVICE)
        for service in ("dlcourse-status", STUDENT_SERVICE, CULLER_SERVICE):
            for pid in self.hub.children(f"JUPYTERHUB_SERVICE_NAME={service}"):
                self.ledger.record(pid, service)
        self.ledger.record(self.hub.process.pid, "jupyterhub")
        self.ledger.record(int((self.hub.dir / "proxy.pid").read_text()), "proxy")
        for name, section in STUDENTS.items():
            self.hub.add_user(self.prefix + name, groups=[section])
        self.hub.add_user(self.instructor, admin=True)
        for name in STUDENTS:
            server = self.hub.start_server(self.prefix + name)
            self.ledger.record(server["state"]["pid"], f"server of {self.prefix + name}")
            self.start_kernel(name)
        self.start_kernel("ada")  # ada has two notebooks open

    def start_kernel(self, user: str) -> None:
        kernel_id = self.hub.start_kernel(self.prefix + user)
        pid = self.hub.kernel_pid(self.prefix + user, kernel_id)
        self.ledger.record(pid, f"kernel of {self.prefix + user}")
        self.kernels.setdefault(user, []).append(pid)

    def living_kernels(self, user: str) -> list[int]:
        """Its kernels that still run (the culler may have shut one down): the driver frees
        a dead process's memory, so the stand-in GPUs forget it too."""
        alive = [pid for pid in self.kernels.get(user, []) if running(pid)]
        self.kernels[user] = alive
        return alive

    def reopen_idle_notebook(self) -> None:
        """Alan's kernel was shut down for holding GPU memory idle; a minute later he opens
        the notebook again (and leaves it idle again)."""
        print(f"demo: {IDLE_STUDENT} opens his notebook again")
        self.start_kernel(IDLE_STUDENT)

    def scenario(self, t: float) -> Scenario:
        """GPU 0: ada and grace train in waves; GPU 1: alan hogs memory idle, katherine trains."""
        for user in self.kernels:
            self.living_kernels(user)
        wave = 0.5 + 0.5 * math.sin(t / 60)
        ada_util = int(40 + 50 * wave)
        grace_util = int(30 * (1 - wave))
        gpu0 = [
            Process(pid, 6 * GIB, ada_util // max(1, len(self.kernels["ada"])))
            for pid in self.kernels["ada"]
        ]
        gpu0 += [Process(pid, 4 * GIB, grace_util) for pid in self.kernels["grace"]]
        gpu1 = [Process(pid, 20 * GIB, 0) for pid in self.kernels["alan"]]
        gpu1 += [Process(pid, 8 * GIB, 70) for pid in self.kernels[CRASHING_STUDENT]]
        used0 = sum(p.used_memory for p in gpu0) + GIB
        used1 = sum(p.used_memory for p in gpu1) + GIB
        return Scenario(
            gpus=[
                Gpu(
                    name="NVIDIA A100-SXM4-40GB",
                    memory_total=40 * GIB,
                    utilization_gpu=min(100, ada_util + grace_util),
                    memory_used=used0,
                    temperature=45 + int(30 * wave),
                    power_mw=90_000 + int(250_000 * wave),
                    processes=gpu0,
                ),
                Gpu(
                    name="NVIDIA A100-SXM4-40GB",
                    memory_total=40 * GIB,
                    utilization_gpu=70,
                    memory_used=used1,
                    temperature=68,
                    power_mw=260_000,
                    processes=gpu1,
                ),
            ]
        )

    def crash_a_kernel(self) -> None:
        """Katherine's notebook segfaults (say, a bad CUDA extension); she opens a new one."""
        pid = self.kernels[CRASHING_STUDENT].pop(0)
        print(f"demo: {CRASHING_STUDENT}'s kernel (pid {pid}) crashes with SIGSEGV")
        os.kill(pid, signal.SIGSEGV)
        time.sleep(3)
        self.start_kernel(CRASHING_STUDENT)

    # --- the monitoring stack ----------------------------------------------------------

    def start_exporter(self, nvml_dir: Path, scenario: Path) -> None:
        self.exporter = RunningExporter(
            [
                f"--web.token-file={self.site.local('/etc/dlcourse/exporter-token')}",
                f"--web.culler-token-file={self.site.local('/etc/dlcourse/exporter-culler-token')}",
                "--collection.interval=5",
                f"--hub.url={self.hub.api_url}",
                f"--hub.token-file={self.hub.token_file()}",
                "--hub.interval=5",
                *self.hub.attribution_args(),  # how its spawner names the students' accounts
            ],
            nvml_dir=nvml_dir,
            scenario=scenario,
            log_path=self.dir / "exporter.log",
            port=self.exporter_port,
        )
        self.ledger.record(self.exporter.process.pid, "exporter")

    def start_monitoring(self) -> None:
        """Prometheus and Alertmanager with the shipped configuration and rules (demo
        thresholds: alerts within minutes), alerts delivered to a local webhook, then
        node_exporter; all three behind the same basic auth."""
        node_port = free_port()
        targets = {
            "dlcourse": [self.exporter.url.removeprefix("http://")],
            "jupyterhub": [self.hub.public_url.removeprefix("http://")],
            "node": [f"127.0.0.1:{node_port}"],
        }
        self.stack = AlertingStack(
            self.dir / "stack",
            targets,
            overrides=DEMO_OVERRIDES,
            hub_token_file=self.hub.token_file("prometheus"),
            interval="5s",
            exporter_token_file=self.site.local("/etc/dlcourse/exporter-token"),
            # The students' page reads their GPU-hours as the installed server's does.
            readers={STUDENT_SERVICE: self.site.read(self.student_password_file).strip()},
            prometheus_port=self.prometheus_port,
        ).__enter__()
        self.node = StackProcess(
            "node_exporter",
            [
                find_tool("prometheus-node-exporter", "node_exporter"),
                f"--web.listen-address=127.0.0.1:{node_port}",
                f"--web.config.file={self.stack.web_config}",
            ],
            self.dir,
        )
        for process in [self.node, *self.stack.processes]:
            self.ledger.record(process.popen.pid, process.name)

    @property
    def student_password_file(self) -> str:
        return f"/etc/dlcourse/monitoring/{STUDENT_SERVICE}.password"

    def instructor_password(self) -> str:
        return self.site.read(f"/etc/dlcourse/hub-passwords/{self.instructor}").strip()

    def new_alerts(self) -> list[str]:
        """Alerts the webhook received since the last call, one line each."""
        received = self.stack.webhook.alerts()
        fresh, self.seen_alerts = received[self.seen_alerts :], len(received)
        return [
            f"{a['status']:8} {a['labels'].get('severity', ''):8} {a['labels']['alertname']}: "
            f"{a['annotations'].get('description', '')}"
            for a in fresh
        ]

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()
        if self.node is not None:
            self.node.stop()
        if self.exporter is not None:
            self.exporter.stop()
        if self.hub is not None:
            self.hub.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo")
    parser.add_argument(
        "--user-env",
        type=Path,
        default=Path(os.environ.get("DLCOURSE_USERENV", "/opt/dlcourse-dev/user-env")),
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)"
    )
    parser.add_argument(
        "--account-prefix",
        default="",
        help="put before the demo's user names (tests use a random one: runs share machines)",
    )
    args = parser.parse_args()
    if not (args.user_env / "bin" / "jupyterhub-singleuser").exists():
        args.user_env = Path(sys.prefix)
    users = [args.account_prefix + name for name in [*STUDENTS, "teacher"]]
    try:
        # As root the users are Linux accounts: those names must be free, or leftovers.
        ledger = claim_workdir(args.workdir, users if os.geteuid() == 0 else None)
    except Refusal as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2

    demo = Demo(args.workdir, args.user_env, ledger, args.account_prefix)
    stop_like_ctrl_c(args.workdir)
    try:
        nvml_dir = build_library(args.workdir / "nvml")
        demo.configure_hub()
        # The exporter first, on the port the hub's configuration names, before the kernels
        # take ports of their own; its hub collector catches up once the hub is there.
        scenario_path = args.workdir / "gpus.scn"
        Scenario(gpus=[Gpu(memory_total=40 * GIB), Gpu(memory_total=40 * GIB)]).write(scenario_path)
        demo.start_exporter(nvml_dir, scenario_path)
        print("demo: starting JupyterHub and four students' servers and kernels ...")
        demo.start_class()
        started = time.monotonic()
        demo.scenario(0).write(scenario_path)
        demo.start_monitoring()
        user, password = demo.stack.auth
        students = ", ".join(users[:-1])
        print(
            f"""
dlcourse demo is running (Ctrl-C to stop). Demo credentials, printed because they protect
nothing real; per-student data is for staff only, as on an installed server:
  JupyterHub          {demo.hub.public_url}/
                      instructor: {demo.instructor} / {demo.instructor_password()}
                      students {students}: the first login sets the password
  class status page   {demo.hub.public_url}/services/dlcourse-status/  (log in as
                      {demo.instructor}; a student gets 403)
  a student's page    {demo.hub.public_url}/services/{STUDENT_SERVICE}/  (log in as a student:
                      their own GPU, GPU-hours, kernels, idle warnings, kernel deaths)
  Prometheus          {demo.stack.prometheus_url}/graph  and /alerts
  Alertmanager        {demo.stack.alertmanager_url}/#/alerts
                      both as {user} / {password}
  exporter metrics    {demo.exporter.url}/metrics
                      (bearer token in {demo.site.local("/etc/dlcourse/exporter-token")})
{CRASHING_STUDENT}'s kernel crashes every {CRASH_EVERY_SECONDS} s. {IDLE_STUDENT} holds 20 GiB
idle on GPU 1: the GPU idle culler warns him after 2 min, shuts his kernel down 1 min later.
Alerts that Alertmanager sends are printed here as they arrive. Logs: {args.workdir}.
"""
        )
        next_crash = started + 60
        idle_gone_since: float | None = None
        while not args.duration or time.monotonic() - started < args.duration:
            time.sleep(5)
            demo.scenario(time.monotonic() - started).write(scenario_path)
            if demo.kernels[IDLE_STUDENT]:
                idle_gone_since = None
            elif idle_gone_since is None:
                print(f"demo: the GPU idle culler shut {IDLE_STUDENT}'s idle kernel down")
                idle_gone_since = time.monotonic()
            elif time.monotonic() - idle_gone_since >= REOPEN_AFTER_SECONDS:
                demo.reopen_idle_notebook()
            for line in demo.new_alerts():
                print(f"demo: alert {line}")
            if time.monotonic() >= next_crash:
                demo.crash_a_kernel()
                next_crash = time.monotonic() + CRASH_EVERY_SECONDS
    except KeyboardInterrupt:
        pass
    finally:
        shield_cleanup(args.workdir)
        print("demo: stopping ...", flush=True)
        demo.close()
        print("demo: stopped, accounts and processes removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
