"""Student detail: one student's GPU, CPU, memory, kernels, crashes and server."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from .common import (
    DASHED,
    INSTANCE,
    OUT_OF_SECTION,
    new_dashboard,
    query,
    query_variable,
    row,
    standard_variables,
    stat_panel,
    timeseries_panel,
)
from .jobs import Jobs

UID = "dlcourse-student"
TITLE = "Student detail"

USER = f'{INSTANCE}, user="$user"'


def user_variable() -> db.QueryVariable:
    # query_result, not label_values: the list honours the section filter ($group).
    users = f"dlcourse_hub_user_info{{{INSTANCE}}} unless on(user) ({OUT_OF_SECTION})"
    return query_variable(
        "user", "Student", f"query_result({users})", include_all=False, multi=False
    ).regex('/user="([^"]+)"/')


def summary_stats() -> list[db.Panel]:
    return [
        stat_panel(
            "Server",
            "The student's servers by state (ready, pending).",
            "none",
            [query(f"sum by (state) (dlcourse_hub_user_servers{{{USER}}})", "{{state}}")],
            w=4,
        ),
        stat_panel(
            "Server uptime",
            "Time since the student's default server started; empty while it is stopped.",
            "s",
            [query(f"time() - dlcourse_hub_user_server_started_timestamp_seconds{{{USER}}}")],
            w=4,
        ),
        stat_panel(
            "Last activity",
            "When the hub last saw activity from the student (updated every 5 minutes).",
            "dateTimeFromNow",
            [query(f"dlcourse_hub_user_last_activity_timestamp_seconds{{{USER}}} * 1000")],
            w=4,
        ),
        stat_panel(
            "Kernels",
            "Running notebook kernels.",
            "none",
            [query(f"sum(dlcourse_user_kernels{{{USER}}})")],
            w=4,
        ),
        stat_panel(
            "Crashes",
            "Kernels that died unexpectedly in the dashboard's time range.",
            "none",
            [
                query(
                    f"sum(increase(dlcourse_user_kernel_crashes_total{{{USER}}}[$__range])) "
                    "or vector(0)"
                )
            ],
            w=4,
            thresholds=[(None, "green"), (1, "red")],
        ),
        stat_panel(
            "OOM kills",
            "Processes the out-of-memory killer ended in the dashboard's time range.",
            "none",
            [
                query(
                    f"sum(increase(dlcourse_user_oom_kills_total{{{USER}}}[$__range])) or vector(0)"
                )
            ],
            w=4,
            thresholds=[(None, "green"), (1, "red")],
        ),
    ]


def gpu_hours() -> list[db.Panel]:
    """GPU time as counters (dlcourse_user_gpu_seconds_total): seconds of a fully busy GPU,
    the student's own share of a shared one."""
    seconds = f"dlcourse_user_gpu_seconds_total{{{USER}}}"
    return [
        stat_panel(
            "GPU-hours",
            "The student's GPU time in the dashboard's time range: their utilization integrated "
            "over time, in hours of a fully busy GPU (their own share of a shared GPU).",
            "h",
            [query(f"(sum(increase({seconds}[$__range])) / 3600) or vector(0)", "GPU-hours")],
            w=6,
        ),
        timeseries_panel(
            "GPU-hours per GPU",
            "The student's GPU time per interval of the graph, per GPU.",
            "h",
            [query(f"sum by (gpu) (increase({seconds}[$__rate_interval])) / 3600", "GPU {{gpu}}")],
            w=18,
            bars=True,
        ),
    ]


def build(jobs: Jobs) -> db.Dashboard:
    dashboard = new_dashboard(
        UID,
        TITLE,
        "One student: GPU memory and utilization, CPU and memory against the limit, kernels, "
        "crashes, OOM kills and their server.",
        ["student"],
    ).variables([*standard_variables(jobs), user_variable()])
    for panel in summary_stats():
        dashboard = dashboard.with_panel(panel)
    hours, hours_per_gpu = gpu_hours()
    return (
        dashboard.with_row(row("GPU"))
        .with_panel(
            timeseries_panel(
                "GPU memory",
                "GPU memory held by the student's processes, per GPU.",
                "bytes",
                [query(f"dlcourse_user_gpu_memory_used_bytes{{{USER}}}", "GPU {{gpu}}")],
                w=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "GPU utilization",
                "SM utilization of the student's processes, per GPU (NVML process samples).",
                "percentunit",
                [query(f"dlcourse_user_gpu_utilization_ratio{{{USER}}}", "GPU {{gpu}}")],
                w=8,
                max_value=1,
            )
        )
        .with_panel(
            timeseries_panel(
                "GPU processes",
                "The student's processes on each GPU.",
                "none",
                [query(f"dlcourse_user_gpu_processes{{{USER}}}", "GPU {{gpu}}")],
                w=8,
            )
        )
        .with_panel(hours)
        .with_panel(hours_per_gpu)
        .with_row(row("Host"))
        .with_panel(
            timeseries_panel(
                "CPU",
                "CPU time of the student's processes per second: 1 is one core fully busy.",
                "none",
                [
                    query(
                        f"rate(dlcourse_user_cpu_seconds_total{{{USER}}}[$__rate_interval])",
                        "CPU cores",
                    )
                ],
                w=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Memory against limit",
                "Resident memory of the student's processes; the dashed line is their limit, "
                "where one is set.",
                "bytes",
                [
                    query(f"dlcourse_user_memory_used_bytes{{{USER}}}", "used", ref="A"),
                    query(f"dlcourse_user_memory_limit_bytes{{{USER}}}", "limit", ref="B"),
                ],
                w=8,
            ).override_by_query("B", DASHED)
        )
        .with_panel(
            timeseries_panel(
                "Kernels",
                "Running notebook kernel processes.",
                "none",
                [query(f"dlcourse_user_kernels{{{USER}}}", "kernels")],
                w=8,
            )
        )
        .with_row(row("Crashes"))
        .with_panel(
            timeseries_panel(
                "Kernel crashes by signal",
                "Kernels that died unexpectedly; 'exit' is a non-zero exit without a signal.",
                "none",
                [
                    query(
                        "sum by (signal) (increase(dlcourse_user_kernel_crashes_total"
                        f"{{{USER}}}[$__rate_interval]))",
                        "{{signal}}",
                    )
                ],
                bars=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "OOM kills",
                "The student's processes the out-of-memory killer ended.",
                "none",
                [
                    query(
                        f"increase(dlcourse_user_oom_kills_total{{{USER}}}[$__rate_interval])",
                        "OOM kills",
                    )
                ],
                bars=True,
            )
        )
    )
