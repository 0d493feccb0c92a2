"""The load on each GPU and the running servers' assignments, as the exporter sees them
(/api/class).

The hub cannot ask NVML itself: TLJH runs it with ``PrivateDevices=yes``
(tljh/systemd-units/jupyterhub.service, TLJH 2.0.0), so no /dev/nvidia* exists for it. The
exporter, which does read NVML, answers with its bearer token, which the hub (root) reads
from /etc/dlcourse/exporter-token as the status page does. Stdlib only: this runs inside
the hub's process, in TLJH's hub environment.

The answer is untrusted: whoever holds the exporter's port answers it. It is bounded in time
(one deadline for connecting, sending and every byte of the answer), in size, in the count
of GPUs and students and in the type of every value; one that is out of bounds is refused
whole. It can never add a GPU: the hook takes the list from the driver (nvidia_devices.py).
"""

from __future__ import annotations

import http.client
import io
import json
import math
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from dlcourse_installer.hub.gpu_policy import GpuLoad
from dlcourse_secretfile import SecretFileError, read_secret

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a class of hundreds is tens of kB
DEADLINE_SECONDS = 3.0  # a spawn waits this long at most for the exporter, all told
MAX_GPUS = 64  # NVSwitch systems carry 8 or 16
MAX_STUDENTS = 10_000
MAX_USER_CHARS = 255
MAX_UUID_CHARS = 96  # GPU-<36>, MIG-<36>, or the older MIG-GPU-<36>/<gi>/<ci>


class ExporterUnavailable(Exception):
    """The exporter could not be asked or gave an answer that is not /api/class."""


@dataclass(frozen=True)
class ClassGpus:
    gpus: tuple[GpuLoad, ...]  # the GPUs the exporter reports up, with their memory
    assigned: dict[str, str]  # user -> GPU uuid of each running server with an assignment


def read_class_gpus(url: str, token_file: str) -> ClassGpus:
    """GET {url}/api/class with the exporter's token; raises ExporterUnavailable."""
    try:
        token = read_secret(token_file)
    except SecretFileError as exc:
        raise ExporterUnavailable(f"token file {exc}") from exc
    headers = {"Authorization": f"Bearer {token}"}
    return parse_class_gpus(get_within(f"{url.rstrip('/')}/api/class", headers))


def get_within(url: str, headers: dict[str, str], seconds: float = DEADLINE_SECONDS) -> bytes:
    """The body of a 200 answer to GET url, all of it received within ``seconds``.

    urllib's timeout bounds each socket operation, not the whole: a server that sends one
    byte every 2 s held a spawn for as long as it liked. Here every operation gets what is
    left of one deadline; the stdlib's HTTP parser then reads what arrived."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ExporterUnavailable(f"{url}: not an http://HOST:PORT address")
    deadline = time.monotonic() + seconds

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}",
             "Accept-Encoding: identity", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]  # fmt: skip
    received = bytearray()
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=left()) as s:
            s.settimeout(left())
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            while True:
                s.settimeout(left())
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
                if len(received) > MAX_ANSWER_BYTES:
                    raise ExporterUnavailable(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    except TimeoutError as exc:  # the deadline, or a socket operation that ran into it
        raise ExporterUnavailable(f"no complete answer within {seconds:g} s") from exc
    except OSError as exc:  # refused, reset, unreachable
        raise ExporterUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return body_of(bytes(received))


class _Received:
    """What http.client.HTTPResponse reads a response from (sock.makefile)."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self._file


def body_of(response_bytes: bytes) -> bytes:
    answer = http.client.HTTPResponse(_Received(response_bytes), method="GET")
    try:
        answer.begin()
        if answer.status != 200:
            raise ExporterUnavailable(f"HTTP {answer.status} {answer.reason}")
        if answer.getheader("Content-Encoding", "identity") != "identity":
            raise ExporterUnavailable("an encoded answer, though identity was asked for")
        return answer.read()
    except (http.client.HTTPException, ValueError) as exc:
        raise ExporterUnavailable(f"not an HTTP answer: {type(exc).__name__}: {exc}") from exc


def parse_class_gpus(body: bytes) -> ClassGpus:
    """The GPUs that are up and the assignments, from an /api/class answer."""
    try:
        status = json.loads(body)
        gpus = tuple(_gpu(g) for g in _items(status, "gpus", MAX_GPUS) if g.get("up") is True)
        assigned = {
            _name(s["user"], MAX_USER_CHARS): _name(s["assigned_gpu"]["uuid"], MAX_UUID_CHARS)
            for s in _items(status, "students", MAX_STUDENTS)
            if s.get("assigned_gpu") is not None
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ExporterUnavailable(f"not an /api/class answer: {type(exc).__name__}: {exc}") from exc
    return ClassGpus(gpus, assigned)


def _items(status: Any, key: str, limit: int) -> list[dict[str, Any]]:
    items = status[key]
    if not isinstance(items, list) or len(items) > limit:
        raise ValueError(f"{key}: a list of at most {limit} expected")
    if not all(isinstance(item, dict) for item in items):
        raise TypeError(f"{key}: objects expected")
    return items


def _gpu(gpu: dict[str, Any]) -> GpuLoad:
    index = gpu["gpu"]
    # 0-9 only: str.isdigit() is also true for '²' and '٣' (which int() reads as 3).
    if not (isinstance(index, str) and index.isascii() and index.isdigit() and len(index) <= 3):
        raise ValueError(f"gpu {index!r}: an index expected")
    return GpuLoad(
        index=int(index),
        uuid=_name(gpu["uuid"], MAX_UUID_CHARS),
        memory_used_bytes=_bytes(gpu.get("memory_used_bytes", 0)),
        memory_total_bytes=_bytes(gpu.get("memory_total_bytes", 0)),
    )


def _name(value: Any, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValueError(f"a name of 1 to {limit} characters expected")
    return value


def _bytes(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r}: a number of bytes expected")
    if not (math.isfinite(value) and 0 <= value < 2**64):
        raise ValueError(f"{value!r}: a number of bytes expected")
    return float(value)
