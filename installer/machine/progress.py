"""What the lecturer sees while a long command runs (TLJH and PyTorch take 10+ minutes).

On a terminal, one live line: the step (N of the plan's total), the time it has taken, and
the command's last line of output, redrawn in place. Elsewhere (the resume unit writes to
the journal) a plain heartbeat line every minute instead. A command that prints nothing and
uses no CPU for ``stall_after`` seconds gets one clear message per stall; it is never killed
for it.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

HEARTBEAT_SECONDS = 60.0
REDRAW_SECONDS = 0.5


def elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class Progress:
    def __init__(self, out: TextIO, *, live: bool | None = None, stall_after: float = 300.0):
        self.out = out
        self.live = out.isatty() if live is None else live
        self.stall_after = stall_after
        self.label = ""
        self.step_started = time.monotonic()
        self.last_line = ""
        self._drawn = False
        self._last_draw = 0.0
        self._last_heartbeat = 0.0

    def step(self, number: int, total: int, title: str) -> None:
        self.label = f"[{number}/{total}] {title}"
        self.step_started = time.monotonic()
        self._last_heartbeat = self.step_started

    def output(self, line: str) -> None:
        if line.strip():
            self.last_line = line.strip()
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self.live and now - self._last_draw >= REDRAW_SECONDS:
            self._draw(now)
        elif not self.live and now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = now
            self._say(f"      ... {elapsed(now - self.step_started)}: {self.last_line}")

    def stalled(self, command: str, seconds: float, protected: bool) -> None:
        why = (
            "It is left to finish: stopping apt or dpkg halfway breaks the package database."
            if protected
            else "It is left running; Ctrl-C stops it, and running the same command again "
            "resumes at this step."
        )
        self._say(
            f"      `{command}` has printed nothing and used no CPU for {elapsed(seconds)}: "
            f"it may be waiting for the network or a lock. {why} Its output goes to the log."
        )

    def interrupted(self, command: str) -> None:
        self._say(
            f"      Ctrl-C: `{command}` is left to finish, because stopping apt or dpkg "
            "halfway breaks the package database; the installer stops after it."
        )

    def finished(self) -> None:
        """The command ended: erase the live line before ordinary output continues."""
        self._erase()
        self.out.flush()
        self.last_line = ""

    def _draw(self, now: float) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = f"{self.label}  {elapsed(now - self.step_started)}  {self.last_line}"
        self.out.write("\r\x1b[K" + text[:width])
        self.out.flush()
        self._drawn = True
        self._last_draw = now

    def _say(self, text: str) -> None:
        self._erase()
        self.out.write(text + "\n")
        self.out.flush()

    def _erase(self) -> None:
        if self._drawn:
            self.out.write("\r\x1b[K")
            self._drawn = False
