"""The GPUs and the running servers' assignments, as the exporter sees them (/api/class).

The hub cannot ask NVML itself: TLJH runs it with ``PrivateDevices=yes``
(tljh/systemd-units/jupyterhub.service, TLJH 2.0.0), so no /dev/nvidia* exists for it. The
exporter, which does read NVML, answers with its bearer token, which the hub (root) reads
from /etc/dlcourse/exporter-token as the status page does. Stdlib only: this runs inside
the hub's process, in TLJH's hub environment.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dlcourse_installer.gpu_policy import GpuLoad

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a class of hundreds is tens of kB
TIMEOUT_SECONDS = 3.0  # a spawn waits this long at most for the exporter


class ExporterUnavailable(Exception):
    """The exporter could not be asked or gave an answer that is not /api/class."""


@dataclass(frozen=True)
class ClassGpus:
    gpus: tuple[GpuLoad, ...]
    assigned: dict[str, str]  # user -> GPU uuid of each running server with an assignment


def read_class_gpus(url: str, token_file: str) -> ClassGpus:
    """GET {url}/api/class with the exporter's token; raises ExporterUnavailable."""
    try:
        token = Path(token_file).read_text().strip()
        request = urllib.request.Request(
            f"{url.rstrip('/')}/api/class", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            body = answer.read(MAX_ANSWER_BYTES + 1)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise ExporterUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if len(body) > MAX_ANSWER_BYTES:
        raise ExporterUnavailable(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    return parse_class_gpus(body)


def parse_class_gpus(body: bytes) -> ClassGpus:
    """The GPUs that are up and the assignments, from an /api/class answer."""
    try:
        status = json.loads(body)
        gpus = tuple(
            GpuLoad(
                index=int(g["gpu"]),
                uuid=str(g["uuid"]),
                memory_used_bytes=float(g.get("memory_used_bytes") or 0),
                memory_total_bytes=float(g.get("memory_total_bytes") or 0),
            )
            for g in status["gpus"]
            if g.get("up") and g.get("uuid")
        )
        assigned = {
            str(s["user"]): str(s["assigned_gpu"]["uuid"])
            for s in status["students"]
            if s.get("assigned_gpu")
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ExporterUnavailable(f"not an /api/class answer: {type(exc).__name__}: {exc}") from exc
    return ClassGpus(gpus, assigned)
