"""Class overview: the dashboard on the projector during class."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    DASHED,
    INSTANCE,
    in_section,
    new_dashboard,
    query,
    row,
    standard_variables,
    stat_panel,
    student_link,
    table_panel,
    timeseries_panel,
)
from .jobs import Jobs
from .rules import CLASS_GPU_MEMORY_RATIO, CLASS_GPU_UTILIZATION, USER_GPU_MEMORY, USERS_ON_GPU

UID = "dlcourse-class"
TITLE = "Class overview"

# Hub users whose last activity is recent. The hub learns of activity every 5 minutes
# (last_activity_interval), so a 10 minute window never flickers between polls.
ONLINE = in_section(
    f"(time() - dlcourse_hub_user_last_activity_timestamp_seconds{{{INSTANCE}}}) < 600"
)
GPU_MEMORY_BY_USER_GPU = (
    f"sum by (user, gpu) ({in_section(f'dlcourse_user_gpu_memory_used_bytes{{{INSTANCE}}}')})"
)


GPU_ASSIGNED = f"dlcourse_user_gpu_assigned{{{INSTANCE}}}"


def per_user_gpu_row(per_user: str) -> str:
    """A per-user value copied onto each of that user's GPU rows (the table is per user, GPU)."""
    return f"(({GPU_MEMORY_BY_USER_GPU}) * 0) + on(user) group_left() ({per_user})"


def summary_stats() -> list[db.Panel]:
    def servers(state: str) -> str:
        expr = f'dlcourse_hub_user_servers{{{INSTANCE}, state="{state}"}}'
        return f"sum({in_section(expr)}) or vector(0)"

    return [
        stat_panel(
            "Students online",
            "Hub users active in the last 10 minutes (the hub updates activity every 5).",
            "none",
            [query(f"count({ONLINE}) or vector(0)", "online")],
        ),
        stat_panel(
            "Servers running",
            "Single-user servers that are ready.",
            "none",
            [query(servers("ready"), "running")],
        ),
        stat_panel(
            "Servers pending",
            "Servers starting or stopping; one that stays pending needs a look (Hub health).",
            "none",
            [query(servers("pending"), "pending")],
            thresholds=[(None, "green"), (1, "orange")],
        ),
        stat_panel(
            "Kernels",
            "Running notebook kernels of all students.",
            "none",
            [query(f"sum({in_section(f'dlcourse_user_kernels{{{INSTANCE}}}')}) or vector(0)")],
        ),
        stat_panel(
            "Students on GPUs",
            "Students whose processes hold GPU memory.",
            "none",
            [query(f"sum({USERS_ON_GPU}) or vector(0)")],
        ),
        stat_panel(
            "GPUs busy",
            "GPUs running a kernel more than 5% of the time.",
            "none",
            [query(f"count(dlcourse_gpu_utilization_ratio{{{INSTANCE}}} > 0.05) or vector(0)")],
        ),
        stat_panel(
            "Class GPU utilization",
            "Average utilization over all GPUs.",
            "percentunit",
            [query(CLASS_GPU_UTILIZATION, "utilization")],
            thresholds=[(None, "green"), (0.9, "orange")],
        ),
        stat_panel(
            "GPU memory in use",
            "GPU memory used over total, all GPUs together.",
            "percentunit",
            [query(CLASS_GPU_MEMORY_RATIO, "memory")],
            thresholds=[(None, "green"), (0.9, "orange"), (0.97, "red")],
        ),
    ]


def gpu_timeseries() -> list[db.Panel]:
    return [
        timeseries_panel(
            "GPU utilization",
            "Fraction of time each GPU ran a kernel.",
            "percentunit",
            [query(f"dlcourse_gpu_utilization_ratio{{{INSTANCE}}}", "GPU {{gpu}}")],
            max_value=1,
            w=8,
        ),
        timeseries_panel(
            "GPU memory used",
            "Framebuffer memory in use on each GPU; the dashed line is its total.",
            "bytes",
            [
                query(f"dlcourse_gpu_memory_used_bytes{{{INSTANCE}}}", "GPU {{gpu}}", ref="A"),
                query(
                    f"dlcourse_gpu_memory_total_bytes{{{INSTANCE}}}", "GPU {{gpu}} total", ref="B"
                ),
            ],
            w=8,
        ).override_by_query("B", DASHED),
        timeseries_panel(
            "Students per GPU",
            "Running servers the hub assigned to each GPU at spawn (docs/gpu-assignment.md); "
            "staff and the policy 'all' get every GPU and are not counted.",
            "none",
            [query(f"count by (gpu) ({in_section(GPU_ASSIGNED)})", "GPU {{gpu}}")],
            w=8,
        ),
    ]


