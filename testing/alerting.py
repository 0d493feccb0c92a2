"""Real Prometheus + Alertmanager on 127.0.0.1 free ports, with a webhook that records alerts.

Reusable by any end-to-end test: give it the scrape targets you control, e.g.

    with AlertingStack(tmp_path, targets={"dlcourse": ["127.0.0.1:9945"]}) as stack:
        stack.webhook.wait_for("DLCourseExporterDown")

The configuration is the shipped one: prometheus/prometheus.yml with test intervals and targets,
the alert rules rendered by prometheus/render.py with an overrides file (short `for`s), and
alertmanager.yml rendered with DLCOURSE_AM_* variables that point it at the webhook.
As shipped, both ask for basic auth (a web-config file made by the installer's own
`webauth`): Prometheus uses `password_file` for itself and Alertmanager, the exporter's bearer
token for the dlcourse job, and tests reach them with `stack.auth`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from dlcourse_installer.rendered import webauth

from .exporter import free_port, token_file
from .leftovers import die_with_parent

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "prometheus"
E2E_OVERRIDES = REPO / "tests" / "prometheus" / "e2e-overrides.json"
# The installer runs the renderer with the system python, so the tests do too.
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"


def find_tool(*names: str) -> str | None:
    """The first of `names` on PATH (Debian and upstream name some binaries differently)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def wait_until(predicate, timeout: float, what: str | Callable[[], str], interval: float = 0.2):
    """predicate()'s first true result; `what` (or what() at the deadline: a log tail, say)
    names the condition when it never came."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {described}")
        time.sleep(interval)


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(request(url, auth), timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def request(url: str, auth: tuple[str, str] | None) -> urllib.request.Request:
    if auth is None:
        return urllib.request.Request(url)
    import base64

    basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"})


class Webhook:
    """An Alertmanager webhook receiver: records (path, alert) for every alert it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body)
                with webhook._lock:
                    for alert in payload.get("alerts", []):
                        webhook.received.append((self.path, alert))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def alerts(self, alertname: str | None = None, path: str = "/", status: str | None = None):
        with self._lock:
            return [
                alert
                for p, alert in self.received
                if p == path
                and (alertname is None or alert["labels"].get("alertname") == alertname)
                and (status is None or alert["status"] == status)
            ]

    def wait_for(self, alertname: str, path: str = "/", status: str = "firing", timeout=60):
        return wait_until(
            lambda: self.alerts(alertname, path, status),
            timeout,
            lambda: f"{alertname} ({status}) at webhook path {path}; received: {self.summary()}",
        )

    def summary(self) -> list[str]:
        with self._lock:
            return sorted(
                {f"{p} {a['labels'].get('alertname')} {a['status']}" for p, a in self.received}
            )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Process:
    """A child process with its output in a log file, stopped for sure on exit.

    `user`: run as that account and its group only (root only), as a service unit would.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict | None = None,
        user: str | None = None,
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        account = {"user": user, "group": user, "extra_groups": []} if user else {}
        self.popen = subprocess.Popen(
            die_with_parent(argv), stdout=self._log, stderr=subprocess.STDOUT, env=env, **account
        )

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def render_rules(out: Path, overrides: Path | dict) -> Path:
    """Render the alert rules with test overrides, through the same CLI the installer uses."""
    if isinstance(overrides, dict):
        path = out.parent / "overrides.json"
        path.write_text(json.dumps(overrides))
        overrides = path
    subprocess.run(
        [SYSTEM_PYTHON, str(PROMETHEUS_DIR / "render.py"), "rules"]
        + ["--overrides", str(overrides), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def prometheus_config(
    targets: dict[str, list[str]],
    rule_files: list[Path],
    alertmanager: str,
    prometheus: str,
    credentials: dict[str, Path],
    interval: str = "1s",
) -> dict:
    """The shipped prometheus.yml with test intervals, targets and credential files.

    `credentials` names the file for each bearer-token job and, under "basic_auth", the
    password file of Prometheus's own user. Jobs without targets go.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    config["rule_files"] = [str(p) for p in rule_files]
    [alerting] = config["alerting"]["alertmanagers"]
    alerting["static_configs"][0]["targets"] = [alertmanager]
    alerting["basic_auth"]["password_file"] = str(credentials["basic_auth"])
    targets = {"alertmanager": [alertmanager], "prometheus": [prometheus], **targets}
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
            if "authorization" in job:
                job["authorization"]["credentials_file"] = str(credentials[job["job_name"]])
            if "basic_auth" in job:
                job["basic_auth"]["password_file"] = str(credentials["basic_auth"])
            jobs.append(job)
    config["scrape_configs"] = jobs
    return config


