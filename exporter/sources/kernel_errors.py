"""CUDA out-of-memory errors a kernel noted about itself, read when it dies.

The exporter cannot see a notebook's output. Every kernel of the students' environment
loads a small IPython extension (installer/probes/kernel_gpu_errors.py, installed by the
installer into ``sys.prefix/etc/ipython``) that notes each CUDA out-of-memory error a cell
raised in a file beside the kernel's connection file: ``kernel-<id>.json`` ->
``kernel-<id>-gpu-errors.jsonl``, one JSON object per line: ``{"pid": 4242, "at": <unix
time>, "error": "cuda_oom", "message": "CUDA out of memory. Tried to allocate ..."}``.

The student owns that file and can write anything into it, so it is believed only about
that student's own kernel, and read like any input from outside:
- only when the kernel whose connection file it sits beside has died, so nothing is read
  while everything is well;
- opened without following a symbolic link at its end (``O_NOFOLLOW``) and without
  blocking (a FIFO in its place cannot hang the exporter), and only used when it is a
  regular file owned by the account the kernel ran as: a classmate's file, or root's, is
  never read through a link in the student's own folders;
- at most its last ``MAX_READ_BYTES``, at most ``MAX_RECORDS`` records, each message cut.
A record names the pid of the kernel that wrote it, so a kernel restarted under the same
connection file does not inherit its predecessor's errors.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass

from ..untrusted import shown_text

SUFFIX = "-gpu-errors.jsonl"  # the IPython extension writes the same name
MAX_READ_BYTES = 16 * 1024
MAX_RECORDS = 100
MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class GpuError:
    pid: int
    at: float  # unix time
    error: str  # "cuda_oom"
    message: str  # cleaned and cut


def errors_path(connection_file: str) -> str | None:
    """Where the kernel with this connection file notes its GPU errors; None for a
    connection file that is not a path to a ``.json`` file."""
    if not os.path.isabs(connection_file) or not connection_file.endswith(".json"):
        return None
    return connection_file.removesuffix(".json") + SUFFIX


def read_gpu_errors(path: str, owner_uid: int) -> list[GpuError]:
    """The records of the file at path, if it is a regular file owned by owner_uid; [] for
    anything else (missing, a link, a FIFO, another account's, unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner_uid:
            return []
        start = max(0, info.st_size - MAX_READ_BYTES)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, MAX_READ_BYTES)
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # began in the middle of a line
    return parse_records(lines)[-MAX_RECORDS:]


def parse_records(lines: list[bytes]) -> list[GpuError]:
    """Every well-formed record; anything else is skipped."""
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        pid, at = record.get("pid"), record.get("at")
        error, message = record.get("error"), record.get("message", "")
        if (
            isinstance(pid, int)
            and not isinstance(pid, bool)
            and isinstance(at, (int, float))
            and not isinstance(at, bool)
            and math.isfinite(at)
            and error == "cuda_oom"
            and isinstance(message, str)
        ):
            found.append(GpuError(pid, float(at), error, shown_text(message, MAX_MESSAGE_CHARS)))
    return found
