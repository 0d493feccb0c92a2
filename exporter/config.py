"""Exporter configuration: flags, their DLCOURSE_* environment twins, an optional TOML file.

Precedence: flag > environment > TOML file > default. Everything is validated before
anything starts, and every problem is reported at once in one line. Secrets (the hub token,
the /metrics bearer token) are only ever read from files or the environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .untrusted import redact_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # Ubuntu 22.04's Python 3.10
    import tomli as tomllib

DEFAULT_PORT = 9945


class ConfigError(Exception):
    """Invalid configuration; str() is one line listing every problem."""


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its environment twin and its key in the TOML file."""

    key: str  # dotted, as in the flag: "web.listen-address"
    help: str
    default: Any = None
    parse: Callable[[str], Any] = str

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    @property
    def env(self) -> str:
        return "DLCOURSE_" + self.key.upper().replace(".", "_").replace("-", "_")

    @property
    def dest(self) -> str:
        return self.key.replace(".", "_").replace("-", "_")


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


def count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(text)

    return parse


def listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        return "127.0.0.1", int(port)
    if host != host.strip() or any(c.isspace() or c in "[]/@" for c in host):
        raise ValueError("must be HOST:PORT, the host an IP address or a name")
    if not is_ip_address(host):
        try:  # without binding: the name must resolve to an address here
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"host {host!r} does not resolve ({exc})") from None
    return host, int(port)


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def hub_url_problem(url: str) -> str | None:
    """Why url cannot be the hub API URL, or None. Checks the form only: nothing is asked."""
    if url != url.strip() or any(c.isspace() for c in url):
        return "must not contain spaces"
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "has no host"
    return None


def exit_events(text: str) -> str:
    if text not in ("auto", "poll"):
        raise ValueError("must be auto or poll")
    return text


OPTIONS = [
    Option(
        "web.listen-address",
        "address to serve /metrics on (localhost only by default)",
        f"127.0.0.1:{DEFAULT_PORT}",
        listen_address,
    ),
    Option(
        "web.token-file",
        "file holding the bearer token that /metrics and /api/class require (required: "
        "students' names, usage and crashes are personal data, and every local account "
        "reaches localhost)",
        None,
        Path,
    ),
    Option("path.procfs", "procfs mount point", "/proc", Path),
    Option("path.cgroupfs", "cgroup filesystem mount point", "/sys/fs/cgroup", Path),
    Option(
        "path.kmsg",
        "kernel log device read for OOM kills (needs CAP_SYSLOG); empty to not read it",
        "/dev/kmsg",
    ),
    Option(
        "web.max-connections",
        "open HTTP connections at most; past it the longest idle one is closed",
        512,
        count(8, 16384),
    ),
    Option("collection.interval", "seconds between collections", 5.0, seconds(0.1, 3600)),
    Option(
        "user.prefix",
        "prefix of Linux accounts and systemd units of hub users (TLJH: jupyter-)",
        "jupyter-",
    ),
    Option(
        "user.spawner-account",
        "Linux account a spawner runs every user's server under (SimpleLocalProcessSpawner, "
        "shared setups): only its processes are believed when JUPYTERHUB_USER names a user",
    ),
    Option(
        "hub.url",
        "JupyterHub API URL, e.g. http://127.0.0.1:15001/hub/api (also JUPYTERHUB_API_URL)",
    ),
    Option(
        "hub.token-file", "file holding the hub API token (also JUPYTERHUB_API_TOKEN)", None, Path
    ),
    Option("hub.interval", "seconds between polls of the hub API", 15.0, seconds(0.1, 3600)),
    Option("hub.timeout", "seconds before a hub API request gives up", 5.0, seconds(0.1, 600)),
    Option(
        "hub.max-users",
        "hub users read at most; past it dlcourse_hub_users_truncated is 1",
        20_000,
        count(1, 1_000_000),
    ),
    Option(
        "kernels.exit-events",
        "how kernel exits are seen: auto (netlink proc connector, else polling) or poll",
        "auto",
        exit_events,
    ),
    Option("log.level", "debug, info, warning or error", "info"),
]

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Config:
    listen_host: str = "127.0.0.1"
    listen_port: int = DEFAULT_PORT
    procfs: Path = Path("/proc")
    cgroupfs: Path = Path("/sys/fs/cgroup")
    kmsg: Path | None = Path("/dev/kmsg")
    kernel_exit_events: str = "auto"
    interval: float = 5.0
    user_prefix: str = "jupyter-"
    spawner_account: str | None = None
    hub_url: str | None = None
    hub_token: str | None = field(default=None, repr=False)
    hub_interval: float = 15.0
    hub_timeout: float = 5.0
    hub_max_users: int = 20_000
    max_connections: int = 512
    web_token: str | None = field(default=None, repr=False)
    log_level: str = "info"
    collectors: frozenset[str] = frozenset()

    @property
    def hub_configured(self) -> bool:
        return bool(self.hub_url and self.hub_token)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, not argparse's usage block: the caller prints it and exits non-zero.
        raise ConfigError(message)


def build_parser(
    collector_names: Sequence[str], defaults: Mapping[str, bool]
) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlcourse-exporter",
        description="Prometheus exporter for a JupyterHub deep-learning course: GPUs, "
        "per-student GPU use, hub users and servers, kernels, crashes and OOM kills. "
        "Every flag has a DLCOURSE_* environment twin (e.g. --hub.url: DLCOURSE_HUB_URL).",
    )
    parser.add_argument("--config.file", dest="config_file", type=Path, help="optional TOML file")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    for option in OPTIONS:
        default = "" if option.default is None else f" (default {option.default})"
        parser.add_argument(option.flag, dest=option.dest, help=option.help + default)
    for name in collector_names:
        state = "on" if defaults[name] else "off"
        if name == "hub":
            state = "on when a hub URL and token are set"
        parser.add_argument(
            f"--collector.{name}",
            dest=f"collector_{name}",
            action="store_const",
            const=True,
            help=f"enable the {name} collector (default {state})",
        )
        parser.add_argument(
            f"--no-collector.{name}",
            dest=f"collector_{name}",
            action="store_const",
            const=False,
            help=f"disable the {name} collector",
        )
    return parser


