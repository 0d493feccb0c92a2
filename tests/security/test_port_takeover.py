"""No student can take a monitoring port while its daemon restarts (issue 21, item 2).

Before: every daemon listened on an unprivileged loopback port. While one restarted, a
student's bind() loop won its port, and its clients handed the student their credentials
(Prometheus the exporter's token and its basic-auth password, the exporter its hub token).

Here the stack is what `dlcourse-install render` writes, on its own ports (no --port): the
test finds every 127.0.0.1 port the rendered files name. The daemons run as their units
say, read by systemd's own parser (dlcourse_testing.units; no systemd runs on test
machines): Prometheus, Alertmanager and node_exporter are Debian's binaries under Debian's
units with dlcourse's drop-ins, as `prometheus` with the units' capabilities, started again
as Restart= and RestartSec= say; the exporter is its unit's ExecStart under its unit's
restart policy (as root: its account's capabilities are those systemd reads from its unit,
checked below); the class-status page and the students' page (my-gpu) run as the hub
(root) starts them.

For each daemon: it stops; a real student account tries to bind its port, in a loop, while
the daemon starts again. The bind must fail, nothing may reach the student, and the daemon
must serve again. Then root holds the port (what no student can), the daemon starts and
cannot bind; root lets go, and the daemon must serve within a minute. The hub's and
Grafana's ports have no daemon here (neither can be installed on test machines): the
student tries to bind them, and whatever Prometheus and the exporter send there must not
reach the student.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.rendered.staff import STATUS_SERVICE
from dlcourse_installer.rendered.students import STUDENT_SERVICE
from dlcourse_testing import units
from dlcourse_testing.alerting import find_tool, wait_until
from dlcourse_testing.leftovers import create_account, remove_account
from dlcourse_testing.rendered import Site, apply_owners, daemon_args, render_site, unit_command
from fakenvml import Gpu, Scenario

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: real accounts, privileged ports, daemons as prometheus"
)

DEBIAN_UNITS = Path("/usr/lib/systemd/system")
# name in Ports -> (Debian's binary, its unit, the /etc/default file the unit reads)
DEBIAN = {
    "prometheus": ("prometheus", "prometheus.service", "/etc/default/prometheus"),
    "alertmanager": (
        "prometheus-alertmanager", "prometheus-alertmanager.service",
        "/etc/default/prometheus-alertmanager",
    ),
    "node_exporter": (
        "prometheus-node-exporter", "prometheus-node-exporter.service",
        "/etc/default/prometheus-node-exporter",
    ),
}  # fmt: skip
EXPORTER_UNIT = "dlcourse-exporter.service"
HUB_CONFIG_D = "/opt/tljh/config/jupyterhub_config.d"
STAFF_CONFIG = f"{HUB_CONFIG_D}/dlcourse-staff.py"
STUDENTS_CONFIG = f"{HUB_CONFIG_D}/dlcourse-students.py"
WITHIN_SECONDS = 60.0  # the daemon serves again this soon after its port comes free
STUDENT_TRIES_SECONDS = 4.0  # the student's bind() loop, while the daemon starts again
STUDENT_LISTENS_SECONDS = 20.0  # longer than Prometheus's scrape interval (15 s)
# Root holds a port until its daemon has failed this often: more quick failed starts than
# systemd allows by default (StartLimitBurst=5 within 10 s) before it gives up for good.
HELD_FOR_FAILURES = 6

# The student's side, run with the students' Python: bind() in a loop; once bound, record
# the head of every request that arrives. Prints one JSON line.
HOLD = r"""
import json, socket, sys, time
port, tries, listens = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past its TIME_WAIT connections
print("trying", flush=True)
deadline = time.monotonic() + tries
while True:
    try:
        sock.bind(("127.0.0.1", port))
        break
    except OSError as error:
        if time.monotonic() > deadline:
            print(json.dumps({"bound": False, "errno": error.errno}))
            sys.exit()
        time.sleep(0.005)
sock.listen(16)
sock.settimeout(0.2)
heads, end = [], time.monotonic() + listens
while time.monotonic() < end:
    try:
        conn, _ = sock.accept()
    except socket.timeout:
        continue
    conn.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    conn.close()
    heads.append(data.decode("latin-1"))
