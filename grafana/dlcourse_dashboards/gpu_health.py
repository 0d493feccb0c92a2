"""GPU health: temperature, power, clocks, slowdowns, ECC and XID errors, per GPU."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    DASHED,
    DATASOURCE,
    INSTANCE,
    in_section,
    new_dashboard,
    query,
    query_variable,
    row,
    standard_variables,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from .jobs import Jobs
from .rules import GPU_MEMORY_RATIO

UID = "dlcourse-gpu"
TITLE = "GPU health"

GPU = f'{INSTANCE}, gpu=~"$gpu"'


def gpu_variable() -> db.QueryVariable:
    return query_variable("gpu", "GPU", f"label_values(dlcourse_gpu_info{{{INSTANCE}}}, gpu)")


def gpu_table() -> db.Panel:
    return (
        table_panel(
            "GPUs",
            "Each GPU's model, driver and CUDA version, and whether it answered NVML.",
            "none",
            [
                query(
                    f"dlcourse_gpu_info{{{GPU}}} * on(instance, gpu, uuid) group_left() "
                    f"dlcourse_gpu_up{{{GPU}}}",
                    instant=True,
                    table_format=True,
                )
            ],
            w=18,
            h=6,
        )
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "__name__": True, "job": True},
                    "indexByName": {"gpu": 0, "name": 1},
                    "renameByName": {
                        "gpu": "GPU",
                        "name": "Model",
                        "driver_version": "Driver",
                        "cuda_version": "CUDA",
                        "uuid": "UUID",
                        "Value": "Up",
                    },
                },
            )
        )
        .override_by_name(
            "Up",
            [
                dm.DynamicConfigValue(
                    id_val="mappings",
                    value=[
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "lost", "color": "red"},
                                "1": {"text": "up", "color": "green"},
                            },
                        }
                    ],
                )
            ],
        )
    )


def slowdown_timeline() -> db.Panel:
    # Only reasons active at some point in the range: a row per GPU and reason would otherwise
    # fill the panel with idle lines.
    expr = (
        f"dlcourse_gpu_clocks_event_active{{{GPU}}} and on(instance, gpu, reason) "
        f"(max_over_time(dlcourse_gpu_clocks_event_active{{{GPU}}}[$__range]) > 0)"
    )
    return (
        statetimeline.Panel()
        .title("Clock slowdown reasons")
        .description(
            "Why clocks were lowered (power cap, thermal, hardware slowdown, ...), for the "
            "reasons active at some point in the time range. gpu_idle is normal."
        )
        .datasource(DATASOURCE)
        .targets([query(expr, "GPU {{gpu}} {{reason}}")])
        .unit("none")
        .grid_pos(dm.GridPos(w=12, h=8, x=0, y=0))
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "0": dm.ValueMappingResult(text="off", color="transparent"),
                        "1": dm.ValueMappingResult(text="active", color="orange"),
                    }
                )
            ]
        )
    )


def build(jobs: Jobs) -> db.Dashboard:
    return (
        new_dashboard(
            UID,
            TITLE,
            "Per GPU: temperature, power against its limit, clocks and why they were lowered, "
            "ECC and XID errors, and who holds its memory.",
            ["gpu"],
        )
        .variables([*standard_variables(jobs), gpu_variable()])
        .with_panel(gpu_table())
        .with_panel(
            stat_panel(
                "GPUs lost",
                "GPUs that stopped answering NVML (fell off the bus, XID 79, driver trouble).",
                "none",
                [query(f"count(dlcourse_gpu_up{{{GPU}}} == 0) or vector(0)")],
                w=6,
                h=6,
                thresholds=[(None, "green"), (1, "red")],
            )
        )
        .with_row(row("Thermals and power"))
        .with_panel(
            timeseries_panel(
                "Temperature",
                "GPU core temperature.",
                "celsius",
                [query(f"dlcourse_gpu_temperature_celsius{{{GPU}}}", "GPU {{gpu}}")],
            )
        )
        .with_panel(
            timeseries_panel(
                "Power against limit",
                "Power draw; the dashed lines are each GPU's enforced power limit.",
                "watt",
                [
                    query(f"dlcourse_gpu_power_watts{{{GPU}}}", "GPU {{gpu}}", ref="A"),
                    query(f"dlcourse_gpu_power_limit_watts{{{GPU}}}", "GPU {{gpu}} limit", ref="B"),
                ],
            ).override_by_query("B", DASHED)
        )
        .with_panel(
            timeseries_panel(
                "Clocks",
                "Current SM and memory clocks.",
                "hertz",
                [query(f"dlcourse_gpu_clock_hertz{{{GPU}}}", "GPU {{gpu}} {{clock}}")],
            )
        )
        .with_panel(slowdown_timeline())
        .with_row(row("Errors"))
        .with_panel(
            timeseries_panel(
                "ECC errors",
                "Volatile ECC errors; uncorrected ones kill the process that hit them.",
                "none",
                [
                    query(
                        "sum by (gpu, type) (increase(dlcourse_gpu_ecc_errors_total"
                        f"{{{GPU}}}[$__rate_interval]))",
                        "GPU {{gpu}} {{type}}",
                    )
                ],
                bars=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "XID errors",
                "NVIDIA driver XID events by code (13, 31, 43: application faults; 48: double-bit "
                "ECC; 79: GPU fell off the bus).",
                "none",
                [
                    query(
                        "sum by (gpu, xid) (increase(dlcourse_gpu_xid_errors_total"
                        f"{{{GPU}}}[$__rate_interval]))",
                        "GPU {{gpu}} XID {{xid}}",
                    )
                ],
                bars=True,
            )
        )
        .with_row(row("Memory"))
        .with_panel(
            timeseries_panel(
                "GPU memory used",
                "Framebuffer used over total, per GPU.",
                "percentunit",
                [
                    query(
                        f"{GPU_MEMORY_RATIO} and on(instance, gpu) dlcourse_gpu_up{{{GPU}}}",
                        "GPU {{gpu}}",
                    )
                ],
                max_value=1,
            )
        )
        .with_panel(
            timeseries_panel(
                "GPU memory by student",
                "Who holds GPU memory, stacked over the GPUs chosen in $gpu (pick one to see it "
                "alone). The section filter applies.",
                "bytes",
                [
                    query(
                        in_section(f"dlcourse_user_gpu_memory_used_bytes{{{GPU}}}"),
                        "GPU {{gpu}} {{user}}",
                    )
                ],
                stacked=True,
            )
        )
    )