def _read_secret(path: Path, what: str, errors: list[str]) -> str | None:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        errors.append(f"{what} {path}: {exc.strerror or exc}")
        return None
    if not token:
        errors.append(f"{what} {path} is empty")
        return None
    return token


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"web": {"listen-address": x}} -> {"web.listen-address": x}."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load(
    argv: Sequence[str] | None,
    collector_defaults: Mapping[str, bool],
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, bool]:
    """Parse and validate; returns (config, check_only). Raises ConfigError or SystemExit."""
    environ = os.environ if environ is None else environ
    names = list(collector_defaults)
    for arg in argv if argv is not None else sys.argv[1:]:
        flag = arg.split("=", 1)[0]
        if flag.startswith(("--collector.", "--no-collector.")):
            name = flag.split(".", 1)[1]
            if name not in names:
                raise ConfigError(f"unknown collector {name!r} (known: {', '.join(names)})")
    args = build_parser(names, collector_defaults).parse_args(argv)
    errors: list[str] = []

    file_values: dict[str, Any] = {}
    if args.config_file is not None:
        try:
            file_values = _flatten(tomllib.loads(args.config_file.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {args.config_file}: not UTF-8 text (byte {exc.start})"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"config file {args.config_file}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {args.config_file}: {exc}") from exc
        known = {o.key for o in OPTIONS} | {f"collectors.{n}" for n in names}
        errors += [
            f"config file: unknown setting {key!r}" for key in file_values if key not in known
        ]

    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw, source = getattr(args, option.dest), option.flag
        if raw is None and option.env in environ:
            raw, source = environ[option.env], option.env
        if raw is None and option.key in file_values:
            raw, source = str(file_values[option.key]), f"config file {option.key}"
        if raw is None:
            values[option.key] = (
                option.default if option.default is None else option.parse(str(option.default))
            )
            continue
        try:
            values[option.key] = option.parse(raw)
        except ValueError as exc:
            errors.append(f"{source}={raw!r}: {exc}")

    enabled = set()
    explicit: dict[str, bool] = {}
    for name in names:
        chosen = getattr(args, f"collector_{name}")
        if chosen is None:
            env = f"DLCOURSE_COLLECTOR_{name.upper()}"
            try:
                if env in environ:
                    chosen = _parse_bool(environ[env])
                elif f"collectors.{name}" in file_values:
                    chosen = _parse_bool(str(file_values[f"collectors.{name}"]))
            except ValueError as exc:
                errors.append(f"collector {name}: {exc}")
        if chosen is not None:
            explicit[name] = chosen
        if chosen if chosen is not None else collector_defaults[name]:
            enabled.add(name)

    hub_url = values["hub.url"] or environ.get("JUPYTERHUB_API_URL") or None
    hub_token = None
    if values.get("hub.token-file") is not None:
        hub_token = _read_secret(values["hub.token-file"], "hub token file", errors)
    else:
        # A token pasted into a unit file or `export` often keeps its newline.
        raw_token = environ.get("DLCOURSE_HUB_TOKEN") or environ.get("JUPYTERHUB_API_TOKEN")
        hub_token = raw_token.strip() if raw_token else None
    url_problem = hub_url_problem(hub_url) if hub_url else None
    if url_problem:
        errors.append(f"hub URL {redact_url(hub_url)!r} {url_problem}")
    if hub_url and not hub_token:
        errors.append("hub URL is set but no token: use --hub.token-file or JUPYTERHUB_API_TOKEN")
    if "hub" in names and "hub" not in explicit and not (hub_url and hub_token):
        enabled.discard("hub")  # on by default only where there is a hub to ask
    if explicit.get("hub") and not hub_url:
        errors.append("collector hub is enabled but no hub URL is set: use --hub.url")
    web_token = None
    if values.get("web.token-file") is not None:
        web_token = _read_secret(values["web.token-file"], "web token file", errors)
    else:
        # Localhost is not private on a server where every student has a shell.
        errors.append("no bearer token: set --web.token-file (per-student data is personal)")
    level = str(values.get("log.level") or "info").lower()
    if level not in LOG_LEVELS:
        errors.append(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    if values.get("path.procfs") is not None and not values["path.procfs"].is_dir():
        errors.append(f"procfs {values['path.procfs']} is not a directory")

    if errors:
        raise ConfigError("; ".join(errors))
    host, port = values["web.listen-address"]
    config = Config(
        listen_host=host,
        listen_port=port,
        procfs=values["path.procfs"],
        cgroupfs=values["path.cgroupfs"],
        kmsg=Path(values["path.kmsg"]) if values["path.kmsg"] else None,
        kernel_exit_events=values["kernels.exit-events"],
        interval=values["collection.interval"],
        user_prefix=values["user.prefix"],
        spawner_account=values["user.spawner-account"] or None,
        hub_url=hub_url.rstrip("/") if hub_url else None,
        hub_token=hub_token,
        hub_interval=values["hub.interval"],
        hub_timeout=values["hub.timeout"],
        hub_max_users=values["hub.max-users"],
        max_connections=values["web.max-connections"],
        web_token=web_token,
        log_level=level,
        collectors=frozenset(enabled),
    )
    return config, args.check_config