print(json.dumps({"bound": True, "heads": heads}))
"""


@dataclass
class Stack:
    site: Site
    ports: dict[str, int]
    daemons: dict[str, units.Supervised]
    student: str
    user_env: Path

    def poll(self) -> None:
        for daemon in self.daemons.values():
            daemon.poll()

    def wait(self, predicate: Callable[[], object], timeout: float, what) -> object:
        """wait_until, with systemd's part played meanwhile."""

        def check():
            self.poll()
            return predicate()

        return wait_until(check, timeout, what, interval=0.1)

    def revive(self) -> None:
        """Every daemon running and serving, whatever an earlier test left."""
        for daemon in self.daemons.values():
            if not daemon.poll():
                daemon.start()
        for name in self.daemons:
            self.wait(lambda n=name: serves(self, n), 60, f"{name} serving")

    def credentials(self) -> dict[str, str]:
        """Every secret the render made (one-line files under /etc/dlcourse), by path."""
        found = {}
        for path in self.site.owners:
            if path.startswith("/etc/dlcourse/") and path.endswith(
                ("token", ".password", "secret")
            ):
                found[path] = self.site.read(path).strip()
        return found


def rendered_ports(site: Site) -> set[int]:
    """Every 127.0.0.1 port that a rendered file names (listen addresses, targets, URLs)."""
    found: set[int] = set()
    for path in site.owners:
        text = site.local(path).read_text(errors="replace")
        found |= {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
    return found


def in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not use
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def answers(port: int, path: str = "/") -> bool:
    """The port serves HTTP (any status, 401 included)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def account(name: str) -> dict:
    return {"user": name, "group": name, "extra_groups": []}


@pytest.fixture(scope="module")
def stack(fake_nvml_dir, user_env) -> Iterator[Stack]:
    reason = units.available()
    if reason:
        pytest.skip(reason)
    for binary, unit, _ in DEBIAN.values():
        if find_tool(binary) is None or not (DEBIAN_UNITS / unit).exists():
            pytest.skip(f"{binary} and its unit are not installed (scripts/apt-packages.txt)")
    work = Path(tempfile.mkdtemp(prefix="dlcourse-ports-"))
    work.chmod(0o755)  # the prometheus account reaches its files
    daemons: dict[str, units.Supervised] = {}
    student = ""
    try:
        site = render_site(work / "site", "--admin", "teacher", relocate=True)
        names = {getattr(Ports(), n): n for n in Ports.names()}
        found = rendered_ports(site)
        ports = {names.get(p, str(p)): p for p in found}
        busy = [p for p in found if in_use(p)]
        if busy:
            pytest.skip(f"ports {busy} of the rendered stack are in use on this machine")
        apply_owners(site)
        for data in ("/var/lib/prometheus/metrics2", "/var/lib/prometheus/alertmanager"):
            site.local(data).mkdir(parents=True)
            shutil.chown(site.local(data), "prometheus", "prometheus")
        lib = site.local("/usr/lib/systemd/system")
        lib.mkdir(parents=True)
        for _, unit, _ in DEBIAN.values():
            shutil.copy(DEBIAN_UNITS / unit, lib / unit)
        student = create_account(f"dlct-{os.urandom(4).hex()}").pw_name
        stack = Stack(site, ports, daemons, student, user_env)
        for name in DEBIAN:
            daemons[name] = start_debian(stack, name)
        daemons["exporter"] = start_exporter(stack, fake_nvml_dir, work)
        for name in HUB_PAGES:
            daemons[name] = start_hub_page(stack, name)
        yield stack
    finally:
        for daemon in daemons.values():
            daemon.stop()
        if student:
            remove_account(student)
        shutil.rmtree(work, ignore_errors=True)


def start_debian(stack: Stack, name: str) -> units.Supervised:
    binary, unit_name, default_file = DEBIAN[name]
    unit = units.read_unit(stack.site.root, unit_name)
    argv = [find_tool(binary), *daemon_args(stack.site, default_file)]
    return units.Supervised(unit, argv, stack.site.root.parent / f"{name}.log")


def start_exporter(stack: Stack, nvml_dir: Path, work: Path) -> units.Supervised:
    scenario = work / "gpus.scn"
    Scenario(gpus=[Gpu(utilization_gpu=10)]).write(scenario)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLCOURSE_", "JUPYTERHUB_"))}
    env.update(LD_LIBRARY_PATH=str(nvml_dir), FAKENVML_SCENARIO=str(scenario))
    unit = units.read_unit(stack.site.root, EXPORTER_UNIT)
    argv = [sys.executable, "-m", "dlcourse_exporter", *unit_command(stack.site)]
    return units.Supervised(unit, argv, work / "exporter.log", user="root", env=env)


# The pages the hub starts as its own managed services: (the jupyterhub_config.d file that
# declares it, its service name, the module it runs).
HUB_PAGES = {
    "status": (STAFF_CONFIG, STATUS_SERVICE, "dlcourse_status"),
    "student": (STUDENTS_CONFIG, STUDENT_SERVICE, "dlcourse_status.student"),
}


def start_hub_page(stack: Stack, name: str) -> units.Supervised:
    """A page as the hub starts it (jupyterhub/services/service.py): its command with the
    environment the hub gives a managed service."""
    config, service, module = HUB_PAGES[name]
    text = stack.site.read(config)
    url = re.search(r"'url': '(http://127\.0\.0\.1:\d+)'", text)[1]
    exporter_url = re.search(r"'DLCOURSE_EXPORTER_URL': '([^']+)'", text)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLCOURSE_", "JUPYTERHUB_"))}
    env.update(
        JUPYTERHUB_SERVICE_NAME=service,
        JUPYTERHUB_SERVICE_URL=url,
        JUPYTERHUB_SERVICE_PREFIX=f"/services/{service}/",
        JUPYTERHUB_API_TOKEN=os.urandom(16).hex(),
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{stack.ports['hub']}/hub/api",
        JUPYTERHUB_CLIENT_ID=f"service-{service}",
        DLCOURSE_EXPORTER_URL=exporter_url,
        DLCOURSE_EXPORTER_TOKEN=stack.site.read("/etc/dlcourse/exporter-token").strip(),
    )
    # The hub starts it again when it exits (JupyterHub 5 Service._proc_stopped), but only
    # at its next poll of the process (Spawner.poll_interval, 30 s by default).
    hub_restarts = units.Unit(
        name=f"{service} (hub service)", user="root", ambient_capabilities=frozenset(),
        bounding_capabilities=None, private_users=False, restart="always",
        restart_seconds=30.0, restart_prevented=frozenset(), start_limit_seconds=0,
        start_limit_burst=0, drop_ins=(), problems=(),
    )  # fmt: skip
    argv = [sys.executable, "-m", module]
    return units.Supervised(hub_restarts, argv, stack.site.root.parent / f"{name}.log", env=env)


def serves(stack: Stack, name: str) -> bool:
    return answers(stack.ports[name], "/healthz" if name == "exporter" else "/")


@pytest.fixture
def running(stack: Stack) -> Stack:
    stack.revive()
    return stack


# --- the units, as systemd reads them ------------------------------------------------


@pytest.mark.parametrize("name", ["exporter", *DEBIAN])
def test_each_daemon_may_bind_its_port_and_is_restarted_forever(stack, name):
    unit_name = EXPORTER_UNIT if name == "exporter" else DEBIAN[name][1]
    unit = units.read_unit(stack.site.root, unit_name)
    assert unit.problems == ()
    assert unit.user != "root"
    # A port below 1024 takes CAP_NET_BIND_SERVICE, which a private user namespace would
    # void (Grafana's docs/sources/shared/systemd/bind-net-capabilities.md says the same).
    assert "cap_net_bind_service" in unit.ambient_capabilities
    assert not unit.private_users
    assert unit.restart == "always" and unit.restart_seconds <= 10
    assert unit.start_limit_seconds == 0  # never "start request repeated too quickly"
    assert stack.ports[name] < 1024


# --- the student's attempt -----------------------------------------------------------


def student_holds(stack: Stack, port: int) -> subprocess.Popen[str]:
    """The student's bind() loop on port, started; it has begun once it said so."""
    holder = subprocess.Popen(
        [str(stack.user_env / "bin" / "python"), "-c", HOLD, str(port),
         str(STUDENT_TRIES_SECONDS), str(STUDENT_LISTENS_SECONDS)],
        stdout=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        **account(stack.student),
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "trying"
    return holder


def outcome(stack: Stack, holder: subprocess.Popen[str]) -> dict:
    timeout = STUDENT_TRIES_SECONDS + STUDENT_LISTENS_SECONDS + 30
    stack.wait(lambda: holder.poll() is not None, timeout, "the student's bind() loop to end")
    assert holder.stdout is not None
    return json.loads(holder.stdout.read())


def leaked(stack: Stack, heads: list[str]) -> list[str]:
    """Which rendered credentials reached the student (by file; never the values)."""
    sent = []
    for head in heads:
        for line in head.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization":
                scheme, _, credential = value.strip().partition(" ")
                if scheme.lower() == "basic":
                    credential = base64.b64decode(credential).decode(errors="replace")
                sent.append(credential)
    return sorted(
        path for path, secret in stack.credentials().items()
        if any(secret and secret in credential for credential in sent)
    )  # fmt: skip


def assert_refused(stack: Stack, name: str, result: dict) -> None:
    if result["bound"]:
        got = leaked(stack, result["heads"])
        pytest.fail(
            f"a student bound {name}'s port {stack.ports[name]} and received "
            f"{len(result['heads'])} requests; credentials among them: {got or 'none'}"
        )
    assert result["errno"] == 13, f"bind failed, but not for lack of privilege: {result}"


@pytest.mark.parametrize("name", ["exporter", *DEBIAN, *HUB_PAGES])
def test_a_student_cannot_take_a_port_while_its_daemon_restarts(running, name):
    stack = running
    daemon = stack.daemons[name]
    daemon.stop()
    holder = student_holds(stack, stack.ports[name])
    daemon.start()  # while the student's loop runs
    assert_refused(stack, name, outcome(stack, holder))
    stack.wait(lambda: serves(stack, name), WITHIN_SECONDS, lambda: daemon.log_tail())


@pytest.mark.parametrize("name", ["hub", "grafana"])
def test_a_student_cannot_take_the_hubs_or_grafanas_port(running, name):
    """No daemon of these runs here: the port stays free, and Prometheus's hub job and the
    exporter's hub collector (credentials in hand) call the hub's port meanwhile."""
    holder = student_holds(running, running.ports[name])
    assert_refused(running, name, outcome(running, holder))


# --- the port comes free --------------------------------------------------------------


def held_long_enough(daemon: units.Supervised) -> Callable[[], bool]:
    """True once the daemon (just started, its port taken) has failed to start more often
    than systemd's default start limit allows, or was given up; or waits for its port in its
    running process (half a second in a row, so not a daemon about to exit)."""
    exits, waiting = len(daemon.exits), []

    def check() -> bool:
        if len(daemon.exits) - exits >= HELD_FOR_FAILURES or daemon.gave_up:
            return True
        waiting.append(daemon.process is not None and "in use" in daemon.since_start())
        return waiting[-5:] == [True] * 5

    return check


@pytest.mark.parametrize("name", ["exporter", *DEBIAN, *HUB_PAGES])
def test_the_daemon_serves_within_a_minute_of_its_port_coming_free(running, name, record_property):
    stack = running
    daemon, port = stack.daemons[name], stack.ports[name]
    daemon.stop()
    with socket.socket() as held:  # root's: a port no student can hold
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", port))
        held.listen()
        daemon.start()
        stack.wait(held_long_enough(daemon), 180, lambda: f"{name} to find its port taken")
        freed = time.monotonic()
    stack.wait(lambda: serves(stack, name), WITHIN_SECONDS, lambda: daemon.log_tail())
    seconds = time.monotonic() - freed
    record_property("seconds_back", round(seconds, 1))
    print(f"{name}: serving {seconds:.1f} s after its port came free")
