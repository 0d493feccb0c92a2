"""A setting of the exporter: its flag, environment twin, TOML key, default and check.

Declared beside the code that uses it (the general ones in ``config.py``, each collector's
in its module); ``config.py`` turns them into flags, reads and checks them, and
``docs.py`` lists them in docs/exporter.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    key: str  # dotted, as in the flag: "web.listen-address"
    help: str
    default: Any = None
    parse: Callable[[str], Any] = str  # raises ValueError with a short reason
    # Read after the TOML file, when nothing else set it (e.g. JupyterHub's own variables).
    fallback_env: tuple[str, ...] = ()
    # Last of all, a default made from the environment (the in-cluster API server), and
    # what docs/exporter.md says of it.
    env_default: Callable[[Mapping[str, str]], str | None] | None = None
    env_default_text: str = ""
    # A "-file" option that names a file holding a secret (never the secret itself, which
    # would show in argv): the secret is kept under the key without "-file", read from the
    # file, else from one of secret_env.
    secret: bool = False
    secret_env: tuple[str, ...] = ()
    # (key, value): the option means something only when that other option has that value;
    # set there by its flag, variable or file key while the other has not, it is refused
    # (a setting that is silently ignored looks like one that works).
    only_with: tuple[str, str] | None = None

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    @property
    def env(self) -> str:
        return "DLCOURSE_" + self.key.upper().replace(".", "_").replace("-", "_")

    @property
    def dest(self) -> str:
        return self.key.replace(".", "_").replace("-", "_")

    @property
    def secret_key(self) -> str:
        """Where the secret a "-file" option names is kept: "hub.token-file" -> "hub.token"."""
        return self.key.removesuffix("-file")


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A parser for a number of seconds in [low, high]: no nan, inf or 1e-9 busy loops."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def ascii_digits(text: str) -> bool:
    """0-9 only: str.isdigit() is also true for '²' (which int() refuses) and '١' (which
    int() reads as 1)."""
    return text.isascii() and text.isdigit()


def count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not ascii_digits(text.strip()) or not low <= int(text) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(text)

    return parse


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be {' or '.join(choices)}")
        return text

    return parse
