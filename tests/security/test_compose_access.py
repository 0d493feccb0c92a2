"""docker-compose.yml has the protections of the installed server (Docker cannot run here).

Statically: every daemon asks for a credential, from a secret file; no daemon shares the
host's network, where students have shells, and what the host reaches is published on
loopback ports below 1024, the installer's; every client in the stack dials a service on the
compose network or the host's privileged ports; the retention is the installer's; Grafana's
sign-in settings are the installer's. For real: node_exporter, as the compose file runs it, in
a network namespace of its own; the Alertmanager health check (amtool with its HTTP config
file) against a real Alertmanager behind basic auth, and the `webauth` command that makes
secrets/web-config.yml.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from dlcourse_installer.inputs.options import Options
from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import Ports
from dlcourse_installer.rendered import grafana_config, templates, webauth
from dlcourse_testing.alerting import Process, find_tool, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# Services allowed the host's network namespace, where every student has a shell and may bind
# any free port from 1024 up while a daemon restarts; and why. None needs it.
HOST_NETWORK: dict[str, str] = {}
# What the host reaches, each on the installer's port of the same name (installer/layout/ports.py):
# the exporter (the hub's GPU hook, the status page), Grafana (the hub's proxy), Prometheus and
# Alertmanager (the instructor, ssh -L). node_exporter is Prometheus's alone.
PUBLISHED = {"exporter", "prometheus", "alertmanager", "grafana"}
# The host as the containers see it (extra_hosts: host-gateway).
HOST_GATEWAY = "host.docker.internal"
# node_exporter's collectors that read the network namespace they run in (/proc/net,
# /sys/class/net, per-namespace sysctls), by the prefixes of their series: in its own
# namespace they would describe the container, not the host.
NETWORK_NAMESPACE_SERIES = ("node_network_", "node_netstat_", "node_sockstat_", "node_arp_",
                            "node_nf_conntrack_", "node_udp_queues", "node_ipvs_",
                            "node_bonding_", "node_nfs_", "node_nfsd_")  # fmt: skip


def test_every_daemon_asks_for_a_credential():
    assert SERVICES["exporter"]["environment"]["DLCOURSE_WEB_TOKEN_FILE"].startswith(
        "/run/secrets/"
    )
    for name, web_config in (
        ("prometheus", "/etc/prometheus/web-config.yml"),
        ("alertmanager", "/etc/alertmanager/web-config.yml"),
        ("node-exporter", "/etc/node-exporter/web-config.yml"),
    ):
        service = SERVICES[name]
        assert f"--web.config.file={web_config}" in service["command"], name
        targets = {s["target"] for s in service["secrets"] if isinstance(s, dict)}
        assert web_config in targets, f"{name}: the web config is a secret file"
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    mounted = {s["target"] for s in SERVICES["prometheus"]["secrets"] if isinstance(s, dict)}
    for client in [*prometheus["scrape_configs"], *prometheus["alerting"]["alertmanagers"]]:
        files = [
            client.get("authorization", {}).get("credentials_file"),
            client.get("basic_auth", {}).get("password_file"),
        ]
        assert [f for f in files if f], f"{client.get('job_name', 'alerting')} has no credential"
        assert {f for f in files if f} <= mounted


def published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port, either syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
        else:
            *host_ip, host_port, target = str(port).split(":")
            ports.append(((host_ip or [""])[0], int(host_port), int(target)))
    return ports


def listen_port(name: str) -> int:
    """The port a service listens on inside its own network namespace."""
    if name == "grafana":
        ini = configparser.ConfigParser(interpolation=None)
        ini.read(REPO / "grafana" / "grafana.ini")
        return int(ini["server"]["http_port"])
    if name == "exporter":
        dockerfile = (REPO / "Dockerfile").read_text()
        return int(re.search(r'"--web\.listen-address=[^:"]*:(\d+)"', dockerfile).group(1))
    [address] = [a for a in SERVICES[name]["command"] if a.startswith("--web.listen-address=")]
    return int(address.rpartition(":")[2])


def test_no_daemon_shares_the_host_network():
    for name, service in SERVICES.items():
        if service.get("network_mode") == "host":
            assert name in HOST_NETWORK, f"{name}: network_mode host, where students bind"


def test_published_ports_are_on_loopback_below_1024():
    """Docker's daemon (root) binds a published host port itself (moby
    libnetwork/drivers/bridge/port_mapping_linux.go, addPortMappings): below 1024 no
    student can hold it first, whether the container runs or restarts."""
    for name, service in SERVICES.items():
        expected = [getattr(Ports(), name)] if name in PUBLISHED else []
        ports = published_ports(service)
        assert [host_port for _, host_port, _ in ports] == expected, name
        for host_ip, host_port, target in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} beyond the loopback"
            assert host_port < 1024, f"{name}: {host_port} is anyone's to bind"
            assert target == listen_port(name), f"{name} listens elsewhere than {target}"


def clients() -> list[tuple[str, str, str]]:
    """(service, what, URL) for every address a service of the stack dials."""
    found = []
    prometheus = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    for client in [*prometheus["scrape_configs"], *prometheus["alerting"]["alertmanagers"]]:
        for config in client["static_configs"]:
            found += [("prometheus", client.get("job_name", "alerting"), f"http://{target}")
                      for target in config["targets"]]  # fmt: skip
    datasources = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "dlcourse.yml").read_text()
    )
    found += [("grafana", d["name"], d["url"]) for d in datasources["datasources"]]
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(REPO / "grafana" / "grafana.ini")
    found += [("grafana", key, ini["auth.generic_oauth"][key]) for key in ("token_url", "api_url")]
    found.append(("exporter", "hub", SERVICES["exporter"]["environment"]["JUPYTERHUB_API_URL"]))
    return found


def test_every_client_dials_a_service_or_a_privileged_host_port():
    """Credentials go to a service on the compose network (its own namespace: no student
    binds there) or to the host's ports below 1024 (TLJH's proxy), never to a port a student
    could hold on the host."""
    for client, what, url in clients():
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}[parts.scheme]
        if parts.hostname == HOST_GATEWAY:
            assert port < 1024, f"{client} {what}: {url} is anyone's to bind"
            assert f"{HOST_GATEWAY}:host-gateway" in SERVICES[client]["extra_hosts"], client
        else:
            assert parts.hostname in SERVICES, f"{client} {what}: {url} is not a service"
            assert port == listen_port(parts.hostname), f"{client} {what}: {url}"
            assert "network_mode" not in SERVICES[parts.hostname], parts.hostname


def node_metrics_in_use() -> set[str]:
    """node_exporter's series the dashboards, recording rules and alerts read."""
    texts = [p.read_text() for p in (REPO / "grafana" / "dashboards").glob("*.json")]
    texts += [p.read_text() for p in (REPO / "prometheus" / "rules").glob("*.yml")]
    return {name for text in texts for name in re.findall(r"\bnode_[a-z]+_[A-Za-z_]+", text)}


