"""Prints the sha256 of the extension's sources, as labextension/BUILT_FROM records them at each
`make labextension`: a unit test compares, so a source changed without a rebuild fails."""

import hashlib
import sys
from pathlib import Path

SOURCES = ("package.json", "package-lock.json", "src/index.js")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return h.hexdigest()


if __name__ == "__main__":
    sys.stdout.write(digest(Path(__file__).resolve().parent) + "\n")
