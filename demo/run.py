"""`make demo`: a deep-learning class on simulated GPUs, with everything else real.

A real JupyterHub (dummy authenticator: any password) with four students in two course
sections, their servers and notebook kernels running for real (as root: as real Linux
accounts, as on TLJH), two stand-in GPUs whose processes are those kernels, the exporter
attributing them to the students, Prometheus with the course's recording and alert rules,
Alertmanager, and node_exporter. One student's kernel crashes every few minutes, so the crash
metrics and alerts have something to show. Ctrl-C stops it all and removes what it created.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from exporter_process import RunningExporter, free_port  # noqa: E402
from hubfixture import LiveHub  # noqa: E402

from fakenvml import Gpu, Process, Scenario, build_library  # noqa: E402

GIB = 1024**3
STUDENTS = {"ada": "monday", "grace": "monday", "alan": "thursday", "katherine": "thursday"}
CRASHING_STUDENT = "katherine"
CRASH_EVERY_SECONDS = 180


def wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


class Demo:
    def __init__(self, workdir: Path, user_env: Path) -> None:
        self.dir = workdir
        self.user_env = user_env
        self.processes: list[subprocess.Popen] = []
        self.hub: LiveHub | None = None
        self.exporter: RunningExporter | None = None
        self.kernels: dict[str, list[int]] = {}

    # --- the class ------------------------------------------------------------------

    def start_hub(self) -> None:
        self.hub = LiveHub(self.dir / "hub", self.user_env)
        self.hub.start()
        for name, section in STUDENTS.items():
            self.hub.add_user(name, groups=[section])
        self.hub.add_user("teacher", admin=True)
        for name in STUDENTS:
            self.hub.start_server(name)
            self.start_kernel(name)
        self.start_kernel("ada")  # ada has two notebooks open

    def start_kernel(self, user: str) -> None:
        kernel_id = self.hub.start_kernel(user)
        self.kernels.setdefault(user, []).append(self.hub.kernel_pid(user, kernel_id))

    def scenario(self, t: float) -> Scenario:
        """GPU 0: ada and grace train in waves; GPU 1: alan hogs memory idle, katherine trains."""
        wave = 0.5 + 0.5 * math.sin(t / 60)
        ada_util = int(40 + 50 * wave)
        grace_util = int(30 * (1 - wave))
        gpu0 = [
            Process(pid, 6 * GIB, ada_util // len(self.kernels["ada"]))
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
                "--collection.interval=5",
                f"--hub.url={self.hub.api_url}",
                f"--hub.token-file={self.hub.token_file()}",
                "--hub.interval=5",
            ],
            nvml_dir=nvml_dir,
            scenario=scenario,
            log_path=self.dir / "exporter.log",
        )

    def start(self, command: list[str], name: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the demo
        self.processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        )

    def start_monitoring(self) -> dict[str, str]:
        ports = {name: free_port() for name in ("prometheus", "alertmanager", "node")}
        self.start(
            [
                "prometheus-node-exporter",
                f"--web.listen-address=127.0.0.1:{ports['node']}",
            ],
            "node_exporter",
        )
        alertmanager_config = self.dir / "alertmanager.yml"
        alertmanager_config.write_text(
            "route:\n  receiver: demo\n  group_by: [alertname, instance]\n"
            "receivers:\n  - name: demo\n"
        )
        self.start(
            [
                "prometheus-alertmanager",
                f"--config.file={alertmanager_config}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
                f"--storage.path={self.dir / 'alertmanager-data'}",
            ],
            "alertmanager",
        )
        config = self.dir / "prometheus.yml"
        exporter_target = self.exporter.url.removeprefix("http://")
        hub_target = self.hub.public_url.removeprefix("http://")
        config.write_text(
            f"""global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - {REPO / "prometheus" / "rules"}/*.yml
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["127.0.0.1:{ports["alertmanager"]}"]}}]
scrape_configs:
  - job_name: dlcourse
    static_configs: [{{targets: ["{exporter_target}"]}}]
  - job_name: jupyterhub
    metrics_path: /hub/metrics
    authorization: {{credentials_file: "{self.hub.token_file("test-driver")}"}}
    static_configs: [{{targets: ["{hub_target}"]}}]
  - job_name: node
    static_configs: [{{targets: ["127.0.0.1:{ports["node"]}"]}}]
  - job_name: alertmanager
    static_configs: [{{targets: ["127.0.0.1:{ports["alertmanager"]}"]}}]
  - job_name: prometheus
    static_configs: [{{targets: ["127.0.0.1:{ports["prometheus"]}"]}}]
"""
        )
        self.start(
            [
                "prometheus",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
            ],
            "prometheus",
        )
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name in ("prometheus", "alertmanager"):
            wait_http(urls[name])
        return urls

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
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
    args = parser.parse_args()
    if not (args.user_env / "bin" / "jupyterhub-singleuser").exists():
        args.user_env = Path(sys.prefix)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    args.workdir.chmod(0o755)  # students' servers read the scenario and their own folders

    demo = Demo(args.workdir, args.user_env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        nvml_dir = build_library(args.workdir / "nvml")
        print("demo: starting JupyterHub and four students' servers and kernels ...")
        demo.start_hub()
        scenario_path = args.workdir / "gpus.scn"
        started = time.monotonic()
        demo.scenario(0).write(scenario_path)
        demo.start_exporter(nvml_dir, scenario_path)
        urls = demo.start_monitoring()
        print(
            f"""
dlcourse demo is running (Ctrl-C to stop). Open:
  class status page   {demo.exporter.url}/
  exporter metrics    {demo.exporter.url}/metrics
  JupyterHub          {demo.hub.public_url}/  (users: {", ".join(STUDENTS)}, teacher; any password)
  Prometheus          {urls["prometheus"]}/graph
  firing alerts       {urls["prometheus"]}/alerts  and Alertmanager {urls["alertmanager"]}/#/alerts
{CRASHING_STUDENT}'s kernel crashes every {CRASH_EVERY_SECONDS} s; alan holds 20 GiB idle on GPU 1.
Logs are in {args.workdir}.
"""
        )
        next_crash = started + 60
        while not args.duration or time.monotonic() - started < args.duration:
            time.sleep(5)
            demo.scenario(time.monotonic() - started).write(scenario_path)
            if time.monotonic() >= next_crash:
                demo.crash_a_kernel()
                next_crash = time.monotonic() + CRASH_EVERY_SECONDS
    except KeyboardInterrupt:
        pass
    finally:
        print("demo: stopping ...")
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
