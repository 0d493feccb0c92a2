"""No student can read a classmate's data from the monitoring stack, or change anything in it.

The installed configuration, as `dlcourse-install render --relocate` writes it (on free
ports), runs for real: Prometheus, Alertmanager and node_exporter as Debian runs them (the
`prometheus` account, the arguments of /etc/default/*, the files' owners from OWNERS), the
exporter with the arguments and credentials of its systemd unit. One student's notebook
holds a GPU; another student, a real Linux account, then tries every read of per-student
data and every write, with the tools a student has (Python's urllib, curl, amtool), and
tries to read every credential file. Each attempt is refused, while in the same run
Prometheus scrapes the exporter and an alert reaches a webhook through Alertmanager.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcourse_testing.alerting import (
    PROMETHEUS_DIR,
    SYSTEM_PYTHON,
    Process,
    Webhook,
    find_tool,
    wait_until,
)
from dlcourse_testing.exporter import RunningExporter, free_port
from dlcourse_testing.hub import LinuxAccounts, LiveHub
from dlcourse_testing.rendered import (
    EXPORTER_UNIT,
    Site,
    apply_owners,
    daemon_args,
    render_site,
    unit_command,
)
from fakenvml import Gpu, Scenario
from fakenvml import Process as GpuProcess

GIB = 1024**3
DAEMONS = {  # the Debian package's binary, and the /etc/default file its unit reads
    "node_exporter": ("prometheus-node-exporter", "/etc/default/prometheus-node-exporter"),
    "alertmanager": ("prometheus-alertmanager", "/etc/default/prometheus-alertmanager"),
    "prometheus": ("prometheus", "/etc/default/prometheus"),
}

CONFIG_D = "/opt/tljh/config/jupyterhub_config.d"
MONITORING = "/etc/dlcourse/monitoring"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: real accounts (useradd) and daemons run as prometheus"
)


@dataclass
class Stack:
    site: Site
    ports: dict[str, int]
    exporter: RunningExporter
    webhook: Webhook
    student: str  # who probes (hub name; Linux account jupyter-<name>)
    classmate: str  # whose GPU use is on the monitoring stack
    daemons: dict[str, Process]
    work: Path

    def start(self, name: str) -> None:
        """Starts (or restarts) a daemon as its Debian unit would, from /etc/default/<name>."""
        if name in self.daemons:
            self.daemons[name].stop()
        binary, default_file = DAEMONS[name]
        argv = [find_tool(binary), *daemon_args(self.site, default_file)]
        self.daemons[name] = Process(name, argv, self.work, user="prometheus")

    @property
    def student_account(self) -> str:
        return f"jupyter-{self.student}"

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def instructor(self) -> tuple[str, str]:
        return "instructor", self.site.read(f"{MONITORING}/instructor.password").strip()


# --- running what render wrote ---------------------------------------------------------


def only(account: str) -> dict:
    """subprocess arguments to run as `account` with its own group only: without them the
    child keeps root's supplementary groups, and reads what only root's group may."""
    return {"user": account, "group": account, "extra_groups": []}


def render_alertmanager_receiver(site: Site, webhook: Webhook) -> None:
    """A lecturer's receiver, made with the product's generator (docs/alerting.md)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCOURSE_AM_")}
    env.update(
        DLCOURSE_AM_WEBHOOK_URL=webhook.url + "/",
        DLCOURSE_AM_WATCHDOG_URL=webhook.url + "/watchdog",
        DLCOURSE_AM_GROUP_WAIT="1s",
    )
    out = site.local("/etc/prometheus/alertmanager.yml")
    subprocess.run(
        [SYSTEM_PYTHON, str(PROMETHEUS_DIR / "render.py"), "alertmanager", "--out", str(out)],
        check=True, capture_output=True, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(fake_nvml_dir, user_env) -> Iterator[Stack]:
    for binary, _ in DAEMONS.values():
        if find_tool(binary) is None:
            pytest.skip(f"{binary} is not installed (scripts/apt-packages.txt lists its package)")
    # Not under pytest's 0700 folder: the prometheus account must reach its files.
    work = Path(tempfile.mkdtemp(prefix="dlcourse-access-"))
    work.chmod(0o755)
    accounts = LinuxAccounts()
    daemons: dict[str, Process] = {}
    notebooks: list[subprocess.Popen] = []
    exporter = None
    webhook = Webhook()
    # A real hub with the rendered machine services (the exporter's and Prometheus's tokens).
    hub = LiveHub(work / "hub", user_env, services={})
    try:
        services = ("exporter", "prometheus", "alertmanager", "node_exporter")
        ports = {name: free_port() for name in services} | {"hub": hub.hub_port}
        site = render_site(work / "site", "--admin", "teacher", relocate=True, ports=ports)
        hub.add_config(site.read(f"{CONFIG_D}/dlcourse-services.py"))
        hub.start()
        # Two students as TLJH makes them: hub user X, Linux account jupyter-X.
        student, classmate = (f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(2))
        for name in (student, classmate):
            accounts.create(f"jupyter-{name}")
            hub.api("POST", f"/users/{name}")
        render_alertmanager_receiver(site, webhook)
        apply_owners(site)
        for data in ("/var/lib/prometheus/metrics2", "/var/lib/prometheus/alertmanager"):
            site.local(data).mkdir(parents=True)
            shutil.chown(site.local(data), "prometheus", "prometheus")

        # The classmate's notebook on the GPU: a real process of their account.
        notebook = subprocess.Popen(
            ["sleep", "600"], env={"JUPYTERHUB_USER": classmate}, **only(f"jupyter-{classmate}")
        )
        notebooks.append(notebook)
        scenario = work / "gpus.scn"
        Scenario(
            gpus=[Gpu(memory_used=3 * GIB, processes=[GpuProcess(notebook.pid, 3 * GIB, 50)])]
        ).write(scenario)
        exporter = RunningExporter(
            unit_command(site),
            nvml_dir=fake_nvml_dir,
            scenario=scenario,
            log_path=work / "exporter.log",
            port=ports["exporter"],
        )
        stack = Stack(site, ports, exporter, webhook, student, classmate, daemons, work)
        for name in DAEMONS:
            stack.start(name)
        yield stack
    finally:
        for process in reversed(daemons.values()):
            process.stop()
        for notebook in notebooks:
            notebook.kill()
            notebook.wait()
        if exporter is not None:
            exporter.stop()
        hub.close()
        webhook.close()
        accounts.remove_all()
        shutil.rmtree(work, ignore_errors=True)


# --- the instructor's view: the data is there ------------------------------------------


def get(url: str, auth: tuple[str, str] | None = None, **params: str):
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url)
    if auth:
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def query(stack: Stack, promql: str) -> list:
    try:
        return get(stack.url("prometheus", "/api/v1/query"), stack.instructor(), query=promql)[
            "data"
        ]["result"]
    except OSError:
        return []  # not up yet