@pytest.mark.live
def test_node_exporter_in_its_own_network_namespace(tmp_path):
    """The compose command line, as the image runs it (user nobody), in a fresh network
    namespace as on the compose network: every node_* series the dashboards and alerts read
    is there (memory and CPU from /proc, filesystems from PID 1's mount table), and nothing
    that would describe the container's network as the host's."""
    binary = find_tool("prometheus-node-exporter", "node_exporter")
    unshare, nsenter, ip = find_tool("unshare"), find_tool("nsenter"), find_tool("ip")
    if None in (binary, unshare, nsenter, ip):
        pytest.skip("node_exporter, unshare, nsenter and ip are needed")
    port = free_port()
    argv = [a for a in SERVICES["node-exporter"]["command"]
            if not a.startswith(("--web.", "--path.rootfs="))]  # fmt: skip
    argv += [f"--web.listen-address=127.0.0.1:{port}"]
    # prom/node-exporter's Dockerfile: USER nobody.
    as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups --"
    node = Process("node-exporter", [unshare, "--net", "--", "sh", "-c",
                   f'"{ip}" link set lo up && exec {as_nobody} "$@"', "sh", binary, *argv],
                   tmp_path)  # fmt: skip
    scrape = [nsenter, f"--net=/proc/{node.popen.pid}/ns/net", "--", sys.executable, "-c",
              "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
              f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())"]  # fmt: skip

    def metrics() -> str | None:
        assert node.popen.poll() is None, node.log_tail()
        answer = subprocess.run(scrape, capture_output=True, text=True, timeout=30)
        return answer.stdout if answer.returncode == 0 else None

    try:
        text = wait_until(metrics, 60, node.log_tail)
    finally:
        node.stop()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}  # fmt: skip
    assert {"node_memory_MemTotal_bytes", "node_filesystem_size_bytes"} <= node_metrics_in_use()
    assert node_metrics_in_use() <= names, node_metrics_in_use() - names
    leaked = sorted(n for n in names if n.startswith(NETWORK_NAMESPACE_SERIES))
    assert not leaked, leaked


