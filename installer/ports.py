"""Where each service listens: every port on 127.0.0.1, the defaults of Ubuntu's packages.

One place, so a test can render the whole configuration on free ports
(``dlcourse-install render --port prometheus=PORT``) and run the real daemons from it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    hub: int = 15001  # TLJH's hub API (c.JupyterHub.hub_port in tljh/jupyterhub_config.py)
    exporter: int = 9945
    prometheus: int = 9090
    alertmanager: int = 9093
    node_exporter: int = 9100
    grafana: int = 3000
    status: int = 9946  # the class-status page, a hub service (dlcourse_status)
    student: int = 9947  # each student's own page, a hub service (dlcourse_status.student)

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


def parse_override(text: str) -> tuple[str, int]:
    """``prometheus=19090`` -> ("prometheus", 19090); ValueError with a one-line reason."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in Ports.names():
        names = ", ".join(Ports.names())
        raise ValueError(f"--port {text!r}: use NAME=PORT with NAME one of {names}")
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"--port {text!r}: {value!r} is not a TCP port")
    return name, int(value)
