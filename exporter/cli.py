"""``dlcourse-exporter``: parse and validate the configuration, then serve."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .config import Config, ConfigError, load
from .registry import build_collectors, collector_defaults
from .untrusted import redact_url

log = logging.getLogger("dlcourse_exporter")


def describe(config: Config) -> str:
    hub = redact_url(config.hub_url) if config.hub_url and config.hub_configured else "none"
    return (
        f"listening on {config.listen_host}:{config.listen_port}, "
        f"collectors {', '.join(sorted(config.collectors)) or 'none'}, hub {hub}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, check_only = load(argv, collector_defaults())
    except ConfigError as exc:
        print(f"dlcourse-exporter: error: {exc}", file=sys.stderr)
        return 2
    if check_only:
        print(f"dlcourse-exporter: configuration ok: {describe(config)}")
        return 0

    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from . import server  # imported late: --check-config and errors need no server

    server.limit_logs()
    try:
        sockets = server.bind(config.listen_host, config.listen_port)
    except server.StartupError as exc:
        print(f"dlcourse-exporter: error: {exc}", file=sys.stderr)
        return 2
    if not config.hub_configured:
        log.info("no JupyterHub API configured: hub metrics are off (GPU and host only)")
    open_files = server.raise_open_file_limit()
    max_connections = server.connection_cap(config.max_connections, open_files)

    from .app import create_app
    from .scheduler import Scheduler

    scheduler = Scheduler(build_collectors(config))
    log.info(
        "dlcourse-exporter starting: %s, at most %d connections", describe(config), max_connections
    )
    server.serve(create_app(config, scheduler), sockets, max_connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
