"""The class at a glance, for the exporter's own status page when Grafana is not at hand.

Built from the same samples /metrics serves (the public metric names), so the page shows
exactly what Prometheus would see, whichever collectors are enabled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric


def class_status(families: Iterable[Metric]) -> dict[str, Any]:
    """{"gpus": [...], "students": [...]} from metric families, students sorted by name.

    The hub's GPU hook reads each GPU's uuid and memory, and each student's assigned GPU,
    from here (installer/hub/gpu_load.py)."""
    students: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "groups": [],
            "server": None,
            "gpus": [],
            "gpu_memory_bytes": 0.0,
            "gpu_utilization_ratio": 0.0,
            "kernels": 0.0,
            "crashes": 0.0,
            "oom_kills": 0.0,
            "last_activity": None,
            "assigned_gpu": None,
        }
    )
    gpus: dict[str, dict[str, Any]] = {}
    for family in families:
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            user = labels.get("user")
            # Any per-user series makes a row: hub users, and accounts seen on GPUs/kernels.
            row = students[user] if user else {}
            match sample.name:
                case "dlcourse_hub_user_group_info":
                    row["groups"].append(labels["group"])
                case "dlcourse_hub_user_servers" if value > 0:
                    row["server"] = labels["state"]
                case "dlcourse_hub_user_last_activity_timestamp_seconds":
                    row["last_activity"] = value
                case "dlcourse_user_gpu_memory_used_bytes":
                    row["gpu_memory_bytes"] += value
                    row["gpus"].append(labels["gpu"])
                case "dlcourse_user_gpu_assigned":
                    row["assigned_gpu"] = {"gpu": labels["gpu"], "uuid": labels["uuid"]}
                case "dlcourse_user_gpu_utilization_ratio":
                    row["gpu_utilization_ratio"] += value
                case "dlcourse_user_kernels":
                    row["kernels"] += value
                case "dlcourse_user_kernel_crashes_total":
                    row["crashes"] += value
                case "dlcourse_user_oom_kills_total":
                    row["oom_kills"] += value
                case "dlcourse_gpu_utilization_ratio":
                    gpus.setdefault(labels["gpu"], {})["utilization_ratio"] = value
                case "dlcourse_gpu_memory_used_bytes":
                    gpus.setdefault(labels["gpu"], {})["memory_used_bytes"] = value
                case "dlcourse_gpu_memory_total_bytes":
                    gpus.setdefault(labels["gpu"], {})["memory_total_bytes"] = value
                case "dlcourse_gpu_up":
                    gpus.setdefault(labels["gpu"], {}).update(up=value == 1, uuid=labels["uuid"])
    return {
        "gpus": [{"gpu": index, **gpus[index]} for index in sorted(gpus, key=int)],
        "students": [
            {"user": user, **row, "gpus": sorted(set(row["gpus"]), key=int)}
            for user, row in sorted(students.items())
        ],
    }
