"""Where each service listens: every port on 127.0.0.1, and every one below 1024.

Students have shells on the server. A port from ``net.ipv4.ip_unprivileged_port_start``
(1024 by default) up is anyone's to bind while nobody holds it: while a daemon restarts, a
student's bind() loop would win its port and its clients would hand the student their
credentials (a bearer token, a basic-auth password, the hub's cookies). Below 1024 only
root and holders of CAP_NET_BIND_SERVICE may bind, on every address; the non-root daemons
get that one capability from their units (templates.py), and the preflight refuses a
machine where the sysctl lets everyone bind these ports (preflight.py, docs/security.md).

945-952: netbase's /etc/services (6.4, the excerpt of IANA's registry Debian and Ubuntu
ship) names none of them, nor anything from 874 to 988; BIND's rndc takes 953.

One place, so a test can render the whole configuration on free ports
(``dlcourse-install render --port prometheus=PORT``) and run the real daemons from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    # TLJH's hub itself: TLJH sets c.JupyterHub.hub_port = 15001 (tljh/jupyterhub_config.py),
    # which dlcourse moves here (templates.hub_port_snippet).
    hub: int = 951
    exporter: int = 945
    status: int = 946  # the class-status page, a hub service (dlcourse_status)
    prometheus: int = 947
    alertmanager: int = 948
    node_exporter: int = 949
    grafana: int = 950
    student: int = 952  # each student's own page, a hub service (dlcourse_status.student)

    def address(self, service: str) -> str:
        """``127.0.0.1:PORT`` of one service (a field name)."""
        return f"{LOOPBACK}:{getattr(self, service)}"

    @property
    def hub_api(self) -> str:
        return f"http://{self.address('hub')}/hub/api"

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_overrides(self, overrides: dict[str, int]) -> Ports:
        return replace(self, **overrides)

    def numbers(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.names()}


# The systemd unit whose processes listen on each port: what "already ours" means to the
# preflight. The hub starts the status page as its own child, in its own unit.
UNITS = {
    "exporter": "dlcourse-exporter.service",
    "status": "jupyterhub.service",
    "student": "jupyterhub.service",
    "prometheus": "prometheus.service",
    "alertmanager": "prometheus-alertmanager.service",
    "node_exporter": "prometheus-node-exporter.service",
    "grafana": "grafana-server.service",
    "hub": "jupyterhub.service",
}


def parse_override(text: str) -> tuple[str, int]:
    """``prometheus=19090`` -> ("prometheus", 19090); ValueError with a one-line reason."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in Ports.names():
        names = ", ".join(Ports.names())
        raise ValueError(f"--port {text!r}: use NAME=PORT with NAME one of {names}")
    # 0-9 only: str.isdigit() is also true for '²' (int() refuses it) and '٣' (int() reads 3).
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise ValueError(f"--port {text!r}: {value!r} is not a TCP port")
    return name, int(value)
