"""Where the hub's proxy serves students' servers on this machine: the culler's way to
``/user/NAME/api/kernels`` (read by rendered/students.py's hub snippet when the hub starts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def hub_public_url(config: Mapping[str, Any]) -> tuple[str, bool]:
    """Where the hub's proxy (TLJH's traefik) routes /user/NAME/ on this machine, and whether
    to check its certificate. With HTTPS on, traefik's http entrypoint only redirects to
    https (tljh/traefik.toml.tpl, TLJH 2.0.0), whose certificate names the public domain, not
    127.0.0.1: the culler then talks TLS to loopback without checking the name."""
    https = config.get("https") or {}
    if isinstance(https, Mapping) and https.get("enabled") is True:
        return f"https://127.0.0.1:{int(https.get('port', 443))}", False
    http = config.get("http") or {}
    port = http.get("port", 80) if isinstance(http, Mapping) else 80
    return f"http://127.0.0.1:{int(port)}", True
