"""A made-up but plausible class at work: for the benchmark, the demo and trying things out."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fakenvml.scenario import GIB, Gpu, Process, Scenario


def example_scenario(
    gpus: int, processes: int, users: int, pids: Sequence[int] | None = None, seed: int = 0
) -> Scenario:
    """``processes`` spread over ``users`` students, each student working on one GPU.

    NVML knows pids, not users: the pids are ``pids`` when given (e.g. real processes of
    real accounts that a benchmark started), else made-up ones above any real pid.
    """
    if gpus < 1 or processes < 0 or users < 1:
        raise ValueError("need gpus >= 1, processes >= 0 and users >= 1")
    if pids is not None and len(pids) < processes:
        raise ValueError(f"{processes} processes need as many pids, got {len(pids)}")
    rng = random.Random(seed)
    cards = [
        Gpu(temperature=rng.randint(30, 45), power_mw=rng.randint(55, 70) * 1000)
        for _ in range(gpus)
    ]
    for n in range(processes):
        user = n % users
        gpu = cards[user % gpus]
        pid = pids[n] if pids is not None else 5_000_000 + n
        busy = rng.random() < 0.6  # idle notebooks hold memory without computing
        used = min(rng.randint(1, 8) * GIB // 2, gpu.memory_total - gpu.memory_used)
        gpu.memory_used += used
        gpu.processes.append(
            Process(
                pid=pid,
                used_memory=used,
                sm_util=rng.randint(5, 60) if busy else 0,
                mem_util=rng.randint(1, 30) if busy else 0,
            )
        )
    for gpu in cards:
        busy = [p for p in gpu.processes if p.sm_util]
        gpu.utilization_gpu = min(100, sum(p.sm_util for p in busy))
        gpu.utilization_memory = min(100, sum(p.mem_util for p in busy))
        gpu.power_mw = min(gpu.power_limit_mw, gpu.power_mw + 3_000 * gpu.utilization_gpu)
        gpu.temperature += gpu.utilization_gpu // 4
    return Scenario(gpus=cards)
