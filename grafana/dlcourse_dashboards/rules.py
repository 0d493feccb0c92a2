"""Expressions over the recording rules in prometheus/rules/dlcourse-recording.yml.

The rules aggregate with `without (...)`, so they keep the `instance` label and the
$instance filter still applies. Panels that need the per-GPU split use the raw metrics.
"""

from __future__ import annotations

from .common import INSTANCE
from .jobs import Jobs

# Average utilization over all GPUs of an exporter.
CLASS_GPU_UTILIZATION = f"instance:dlcourse_gpu_utilization_ratio:avg{{{INSTANCE}}}"
# Used over total framebuffer memory, all GPUs together.
CLASS_GPU_MEMORY_RATIO = f"instance:dlcourse_gpu_memory_used:ratio{{{INSTANCE}}}"
# Used over total framebuffer memory, per GPU.
GPU_MEMORY_RATIO = f"gpu:dlcourse_gpu_memory_used:ratio{{{INSTANCE}}}"
# GPU memory each user holds, all GPUs together.
USER_GPU_MEMORY = f"user:dlcourse_user_gpu_memory_used_bytes:sum{{{INSTANCE}}}"
# Students holding GPU memory.
USERS_ON_GPU = f"instance:dlcourse_users_on_gpu:count{{{INSTANCE}}}"


def hub_spawn_p90(jobs: Jobs) -> str:
    """Spawn duration, 90th percentile over 15 minutes: what the slow-spawn alert watches."""
    selector = jobs.selector("jupyterhub")
    return f"instance:jupyterhub_server_spawn_duration_seconds:p90_rate15m{{{selector}}}"
