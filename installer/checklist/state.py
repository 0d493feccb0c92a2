"""What earlier runs did: the steps done (and with which inputs), what they installed where,
a pending reboot."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.machine.host import Host


def fingerprint(inputs: dict) -> str:
    """A step is done for these inputs; new options (a new roster, say) redo it."""
    text = json.dumps(inputs, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """Option values that are records (a roster's students, a --source) by their fields."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not an option value the state can record")


@dataclass
class State:
    done: dict[str, dict] = field(default_factory=dict)
    reboot_pending: bool = False
    boot_id: str = ""
    # What the steps installed of dlcourse, per environment ("exporter", "hub"): the source
    # and the release it gave, so a rerun installs a changed source and nothing else.
    installed: dict[str, dict] = field(default_factory=dict)
    # The command line of the run that asked for a reboot: `dlcourse-install resume` reuses it.
    argv: list[str] = field(default_factory=list)

    def is_done(self, step: str, inputs: dict) -> bool:
        entry = self.done.get(step)
        return entry is not None and entry.get("inputs") == fingerprint(inputs)

    def mark_done(self, step: str, inputs: dict) -> None:
        if self.is_done(step, inputs):
            return  # keep the first date: a recheck that changed nothing is no news
        self.done[step] = {
            "inputs": fingerprint(inputs),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    @classmethod
    def load(cls, host: Host, paths: Paths) -> State:
        text = host.read_text(paths.state_file)
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SystemExit(
                f"dlcourse-install: {paths.state_file} is not valid JSON ({exc})"
            ) from None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, host: Host, paths: Paths) -> None:
        text = json.dumps(asdict(self), indent=2) + "\n"
        if host.read_text(paths.state_file) != text:
            host.write_file(paths.state_file, text, mode=0o600)