def test_prometheus_scrapes_everything_with_its_credentials(stack):
    wanted = {"dlcourse", "jupyterhub", "node", "alertmanager", "prometheus"}
    up = wait_until(
        lambda: {r["metric"]["job"] for r in query(stack, "up == 1")} >= wanted or None,
        120,
        "every target up",
    )
    assert up
    mine = f'dlcourse_user_gpu_memory_used_bytes{{user="{stack.classmate}"}}'
    [series] = wait_until(lambda: query(stack, mine), 60, mine)
    assert float(series["value"][1]) == 3 * GIB


def test_an_alert_reaches_the_webhook_through_alertmanager(stack):
    stack.webhook.wait_for("DLCourseWatchdog", path="/watchdog", timeout=120)


# --- the student's view: every attempt refused -----------------------------------------

PROBE = r"""
import base64, json, sys, urllib.request
results = []
for method, url, headers, body in json.load(sys.stdin):
    request = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            results.append([response.status, response.read(200_000).decode(errors="replace")])
    except urllib.error.HTTPError as error:
        results.append([error.code, error.read(2000).decode(errors="replace")])
    except OSError as error:
        results.append([0, str(error)])
json.dump(results, sys.stdout)
"""

GUESSES = [
    {},
    {"Authorization": "Bearer 0123456789abcdef"},
    {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()},
    {"Authorization": "Basic " + base64.b64encode(b"prometheus:prometheus").decode()},
]


