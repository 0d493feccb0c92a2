"""One entry of the registry (generated.plan): a file the installer writes, with its path,
the part (step) that writes it, its content or how its secret is made, mode and owner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Derived(Protocol):
    """A file made from secrets the plan writes before it (a bcrypt hash, a netrc).

    Called with a reader of those secrets (server path -> value) and the file's current text
    (None if absent), it returns the text; it keeps what is current when still right (a hash
    that matches), so a rerun changes nothing. Its repr names its inputs (for ``digest``).
    """

    def __call__(self, secret: Callable[[str], str], current: str | None) -> str: ...


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # on the server
    part: str  # which step writes it, and when (checklist/step.py ensure_part)
    # The text; None for a secret: a fresh random token, made once, never printed or logged.
    content: str | None
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    # The packaged asset it comes from (rules, dashboards, provisioning): the dry run names
    # it instead of printing it.
    origin: str = ""
    # Made from secrets (content None): never printed or logged either.
    derived: Derived | None = None

    @property
    def is_secret(self) -> bool:
        return self.content is None and self.derived is None