def students_table() -> db.Panel:
    crashes_today = (
        f"sum by (user) (increase(dlcourse_user_kernel_crashes_total{{{INSTANCE}}}[$__range]))"
    )
    idle = (
        f"time() - max by (user) (dlcourse_hub_user_last_activity_timestamp_seconds{{{INSTANCE}}})"
    )
    utilization = in_section(f"dlcourse_user_gpu_utilization_ratio{{{INSTANCE}}}")
    columns = {
        "Value #A": ("GPU memory", "bytes"),
        "Value #B": ("Utilization", "percentunit"),
        "Value #C": ("Idle", "s"),
        "Value #D": ("Crashes today", "none"),
    }
    panel = (
        table_panel(
            "Students on GPUs",
            "One row per student and GPU they hold memory on. Idle: time since the hub last saw "
            "activity. Crashes: kernels that died today. Click a name for the student's dashboard.",
            "none",
            [
                query(GPU_MEMORY_BY_USER_GPU, ref="A", instant=True, table_format=True),
                query(
                    f"sum by (user, gpu) ({utilization})",
                    ref="B",
                    instant=True,
                    table_format=True,
                ),
                query(per_user_gpu_row(idle), ref="C", instant=True, table_format=True),
                query(
                    f"({per_user_gpu_row(crashes_today)}) or ({GPU_MEMORY_BY_USER_GPU}) * 0",
                    ref="D",
                    instant=True,
                    table_format=True,
                ),
            ],
            w=12,
            h=10,
        )
        # "Today so far": $__range in the crashes query then starts at midnight.
        .time_from("now/d")
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "indexByName": {"user": 0, "gpu": 1},
                    "renameByName": {
                        "user": "Student",
                        "gpu": "GPU",
                        **{field: name for field, (name, _) in columns.items()},
                    },
                },
            )
        )
        .sort_by([cb.TableSortByFieldState().display_name("GPU memory").desc(True)])
        .override_by_name(
            "Student", [dm.DynamicConfigValue(id_val="links", value=[student_link()])]
        )
    )
    for name, unit in columns.values():
        panel = panel.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value=unit)])
    # increase() extrapolates; a crash count is whole.
    panel = panel.override_by_name(
        "Crashes today", [dm.DynamicConfigValue(id_val="decimals", value=0)]
    )
    return panel


def alert_list() -> db.Panel:
    # The unified alert list reads the alerting rules of every rule source, Prometheus included.
    return (
        db.Panel()
        .type("alertlist")
        .title("Firing alerts")
        .description("Alerts firing or pending now, from Prometheus' dlcourse rules.")
        .grid_pos(dm.GridPos(w=12, h=8, x=0, y=0))
        .options(
            {
                "viewMode": "list",
                "groupMode": "default",
                "groupBy": [],
                "maxItems": 20,
                "sortOrder": 1,
                "dashboardAlerts": False,
                "alertName": "",
                "alertInstanceLabelFilter": "",
                "showInstances": True,
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "noData": False,
                    "normal": False,
                    "error": True,
                },
            }
        )
    )


def build(jobs: Jobs) -> db.Dashboard:
    dashboard = new_dashboard(
        UID,
        TITLE,
        "At a glance: who is online, how busy each GPU is and who holds it, whose kernel just "
        "crashed, what is firing.",
        ["class"],
    ).variables(standard_variables(jobs))
    for panel in summary_stats():
        dashboard = dashboard.with_panel(panel)
    dashboard = dashboard.with_row(row("GPUs"))
    for panel in gpu_timeseries():
        dashboard = dashboard.with_panel(panel)
    dashboard = (
        dashboard.with_row(row("Students"))
        .with_panel(
            timeseries_panel(
                "GPU memory by student",
                "GPU memory held by each student's processes, all GPUs together, stacked.",
                "bytes",
                [query(f"sum by (user) ({in_section(USER_GPU_MEMORY)})", "{{user}}")],
                stacked=True,
            )
        )
        .with_panel(students_table())
        .with_row(row("Trouble"))
        .with_panel(
            timeseries_panel(
                "Kernel crashes and OOM kills",
                "Kernels that died unexpectedly, by signal, and processes the kernel's "
                "out-of-memory killer ended.",
                "none",
                [
                    query(
                        "sum by (signal) ("
                        + in_section(
                            "increase(dlcourse_user_kernel_crashes_total"
                            f"{{{INSTANCE}}}[$__rate_interval])"
                        )
                        + ")",
                        "crash {{signal}}",
                        ref="A",
                    ),
                    query(
                        "sum("
                        + in_section(
                            f"increase(dlcourse_user_oom_kills_total{{{INSTANCE}}}[$__rate_interval])"
                        )
                        + ")",
                        "OOM kill",
                        ref="B",
                    ),
                ],
                bars=True,
            )
        )
        .with_panel(alert_list())
        .with_panel(idle_culls())
    )
    return dashboard


def idle_culls() -> db.Panel:
    """Kernels the idle-GPU culler shut down (on only where the lecturer turned it on)."""
    culls = f"increase(dlcourse_user_gpu_idle_culls_total{{{INSTANCE}}}[$__rate_interval])"
    return timeseries_panel(
        "Idle GPU kernels shut down",
        "Kernels the idle-GPU culler shut down because they held GPU memory idle, by student "
        "(tljh-config set dlcourse.gpu_idle_cull true; zero while it is off).",
        "none",
        [query(f"sum by (user) ({in_section(culls)})", "{{user}}")],
        bars=True,
    )