def test_the_retention_is_the_installers():
    assert (
        f"--storage.tsdb.retention.time={templates.RETENTION}" in SERVICES["prometheus"]["command"]
    )


def test_grafana_signs_in_as_the_installed_grafana_does():
    ours = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ours.read(REPO / "grafana" / "grafana.ini")
    installed = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    installed.read_string(
        grafana_config.grafana_ini(
            Paths(), Ports(), public_url="https://course.example.edu", grafana_port=None,
            staff_group=Options().staff_group,
        )
    )  # fmt: skip
    # Everything but what names this server's addresses and files (an installed hub is on
    # dlcourse's port, installer/layout/ports.py; a compose host's TLJH keeps its own).
    local = {"root_url", "domain", "client_secret", "auth_url", "signout_redirect_url",
             "cookie_secure", "default_home_dashboard_path", "token_url", "api_url"}  # fmt: skip
    for section in ("auth", "auth.basic", "auth.anonymous", "auth.generic_oauth", "users"):
        keys = (set(ours[section]) | set(installed[section])) - local
        for key in keys:
            assert ours[section].get(key) == installed[section].get(key), f"[{section}] {key}"
    assert ours["auth.generic_oauth"]["auth_url"].startswith("$__env{DLCOURSE_HUB_URL}/hub/")
    for key, path in (("token_url", "/hub/api/oauth2/token"), ("api_url", "/hub/api/user")):
        assert ours["auth.generic_oauth"][key].endswith(path)
        assert installed["auth.generic_oauth"][key].endswith(path)
    assert SERVICES["grafana"]["environment"]["DLCOURSE_HUB_URL"].startswith("${DLCOURSE_HUB_URL:?")


def test_the_alertmanager_health_check_works_with_its_credential(alerting_stack, tmp_path):
    """The compose health check's amtool call, with the secret's path moved here."""
    stack = alerting_stack(targets={})
    password = tmp_path / "prometheus_password"
    password.write_text(stack.auth[1] + "\n")
    http_config = tmp_path / "healthcheck-http.yml"
    http_config.write_text(
        (REPO / "prometheus" / "healthcheck-http.yml")
        .read_text()
        .replace("/run/secrets/prometheus_password", str(password))
    )
    test = SERVICES["alertmanager"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "amtool"]
    argv = [find_tool("amtool"), *test[2:]]
    argv = [
        a.replace("127.0.0.1:9093", stack.alertmanager_url.removeprefix("http://")) for a in argv
    ]
    argv = [a.replace("/etc/alertmanager/healthcheck-http.yml", str(http_config)) for a in argv]
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    password.write_text("wrong\n")  # the check does fail without the right credential
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode != 0


@pytest.mark.live
def test_the_web_config_command(tmp_path):
    (tmp_path / "a").write_text("first-password\n")
    (tmp_path / "b").write_text("second-password\n")
    result = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer.rendered.webauth",
         f"prometheus={tmp_path / 'a'}", f"grafana={tmp_path / 'b'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    users = webauth.parse_web_config(result.stdout)
    assert webauth.hash_matches("first-password", users["prometheus"])
    assert webauth.hash_matches("second-password", users["grafana"])
    assert "first-password" not in result.stdout and "second-password" not in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer.rendered.webauth", f"x={tmp_path / 'missing'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
