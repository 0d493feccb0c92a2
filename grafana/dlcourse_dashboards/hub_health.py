"""Hub health: spawns, servers found stopped, API latency, active users, exporter and host.

The hub panels read JupyterHub's own metrics (jupyterhub/metrics.py), scraped from
/hub/metrics (job `jupyterhub` by default); the host panels read node_exporter (job `node`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from .common import (
    INSTANCE,
    new_dashboard,
    query,
    row,
    standard_variables,
    stat_panel,
    timeseries_panel,
)
from .jobs import Jobs
from .rules import hub_spawn_p90

UID = "dlcourse-hub"
TITLE = "Hub health"


def api_handlers(hub: str) -> str:
    """Handlers of the REST API (jupyterhub.apihandlers.users.UserAPIHandler, ...), not pages."""
    return f'{hub}, handler=~"jupyterhub[.]apihandlers[.].*"'


def disks(node: str) -> str:
    return f'{node}, fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs"'


def quantiles(metric: str, selector: str, by: str = "le") -> list:
    return [
        query(
            f"histogram_quantile({q}, sum by ({by}) "
            f"(rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
            f"p{round(q * 100)}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def summary_stats(jobs: Jobs) -> list[db.Panel]:
    hub = jobs.selector("jupyterhub")
    return [
        stat_panel(
            "Hub users",
            "Users the hub knows.",
            "none",
            [query(f"sum(jupyterhub_total_users{{{hub}}})")],
            w=4,
        ),
        stat_panel(
            "Active users (24 h)",
            "Users active in the last 24 hours, as the hub counts them.",
            "none",
            [query(f'sum(jupyterhub_active_users{{{hub}, period="24h"}})')],
            w=4,
        ),
        stat_panel(
            "Running servers",
            "Single-user servers the hub counts as running.",
            "none",
            [query(f"sum(jupyterhub_running_servers{{{hub}}})")],
            w=4,
        ),
        stat_panel(
            "Spawn time p90 (15 min)",
            "90th percentile of successful spawn durations over 15 minutes (recording rule; "
            "the slow-spawn alert watches it).",
            "s",
            [query(f"max({hub_spawn_p90(jobs)})")],
            w=4,
            thresholds=[(None, "green"), (30, "orange"), (120, "red")],
        ),
        stat_panel(
            "Spawn failures",
            "Spawns that failed or errored in the dashboard's time range.",
            "none",
            [
                query(
                    "sum(increase(jupyterhub_server_spawn_duration_seconds_count"
                    f'{{{hub}, status!="success"}}[$__range])) or vector(0)'
                )
            ],
            w=4,
            thresholds=[(None, "green"), (1, "red")],
        ),
        stat_panel(
            "Exporter sees hub",
            "1 when the dlcourse exporter's last poll of the hub REST API succeeded.",
            "bool_yes_no",
            [query(f"min(dlcourse_hub_up{{{INSTANCE}}})")],
            w=4,
            thresholds=[(None, "red"), (1, "green")],
        ),
    ]


def build(jobs: Jobs) -> db.Dashboard:
    hub, node = jobs.selector("jupyterhub"), jobs.selector("node")
    dashboard = new_dashboard(
        UID,
        TITLE,
        "JupyterHub itself: spawn duration and failures, servers found stopped, API latency, "
        "active users; the exporter's collectors and the host's CPU, memory and disks.",
        ["hub"],
    ).variables(standard_variables(jobs))
    for panel in summary_stats(jobs):
        dashboard = dashboard.with_panel(panel)
    return (
        dashboard.with_row(row("Spawns"))
        .with_panel(
            timeseries_panel(
                "Spawn duration",
                "Time from a spawn request to a running server, successful spawns.",
                "s",
                quantiles("jupyterhub_server_spawn_duration_seconds", f'{hub}, status="success"'),
                w=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Spawn failures",
                "Failed spawns by status and reason (throttled, too-many-users, ...).",
                "none",
                [
                    query(
                        "sum by (status, reason) (increase("
                        "jupyterhub_server_spawn_duration_seconds_count"
                        f'{{{hub}, status!="success"}}[$__rate_interval]))',
                        "{{status}} {{reason}}",
                    )
                ],
                w=8,
                bars=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Servers found stopped",
                "Polls that found a server no longer running: it crashed or was killed "
                "(often out of memory).",
                "none",
                [
                    query(
                        # JupyterHub 6.1 spells the label "ServerPollStatus.stopped" (its
                        # enum lacks __str__); match both spellings.
                        "sum(increase(jupyterhub_server_poll_duration_seconds_count"
                        f'{{{hub}, status=~"stopped|ServerPollStatus.stopped"}}'
                        "[$__rate_interval]))",
                        "found stopped",
                    )
                ],
                w=8,
                bars=True,
            )
        )
        .with_row(row("API and users"))
        .with_panel(
            timeseries_panel(
                "API latency",
                "REST API request duration (jupyterhub.apihandlers handlers).",
                "s",
                quantiles("jupyterhub_request_duration_seconds", api_handlers(hub)),
                w=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "API requests by status",
                "REST API requests per second by HTTP status code.",
                "reqps",
                [
                    query(
                        "sum by (code) (rate(jupyterhub_request_duration_seconds_count"
                        f"{{{api_handlers(hub)}}}[$__rate_interval]))",
                        "{{code}}",
                    )
                ],
                w=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Active users",
                "Users active in the last 24 hours, 7 days and 30 days.",
                "none",
                [query(f"sum by (period) (jupyterhub_active_users{{{hub}}})", "{{period}}")],
                w=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Running servers by section",
                "Ready servers per hub group (course section).",
                "none",
                [
                    query(
                        "count by (group) "
                        f'(dlcourse_hub_user_group_info{{{INSTANCE}, group=~"$group"}}'
                        " and on(instance, user) "
                        f'(dlcourse_hub_user_servers{{{INSTANCE}, state="ready"}} > 0))',
                        "{{group}}",
                    )
                ],
                w=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Hub event loop",
                "How late the hub's event loop wakes up: a busy or blocked hub answers slowly.",
                "s",
                quantiles("jupyterhub_event_loop_interval_seconds", hub)[1:],
                w=12,
            )
        )
        .with_row(row("Exporter and host"))
        .with_panel(
            timeseries_panel(
                "Exporter collectors",
                "1 when the collector's last run succeeded; a failing source degrades only its "
                "own metrics.",
                "bool_yes_no",
                [query(f"dlcourse_collector_success{{{INSTANCE}}}", "{{collector}}")],
                w=6,
                max_value=1,
            )
        )
        .with_panel(
            timeseries_panel(
                "Collector duration",
                "How long each collector's last run took.",
                "s",
                [query(f"dlcourse_collector_duration_seconds{{{INSTANCE}}}", "{{collector}}")],
                w=6,
            )
        )
        .with_panel(
            timeseries_panel(
                "Host CPU and memory",
                "Share of CPU time busy and share of memory in use on the server.",
                "percentunit",
                [
                    query(
                        "1 - avg by (instance) (rate(node_cpu_seconds_total"
                        f'{{{node}, mode="idle"}}[$__rate_interval]))',
                        "CPU busy",
                        ref="A",
                    ),
                    query(
                        f"1 - node_memory_MemAvailable_bytes{{{node}}} / "
                        f"node_memory_MemTotal_bytes{{{node}}}",
                        "memory used",
                        ref="B",
                    ),
                ],
                w=6,
                max_value=1,
            )
        )
        .with_panel(
            timeseries_panel(
                "Disk space used",
                "Share of each filesystem in use (home directories and datasets fill them).",
                "percentunit",
                [
                    query(
                        f"1 - node_filesystem_avail_bytes{{{disks(node)}}} / "
                        f"node_filesystem_size_bytes{{{disks(node)}}}",
                        "{{mountpoint}}",
                    )
                ],
                w=6,
                max_value=1,
            )
        )
    )
