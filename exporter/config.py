"""Exporter configuration: flags, their DLCOURSE_* environment twins, an optional TOML file.

The exporter's own settings are declared here (``OPTIONS``); each collector declares its
own beside its code (``Collector.options``), and this module turns both into flags, reads
and checks them. Precedence: flag > environment > TOML file > default. Everything is
validated before anything starts, and every problem is reported at once in one line.
Secrets (the hub token, the /metrics bearer token) are only ever read from files or the
environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcourse_secretfile import SecretFileError, read_secret

from .collectors import COLLECTORS
from .collectors.base import Collector
from .options import Option, ascii_digits, boolean, count, one_of, seconds

if sys.version_info >= (3, 11):
    import tomllib
else:  # Ubuntu 22.04's Python 3.10
    import tomli as tomllib

DEFAULT_PORT = 9945


class ConfigError(Exception):
    """Invalid configuration; str() is one line listing every problem."""


def listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not ascii_digits(port) or not 0 < int(port) < 65536:
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


def directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError("is not a directory")
    return path


OPTIONS = (
    Option(
        "web.listen-address",
        "address to serve /metrics on (localhost only by default); the host must resolve",
        f"127.0.0.1:{DEFAULT_PORT}",
        listen_address,
    ),
    Option(
        "web.token-file",
        "file holding the bearer token that /metrics and /api/class require (required: "
        "students' names, usage and crashes are personal data, and every local account "
        "reaches localhost)",
        parse=Path,
        secret=True,
    ),
    Option(
        "web.culler-token-file",
        "file holding a second bearer token, the idle-GPU culler's: it reads /api/idle and "
        "reports culls (POST /api/students/USER/culls), nothing else; must differ from the "
        "web token, so that Prometheus cannot forge culls. Without it, culls are refused",
        parse=Path,
        secret=True,
    ),
    Option(
        "web.max-connections",
        "open HTTP connections at most; past it the longest idle one is closed",
        512,
        count(8, 16384),
    ),
    Option(
        "path.procfs",
        "procfs mount point (a fixture tree in tests and the benchmark)",
        "/proc",
        directory,
    ),
    Option(
        "collection.interval",
        "seconds between collections of every source but the hub",
        5.0,
        seconds(0.1, 3600),
    ),
    Option(
        "user.prefix",
        "prefix of hub users' Linux accounts and systemd units (TLJH: jupyter-); empty: "
        "accounts named as the hub users",
        "jupyter-",
    ),
    Option(
        "user.spawner-account",
        "the one Linux account a spawner runs every user's server under (shared setups): "
        "only its processes are believed when JUPYTERHUB_USER names a user",
    ),
    Option(
        "attribution",
        "whose a process is: host (systemd unit, JUPYTERHUB_USER, Linux account) or "
        "kubernetes (the student of the KubeSpawner pod whose cgroup it is in)",
        "host",
        one_of("host", "kubernetes"),
    ),
    Option(
        "log.level",
        "debug, info, warning or error",
        "info",
        lambda text: one_of("debug", "info", "warning", "error")(text.lower()),
    ),
)


def all_options(collectors: Sequence[Collector] = COLLECTORS) -> list[Option]:
    return [*OPTIONS, *(option for collector in collectors for option in collector.options)]


@dataclass(frozen=True)
class Config:
    """Every setting by its key ("hub.interval"), secrets under theirs ("hub.token"), and
    the collectors that run."""

    values: Mapping[str, Any] = field(repr=False)  # repr would show the secrets
    collectors: frozenset[str] = frozenset()

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def listen_host(self) -> str:
        return self["web.listen-address"][0]

    @property
    def listen_port(self) -> int:
        return self["web.listen-address"][1]

    @property
    def web_token(self) -> str | None:
        return self["web.token"]

    @property
    def culler_token(self) -> str | None:
        return self["web.culler-token"]

    @property
    def max_connections(self) -> int:
        return self["web.max-connections"]

    @property
    def log_level(self) -> str:
        return self["log.level"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, not argparse's usage block: the caller prints it and exits non-zero.
        raise ConfigError(message)


def build_parser(collectors: Sequence[Collector] = COLLECTORS) -> argparse.ArgumentParser:
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
    for option in all_options(collectors):
        default = "" if option.default is None else f" (default {option.default})"
        parser.add_argument(option.flag, dest=option.dest, help=option.help + default)
    for collector in collectors:
        parser.add_argument(
            f"--collector.{collector.name}",
            dest=f"collector_{collector.name}",
            action="store_const",
            const=True,
            help=f"enable the {collector.name} collector: {collector.description}",
        )
        parser.add_argument(
            f"--no-collector.{collector.name}",
            dest=f"collector_{collector.name}",
            action="store_const",
            const=False,
            help=f"disable the {collector.name} collector",
        )
    return parser


def _read_secret(path: Path, what: str, errors: list[str]) -> str | None:
    try:
        return read_secret(path)
    except SecretFileError as exc:  # "PATH: reason": never a FIFO, /dev/zero or > 4 KiB
        errors.append(f"{what} {exc}")
        return None


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"web": {"listen-address": x}} -> {"web.listen-address": x}."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return _flatten(tomllib.loads(path.read_text(encoding="utf-8")))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def _value(
    option: Option,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    errors: list[str],
) -> Any:
    """The option's value from the first place that sets it, parsed; its default if none."""
    places = [
        (option.flag, getattr(args, option.dest)),
        (option.env, environ.get(option.env)),
        (f"config file {option.key}", file_values.get(option.key)),
        *((name, environ.get(name)) for name in option.fallback_env),
    ]
    if option.env_default is not None:
        places.append((option.env_default_text, option.env_default(environ)))
    found = next(((place, raw) for place, raw in places if raw is not None), None)
    if found is None:
        return option.default if option.default is None else option.parse(str(option.default))
    place, raw = found
    try:
        return option.parse(str(raw))
    except ValueError as exc:
        errors.append(f"{place}={str(raw)!r}: {exc}")
        return None


