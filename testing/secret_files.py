"""Files that a secret reader must refuse, for the tests of each program that reads one:
``hostile_secret_files(folder)`` -> {what: path}, and ``finishes_within(seconds, read)``,
which fails a test whose reader would hang instead of hanging with it.

Each would hang or flood a reader that trusts the path: a FIFO blocks open() until someone
writes, /dev/zero never ends (2.4 GB in 6 s for ``read_text()``), and a link hides either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# What a reader says for each (dlcourse_secretfile), so tests of every caller check the same.
REASONS = {
    "fifo": "not a regular file (a FIFO)",
    "dev-zero": "not a regular file (a character device)",
    "link-to-dev-zero": "not a regular file (a character device)",
    "5-kib": "larger than 4096 bytes",
    "empty": "empty",
}


def hostile_secret_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    big = folder / "5-kib"
    big.write_text("t" * 5 * 1024)
    empty = folder / "empty"
    empty.write_text("\n")
    link = folder / "link-to-dev-zero"
    link.symlink_to("/dev/zero")
    return {
        "fifo": fifo,
        "dev-zero": Path("/dev/zero"),
        "link-to-dev-zero": link,
        "5-kib": big,
        "empty": empty,
    }


def finishes_within(seconds: float, read: Callable[[], T]) -> T:
    """read() in a thread: its result or its exception, or AssertionError if it is still
    reading after ``seconds`` (a FIFO would hold it forever; it is left behind, a daemon)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, read()))
        except BaseException as exc:  # handed to the caller below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still reading after {seconds} s"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