class AlertingStack:
    """Prometheus and Alertmanager, both real, wired to a recording Webhook."""

    def __init__(
        self,
        workdir: Path,
        targets: dict[str, list[str]],
        overrides: Path | dict = E2E_OVERRIDES,
        hub_token_file: Path | None = None,
        interval: str = "1s",
        exporter_token_file: Path | None = None,
        readers: dict[str, str] | None = None,
        prometheus_port: int | None = None,
    ) -> None:
        """readers: more basic-auth users (name -> password) who may read Prometheus, as the
        students' page does on a server; prometheus_port: one a configuration names."""
        self.workdir = workdir
        self.readers = dict(readers or {})
        self.prometheus_port = prometheus_port
        self.exporter_token_file = exporter_token_file or token_file()
        self.targets = targets
        self.overrides = overrides
        self.hub_token_file = hub_token_file
        self.interval = interval
        self.processes: list[Process] = []
        self.webhook: Webhook | None = None
        # Prometheus's own user; tests and the demo read with it too (stack.auth).
        self.auth = ("prometheus", secrets.token_hex(16))

    def __enter__(self) -> AlertingStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        prometheus_bin = find_tool("prometheus")
        alertmanager_bin = find_tool("prometheus-alertmanager", "alertmanager")
        assert prometheus_bin and alertmanager_bin, "prometheus and alertmanager must be installed"
        self.webhook = Webhook()
        am_port, prom_port = free_port(), self.prometheus_port or free_port()
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        self.prometheus_url = f"http://127.0.0.1:{prom_port}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        web_config = self.web_config = self.workdir / "web-config.yml"
        users = {self.auth[0]: self.auth[1], **self.readers}
        web_config.write_text(
            webauth.web_config({u: webauth.bcrypt_hash(p) for u, p in users.items()})
        )
        password_file = self.workdir / "prometheus.password"
        password_file.touch(mode=0o600)
        password_file.write_text(self.auth[1] + "\n")

        am_config = self.workdir / "alertmanager.yml"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLCOURSE_AM_")}
        env.update(
            DLCOURSE_AM_WEBHOOK_URL=self.webhook.url + "/",
            DLCOURSE_AM_WATCHDOG_URL=self.webhook.url + "/watchdog",
            DLCOURSE_AM_GROUP_WAIT="1s",
            DLCOURSE_AM_GROUP_INTERVAL="1s",
            DLCOURSE_AM_REPEAT_INTERVAL="1h",
        )
        subprocess.run(
            [SYSTEM_PYTHON, str(PROMETHEUS_DIR / "render.py"), "alertmanager"]
            + ["--out", str(am_config)],
            check=True,
            capture_output=True,
            env=env,
        )
        (self.workdir / "am-data").mkdir()
        self.alertmanager = self._spawn(
            "alertmanager",
            [alertmanager_bin, f"--config.file={am_config}"]
            + [f"--storage.path={self.workdir / 'am-data'}"]
            + [f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]
            + [f"--web.config.file={web_config}"],
        )

        rules_dir = self.workdir / "rules"
        rules_dir.mkdir()
        rules = render_rules(rules_dir / "dlcourse-alerts.yml", self.overrides)
        config = prometheus_config(
            self.targets,
            [PROMETHEUS_DIR / "rules" / "dlcourse-recording.yml", rules],
            f"127.0.0.1:{am_port}",
            f"127.0.0.1:{prom_port}",
            {
                "dlcourse": self.exporter_token_file,
                "jupyterhub": self.hub_token_file or Path(os.devnull),
                "basic_auth": password_file,
            },
            self.interval,
        )
        prom_config = self.workdir / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.prometheus = self._spawn(
            "prometheus",
            [prometheus_bin, f"--config.file={prom_config}"]
            + [f"--storage.tsdb.path={self.workdir / 'prom-data'}"]
            + [f"--web.listen-address=127.0.0.1:{prom_port}"]
            + [f"--web.config.file={web_config}"]
            + ["--rules.alert.resend-delay=1s", "--log.level=warn"],
        )
        self._wait_ready(self.alertmanager, self.alertmanager_url + "/-/ready")
        self._wait_ready(self.prometheus, self.prometheus_url + "/-/ready")

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.workdir)
        self.processes.append(process)
        return process

    def _wait_ready(self, process: Process, url: str) -> None:
        def ready() -> bool:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
            return http_ok(url, self.auth)

        wait_until(ready, 60, lambda: f"{process.name} to be ready\n{process.log_tail()}")

    def query(self, promql: str) -> list[dict]:
        url = self.prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(request(url, self.auth), timeout=5) as response:
            return json.load(response)["data"]["result"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.processes)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.webhook:
            self.webhook.close()
