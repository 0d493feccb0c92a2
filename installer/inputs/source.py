"""What ``--source`` names: a pip spec, or a checkout's folder with a digest of its files,
so that the same folder with new contents (a git pull) is a new source to install."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

# A checkout's own outputs and caches: not part of what pip builds from it.
NOT_SOURCE = {".git", ".venv", ".demo", "build", "dist", "node_modules", "__pycache__", "tmp"}
# Bounds on reading a checkout: dlcourse's is about 300 files and 2 MB.
MAX_FILES = 20_000
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """What ``--source`` installs: a pip spec or a checkout's folder, and for a folder a digest
    of its files, so that the same folder with new contents (a git pull) is a new source."""

    spec: str
    digest: str = ""


def read_source(spec: str) -> Source:
    """The source a ``--source`` names; ValueError (a short reason) for a folder that is no
    checkout or that is too big to be one."""
    if not os.path.isdir(spec):
        return Source(spec)  # a pip spec: the text itself says which release
    if not os.path.exists(os.path.join(spec, "pyproject.toml")):
        raise ValueError("a folder without pyproject.toml is no dlcourse checkout")
    digest = hashlib.sha256()
    files = size = 0
    for top, dirs, names in os.walk(spec):
        dirs[:] = sorted(
            d for d in dirs if d not in NOT_SOURCE and not d.startswith(".")
            and not d.endswith(".egg-info")
        )  # fmt: skip
        for name in sorted(names):
            path = os.path.join(top, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            files += 1
            size += os.path.getsize(path)
            if files > MAX_FILES or size > MAX_BYTES:
                raise ValueError(
                    f"more than {MAX_FILES} files or {MAX_BYTES >> 20} MB: no dlcourse checkout"
                )
            digest.update(os.path.relpath(path, spec).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return Source(spec, digest.hexdigest()[:16])
