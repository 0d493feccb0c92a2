"""One student's own data, and the idle kernels of the class, as the API answers them.

For ``GET /api/students/{user}`` (the status service shows it to that student, and only to
them, behind the hub's login) and ``GET /api/idle`` (the idle-GPU culler). Built from the
``students`` source's snapshot and, for the student's GPUs now, the same samples /metrics
serves (``dlcourse_user_gpu_memory_used_bytes``, ``..._utilization_ratio``,
``..._assigned``), so the page and Grafana agree. Every list is bounded; every text in it
was cleaned and cut where it entered (``sources.students``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

from .model import StudentsSnapshot

# The processes collector's per-user GPU series a student's "gpus" list is made of.
GPU_NOW = frozenset(
    {
        "dlcourse_user_gpu_memory_used_bytes",
        "dlcourse_user_gpu_utilization_ratio",
        "dlcourse_user_gpu_assigned",
    }
)
MAX_KERNELS = 100
MAX_OTHER_PROCESSES = 100
MAX_IDLE = 10_000


def student_status(
    user: str, snapshot: StudentsSnapshot, families: Iterable[Metric]
) -> dict[str, Any] | None:
    """The contract's document for one user (docs/exporter.md, "The students' API"); None
    for a user the exporter does not know."""
    if user not in snapshot.users and user not in snapshot.kernel_users:
        return None
    return {
        "user": user,
        "generated_at": snapshot.generated_at,
        "gpus": gpus_now(user, families),
        "gpu_seconds_total": {
            use.gpu_uuid: use.busy_seconds for use in snapshot.gpu_time if use.user == user
        },
        "gpu_memory_byte_seconds_total": {
            use.gpu_uuid: use.memory_byte_seconds for use in snapshot.gpu_time if use.user == user
        },
        "kernels": [
            {
                "kernel_id": kernel.kernel_id,
                "notebook": kernel.notebook,
                "started": kernel.started,
                "gpu_memory_bytes": kernel.memory_bytes,
                "gpu_utilization_ratio": kernel.utilization_ratio,
                "gpu_idle_since": kernel.idle_since,
                "gpus": list(kernel.gpus),
            }
            for kernel in snapshot.kernels
            if kernel.user == user
        ][:MAX_KERNELS],
        "other_gpu_processes": [
            {
                "pid": process.pid,
                "command": process.command,
                "gpu_memory_bytes": process.memory_bytes,
                "gpu_idle_since": process.idle_since,
            }
            for process in snapshot.other_processes
            if process.user == user
        ][:MAX_OTHER_PROCESSES],
        "deaths": [
            {
                "kernel_id": d.kernel_id,
                "notebook": d.notebook,
                "at": d.at,
                "reason": d.reason,
                "detail": d.detail,
            }
            for d in snapshot.deaths
            if d.user == user
        ],
        "idle_culls": snapshot.idle_culls.get(user, 0),
    }


def gpus_now(user: str, families: Iterable[Metric]) -> list[dict[str, Any]]:
    """The GPUs the user holds memory on or was assigned, from the processes collector."""
    gpus: dict[str, dict[str, Any]] = {}
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if sample.name not in GPU_NOW or labels.get("user") != user:
                continue
            row = gpus.setdefault(
                labels["gpu"],
                {
                    "gpu": labels["gpu"],
                    "uuid": labels["uuid"],
                    "assigned": False,
                    "memory_used_bytes": 0,
                    "utilization_ratio": 0.0,
                },
            )
            match sample.name:
                case "dlcourse_user_gpu_memory_used_bytes":
                    row["memory_used_bytes"] = int(sample.value)
                case "dlcourse_user_gpu_utilization_ratio":
                    row["utilization_ratio"] = sample.value
                case "dlcourse_user_gpu_assigned":
                    row["assigned"] = sample.value == 1
    return [gpus[index] for index in sorted(gpus, key=int)]


def idle_kernels(snapshot: StudentsSnapshot) -> list[dict[str, Any]]:
    """Every kernel holding GPU memory with ``gpu_idle_since`` set, the longest idle first."""
    idle = sorted(
        (k for k in snapshot.kernels if k.idle_since is not None and k.memory_bytes > 0),
        key=lambda kernel: (kernel.idle_since, kernel.user, kernel.kernel_id),
    )
    return [
        {
            "user": kernel.user,
            "kernel_id": kernel.kernel_id,
            "gpu_memory_bytes": kernel.memory_bytes,
            "gpu_idle_since": kernel.idle_since,
            "gpus": list(kernel.gpus),
        }
        for kernel in idle[:MAX_IDLE]
    ]
