"""A class that starts its servers at the same moment: JupyterHub gives each Spawner its own
deep copy of the configured hook, and the spawns run concurrently in the hub's event loop.
Every GPU must end within one server of the others, whatever the policy, also while the
exporter cannot be reached."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from dlcourse_installer.hub.gpu_load import ClassGpus, ExporterUnavailable
from dlcourse_installer.hub.gpu_policy import GpuLoad

from .hook_parts import (
    GIB,
    UUIDS,
    assigner,
    copies_per_spawner,
    given,
    spawn_at_once,
    spawn_bursts,
    write_driver_proc,
)

CLASS = [f"student{i}" for i in range(6)]
EXPORTED = tuple(GpuLoad(i, u, 1 * GIB, 16 * GIB) for i, u in enumerate(UUIDS))


def within_one(uuids: list[str | None]) -> bool:
    counts = Counter(uuids)
    return set(counts) == set(UUIDS) and max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "roster"])
def test_a_burst_of_spawns_spreads_over_every_gpu(tmp_path, policy):
    """The exporter has seen none of these servers yet (it sees a server seconds after it
    starts): only the hook's own memory, shared by the copies, can spread them. The roster
    has no gpu for these students, so roster is least-loaded."""
    hook = assigner(lambda: ClassGpus(EXPORTED, {}), write_driver_proc(tmp_path), policy)
    spawners = spawn_at_once(copies_per_spawner(hook, len(CLASS)), CLASS)
    assert within_one(given(spawners)), Counter(given(spawners))


def test_policy_all_gives_every_gpu_to_a_burst(tmp_path):
    hook = assigner(lambda: ClassGpus(EXPORTED, {}), write_driver_proc(tmp_path), "all")
    assert given(spawn_at_once(copies_per_spawner(hook, len(CLASS)), CLASS)) == [None] * 6


def test_without_the_exporter_the_drivers_gpus_and_the_hooks_choices_spread_it(tmp_path, caplog):
    def down():
        raise ExporterUnavailable("ConnectionRefusedError: [Errno 111] Connection refused")

    caplog.set_level(logging.INFO, "test-hub")
    hook = assigner(down, write_driver_proc(tmp_path))
    spawners = spawn_at_once(copies_per_spawner(hook, len(CLASS)), CLASS)
    assert within_one(given(spawners)), Counter(given(spawners))
    assert "the exporter cannot be asked" in caplog.messages[0]
    assert "this hub's own choices only" in caplog.messages[0]


def test_copies_share_the_turn_and_the_choices_with_later_spawns(tmp_path):
    """A student who starts a minute after the rush is counted against it too."""
    hook = assigner(lambda: ClassGpus(EXPORTED, {}), write_driver_proc(tmp_path), "round-robin")
    first, later = spawn_bursts(
        (copies_per_spawner(hook, 4), CLASS[:4]), (copies_per_spawner(hook, 2), CLASS[4:])
    )
    assert given(first) + given(later) == [*UUIDS, *UUIDS]