def as_student(stack: Stack, requests: list[tuple[str, str, dict, str]]) -> list[list]:
    """Runs the requests as the student's account, with the system's Python (not this
    checkout: the student cannot read it)."""
    result = subprocess.run(
        ["/usr/bin/python3", "-c", PROBE],
        input=json.dumps(requests), **only(stack.student_account), capture_output=True, text=True,
        timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def reads(stack: Stack) -> list[tuple[str, str]]:
    selector = urllib.parse.quote(f'{{user="{stack.classmate}"}}')
    return [
        ("exporter", "/metrics"),
        ("exporter", "/api/class"),
        ("prometheus", f"/api/v1/query?query={selector}"),
        ("prometheus", f"/api/v1/series?match[]={selector}"),
        ("prometheus", f"/federate?match[]={selector}"),
        ("prometheus", "/api/v1/label/user/values"),
        ("prometheus", "/api/v1/targets"),
        ("prometheus", "/api/v1/status/config"),
        ("prometheus", "/graph"),
        ("prometheus", "/metrics"),
        ("alertmanager", "/api/v2/alerts"),
        ("alertmanager", "/api/v2/silences"),
        ("alertmanager", "/api/v2/status"),
        ("alertmanager", "/"),
        ("node_exporter", "/metrics"),
    ]


def writes(stack: Stack) -> list[tuple[str, str, str]]:
    silence = json.dumps({
        "matchers": [{"name": "alertname", "value": ".+", "isRegex": True}],
        "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2100-01-01T00:00:00Z",
        "createdBy": stack.student, "comment": "shh",
    })  # fmt: skip
    return [
        ("alertmanager", "/api/v2/silences", silence),
        ("alertmanager", "/-/reload", ""),
        ("prometheus", "/-/reload", ""),
        ("prometheus", "/-/quit", ""),
        ("prometheus", "/api/v1/admin/tsdb/delete_series?match[]=up", ""),
        ("prometheus", "/api/v1/admin/tsdb/snapshot", ""),
    ]


def test_every_read_of_per_student_data_is_refused(stack):
    test_prometheus_scrapes_everything_with_its_credentials(stack)  # the data is there
    requests = [
        ("GET", stack.url(service, path), headers, "")
        for service, path in reads(stack)
        for headers in GUESSES
    ]
    answers = as_student(stack, requests)
    for (_, url, headers, _), (status, body) in zip(requests, answers, strict=True):
        assert status == 401, f"{url} {headers}: {status} {body[:300]}"
        assert stack.classmate not in body, url


def test_every_write_is_refused(stack):
    requests = [
        ("POST", stack.url(service, path), headers, body)
        for service, path, body in writes(stack)
        for headers in GUESSES
    ]
    answers = as_student(stack, requests)
    for (_, url, headers, _), (status, body) in zip(requests, answers, strict=True):
        assert status == 401, f"POST {url} {headers}: {status} {body[:300]}"
    silences = get(stack.url("alertmanager", "/api/v2/silences"), stack.instructor())
    assert not [s for s in silences if s["createdBy"] == stack.student]
    # Prometheus is still up, with its data (no quit, no deletion).
    assert query(stack, 'up{job="dlcourse"} == 1')


def test_admin_and_lifecycle_apis_are_off_even_for_the_instructor(stack):
    auth = stack.instructor()
    # Prometheus 2.42's own words when --web.enable-admin-api / --web.enable-lifecycle are off.
    for path, refusal in (
        ("/api/v1/admin/tsdb/delete_series?match[]=up", "admin APIs disabled"),
        ("/api/v1/admin/tsdb/snapshot", "admin APIs disabled"),
        ("/-/reload", "Lifecycle API is not enabled"),
        ("/-/quit", "Lifecycle API is not enabled"),
    ):
        request = urllib.request.Request(stack.url("prometheus", path), data=b"", method="POST")
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refusal in refused.value.read().decode(), path


def test_the_exporter_landing_and_health_pages_carry_no_names(stack):
    answers = as_student(
        stack,
        [("GET", stack.url("exporter", path), {}, "") for path in ("/", "/healthz", "/readyz")],
    )
    for status, body in answers:
        assert status == 200 and stack.classmate not in body


def test_the_student_cannot_read_any_credential(stack):
    secret_files = [p for p, (_, _, mode) in stack.site.owners.items() if not mode & 0o004]
    assert {
        "/etc/dlcourse/exporter-token",
        f"{MONITORING}/instructor.password",
        f"{MONITORING}/instructor.netrc",
        f"{MONITORING}/prometheus-web.yml",
    } <= set(secret_files)
    script = (
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(path).read(); print('READ', path)\n"
        "    except PermissionError:\n"
        "        pass\n"
    )
    paths = [str(stack.site.local(p)) for p in secret_files]
    result = subprocess.run(
        ["/usr/bin/python3", "-c", script, *paths],
        **only(stack.student_account), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_no_credential_is_in_a_file_anyone_may_read(stack):
    values = [
        stack.site.read(p).strip()
        for p, (_, _, mode) in stack.site.owners.items()
        if not mode & 0o004 and p.endswith(("token", "password", "secret"))
    ]
    assert len(values) >= 6 and all(len(v) == 64 for v in values)
    for path, (_, _, mode) in stack.site.owners.items():
        if mode & 0o004:
            text = stack.site.read(path)
            assert not [v for v in values if v in text], path


def test_the_instructors_tools_work_and_the_students_do_not(stack):
    """curl with the netrc and amtool with its HTTP config, as root and as the student."""
    netrc = str(stack.site.local(f"{MONITORING}/instructor.netrc"))
    http_config = str(stack.site.local(f"{MONITORING}/instructor-http.yml"))
    promql = f'dlcourse_user_gpu_memory_used_bytes{{user="{stack.classmate}"}}'
    curl = [
        "curl", "-fsS", "--netrc-file", netrc, "-G", "--data-urlencode", f"query={promql}",
        stack.url("prometheus", "/api/v1/query"),
    ]  # fmt: skip
    amtool = [
        find_tool("amtool"), f"--alertmanager.url={stack.url('alertmanager', '/')}",
        f"--http.config.file={http_config}", "alert", "query", "-o", "json",
    ]  # fmt: skip
    as_root = subprocess.run(curl, capture_output=True, text=True, timeout=30)
    assert as_root.returncode == 0 and stack.classmate in as_root.stdout, as_root.stderr
    alerts = wait_until(
        lambda: json.loads(subprocess.run(amtool, capture_output=True, text=True).stdout or "[]"),
        60,
        "amtool to list alerts",
    )
    assert any(a["labels"]["alertname"] == "DLCourseWatchdog" for a in alerts)
    # curl goes on without the netrc it cannot read, and is refused; amtool stops there.
    for command, refusal in ((curl, "error: 401"), (amtool, "permission denied")):
        student = subprocess.run(
            command, **only(stack.student_account), capture_output=True, text=True, timeout=30,
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        )  # fmt: skip
        assert student.returncode != 0 and stack.classmate not in student.stdout
        assert refusal in student.stderr, student.stderr


def test_the_exporter_unit_carries_no_secret(stack):
    unit = stack.site.read(EXPORTER_UNIT)
    for path in ("/etc/dlcourse/exporter-token", "/etc/dlcourse/hub-token"):
        assert stack.site.read(path).strip() not in unit
    assert "--web.token-file=%d/web-token" in unit


def test_deleting_one_students_data_as_docs_security_md_says(stack):
    """The commands of docs/security.md "Deleting one student's data", step 2, on the
    rendered files (the sed edits the relocated /etc/default/prometheus)."""
    mine = f'dlcourse_user_gpu_memory_used_bytes{{user="{stack.classmate}"}}'
    wait_until(lambda: query(stack, mine), 60, mine)
    default = stack.site.local("/etc/default/prometheus")
    netrc = stack.site.local(f"{MONITORING}/instructor.netrc")
    prometheus = stack.url("prometheus", "")
    subprocess.run(["sed", "-i", 's/^ARGS="/ARGS="--web.enable-admin-api /', default], check=True)
    stack.start("prometheus")
    # Everything up to this moment must go; the exporter keeps reporting the running notebook
    # afterwards, hence a query that looks at the past only.
    until = int(time.time())

    def series_until_now() -> list:
        """The classmate's samples of the last hour up to `until`, series by series."""
        return query(stack, f'{{user="{stack.classmate}"}}[1h] @ {until}')

    assert len(wait_until(series_until_now, 60, "the classmate's series")) >= 3
    delete = f'{prometheus}/api/v1/admin/tsdb/delete_series?match[]={{user="{stack.classmate}"}}'
    wait_until(
        lambda: (
            subprocess.run(
                ["curl", "-fsS", "--netrc-file", netrc, "-X", "POST", "-g", delete],
                capture_output=True,
            ).returncode
            == 0
        ),
        60,
        "Prometheus with its admin API to delete the series",
    )
    subprocess.run(
        ["curl", "-fsS", "--netrc-file", netrc, "-X", "POST",
         f"{prometheus}/api/v1/admin/tsdb/clean_tombstones"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert series_until_now() == []
    assert query(stack, 'count_over_time(up{job="dlcourse"}[1h])')  # the rest is kept
    subprocess.run(["sed", "-i", "s/--web.enable-admin-api //", default], check=True)
    stack.start("prometheus")
    assert "--web.enable-admin-api" not in default.read_text()
