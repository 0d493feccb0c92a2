"""``dlcourse-exporter``: parse and validate the configuration, then serve."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .config import Config, ConfigError, load
from .untrusted import redact_url

log = logging.getLogger("dlcourse_exporter")


def describe(config: Config) -> str:
    hub = redact_url(config["hub.url"]) if "hub" in config.collectors else "none"
    return (
        f"listening on {config.listen_host}:{config.listen_port}, "
        f"collectors {', '.join(sorted(config.collectors)) or 'none'}, hub {hub}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, check_only = load(argv)
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
        sockets = server.bind_when_free(config.listen_host, config.listen_port)
    except server.StartupError as exc:
        print(f"dlcourse-exporter: error: {exc}", file=sys.stderr)
        return 2
    if "hub" not in config.collectors:
        log.info("no JupyterHub API configured (or the hub collector is off): no hub metrics")
    open_files = server.raise_open_file_limit()
    max_connections = server.connection_cap(config.max_connections, open_files)

    from .app import create_app
    from .collectors import COLLECTORS
    from .exposition import Exposition
    from .scheduler import Scheduler
    from .sources import build_sources

    collectors = [c for c in COLLECTORS if c.name in config.collectors]
    scheduler = Scheduler(build_sources(config.values, {s for c in collectors for s in c.sources}))
    log.info(
        "dlcourse-exporter starting: %s, at most %d connections", describe(config), max_connections
    )
    app = create_app(config, scheduler, Exposition(scheduler, collectors))
    server.serve(app, sockets, max_connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