def _set_by_lecturer(
    option: Option, args: argparse.Namespace, environ: Mapping[str, str], file_values: Mapping
) -> bool:
    """Set by its flag, variable or file key; a fallback variable (NODE_NAME) or a default
    from the environment (the in-cluster API server) is in every pod, not a choice."""
    return (
        getattr(args, option.dest) is not None or option.env in environ or option.key in file_values
    )


def _ignored(
    options: Sequence[Option],
    values: Mapping[str, Any],
    args: argparse.Namespace,
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
) -> list[str]:
    """The settings that would be silently ignored: set, but for another mode."""
    return [
        f"{option.flag} is set but applies only with --{key}={wanted}"
        for option in options
        if option.only_with is not None
        for key, wanted in [option.only_with]
        if values[key] != wanted and _set_by_lecturer(option, args, environ, file_values)
    ]


def _secret(
    option: Option, path: Path | None, environ: Mapping[str, str], errors: list[str]
) -> str | None:
    """The secret a "-file" option names, else the first of its variables that holds one."""
    if path is not None:
        return _read_secret(path, option.key.replace(".", " ").replace("-", " "), errors)
    for name in option.secret_env:
        # A token pasted into a unit file or `export` often keeps its newline.
        if environ.get(name, "").strip():
            return environ[name].strip()
    return None


def _collectors(
    collectors: Sequence[Collector],
    args: argparse.Namespace,
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    values: Mapping[str, Any],
    errors: list[str],
) -> frozenset[str]:
    enabled = set()
    for collector in collectors:
        chosen = getattr(args, f"collector_{collector.name}")
        if chosen is None:
            env = f"DLCOURSE_COLLECTOR_{collector.name.upper()}"
            try:
                if env in environ:
                    chosen = boolean(environ[env])
                elif f"collectors.{collector.name}" in file_values:
                    chosen = boolean(str(file_values[f"collectors.{collector.name}"]))
            except ValueError as exc:
                errors.append(f"collector {collector.name}: {exc}")
        on = collector.enabled_by_default(values) if chosen is None else chosen
        errors += collector.problems(values, on, explicit=chosen is not None)
        if on:
            enabled.add(collector.name)
    return frozenset(enabled)


def load(
    argv: Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
    collectors: Sequence[Collector] = COLLECTORS,
) -> tuple[Config, bool]:
    """Parse and validate; returns (config, check_only). Raises ConfigError or SystemExit."""
    environ = os.environ if environ is None else environ
    names = [collector.name for collector in collectors]
    for arg in argv if argv is not None else sys.argv[1:]:
        flag = arg.split("=", 1)[0]
        if flag.startswith(("--collector.", "--no-collector.")):
            name = flag.split(".", 1)[1]
            if name not in names:
                raise ConfigError(f"unknown collector {name!r} (known: {', '.join(names)})")
    args = build_parser(collectors).parse_args(argv)
    errors: list[str] = []
    options = all_options(collectors)

    file_values = _read_file(args.config_file) if args.config_file is not None else {}
    known = {option.key for option in options} | {f"collectors.{name}" for name in names}
    errors += [f"config file: unknown setting {key!r}" for key in file_values if key not in known]

    values: dict[str, Any] = {}
    for option in options:
        values[option.key] = _value(option, args, environ, file_values, errors)
        if option.secret:
            values[option.secret_key] = _secret(option, values[option.key], environ, errors)
    errors += _ignored(options, values, args, environ, file_values)
    enabled = _collectors(collectors, args, environ, file_values, values, errors)
    if values["web.token-file"] is None:
        # Localhost is not private on a server where every student has a shell.
        errors.append("no bearer token: set --web.token-file (per-student data is personal)")
    elif values["web.culler-token"] and values["web.culler-token"] == values["web.token"]:
        errors.append(
            "--web.culler-token-file holds the web token: the culler's token must be its own"
        )
    if errors:
        raise ConfigError("; ".join(errors))
    return Config(values, enabled), args.check_config
