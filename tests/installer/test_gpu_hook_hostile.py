"""The GPU hook against what a student or a broken server could make it read: an exporter's
port answered by someone else (GPUs that do not exist, a flood, a trickle), a driver that lists
nothing, a bad tljh-config value. Strict mode never fails open; nothing stops a spawn."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dlcourse_installer.hub.gpu_hook import GpuAssigner, settings_from_tljh
from dlcourse_installer.hub.gpu_load import (
    ClassGpus,
    ExporterUnavailable,
    parse_class_gpus,
    read_class_gpus,
)
from dlcourse_installer.hub.gpu_policy import GpuLoad
from dlcourse_testing.secret_files import REASONS, finishes_within, hostile_secret_files

from .hook_parts import (
    GIB,
    UUIDS,
    User,
    assigner,
    copies_per_spawner,
    given,
    spawn,
    spawn_at_once,
    write_driver_proc,
)

EXPORTED = tuple(GpuLoad(i, u, 1 * GIB, 16 * GIB) for i, u in enumerate(UUIDS))


# -- the driver's list, not the exporter's ----------------------------------------------------
def test_gpus_the_driver_does_not_list_are_never_given(tmp_path):
    """An answer from whoever holds the exporter's port: an empty GPU of its own invention,
    and the class "assigned" to it."""
    invented = GpuLoad(3, "GPU-invented", 0, 80 * GIB)
    answer = ClassGpus((*EXPORTED, invented), {f"x{i}": "GPU-invented" for i in range(50)})
    hook = assigner(lambda: answer, write_driver_proc(tmp_path))
    choices = [spawn(hook, User(f"s{i}")).environment["CUDA_VISIBLE_DEVICES"] for i in range(6)]
    assert sorted(choices) == sorted([*UUIDS, *UUIDS])


def test_a_gpu_the_driver_lists_and_the_exporter_does_not_still_serves(tmp_path):
    """The exporter supplies load only: a GPU it leaves out is known, just not preferred."""
    answer = ClassGpus(EXPORTED[:1], {})
    hook = assigner(lambda: answer, write_driver_proc(tmp_path))
    assert spawn(hook, User("ada")).environment["CUDA_VISIBLE_DEVICES"] == "GPU-0"
    assert spawn(hook, User("grace")).environment["CUDA_VISIBLE_DEVICES"] == "GPU-0"
    only = assigner(lambda: ClassGpus((), {}), write_driver_proc(tmp_path / "b"))
    assert spawn(only, User("ada")).environment["CUDA_VISIBLE_DEVICES"] == "GPU-0"


# -- strict mode never fails open -------------------------------------------------------------
NO_GPU = {
    "DevicePolicy": "closed",
    "DeviceAllow": [
        "/dev/nvidiactl rw", "/dev/nvidia-uvm rw", "/dev/nvidia-uvm-tools rw", "char-pts rw",
        "/dev/ptmx rw", "/dev/tty rw",
    ],
}  # fmt: skip


def test_strict_without_the_drivers_list_gives_no_gpu_and_says_why(tmp_path, caplog):
    caplog.set_level(logging.INFO, "test-hub")
    hook = assigner(lambda: ClassGpus(EXPORTED, {}), str(tmp_path / "absent"), strict=True)
    spawner = spawn(hook, User("ada"))
    assert "CUDA_VISIBLE_DEVICES" not in spawner.environment
    assert spawner.unit_extra_properties == NO_GPU
    assert caplog.messages == [
        f"dlcourse GPU: ada gets no GPU (strict mode): the driver lists no GPU in "
        f"{tmp_path / 'absent'}"
    ]


def test_strict_after_a_bug_gives_no_gpu(tmp_path, caplog):
    """(Without strict mode, every GPU: tests/installer/test_gpu_assignment.py.)"""

    def broken():
        raise RuntimeError("surprise")

    caplog.set_level(logging.INFO, "test-hub")
    spawner = spawn(assigner(broken, write_driver_proc(tmp_path), strict=True), User("ada"))
    assert spawner.unit_extra_properties == NO_GPU
    assert caplog.messages == [
        "dlcourse GPU: ada gets no GPU (strict mode): failed (RuntimeError: surprise)"
    ]


def test_strict_gives_the_chosen_gpus_own_device_from_the_drivers_list(tmp_path, caplog):
    caplog.set_level(logging.INFO, "test-hub")
    hook = assigner(lambda: ClassGpus(EXPORTED, {}), write_driver_proc(tmp_path), strict=True)
    spawner = spawn(hook, User("ada"))
    assert spawner.environment["CUDA_VISIBLE_DEVICES"] == "GPU-0"
    assert spawner.unit_extra_properties["DeviceAllow"][0] == "/dev/nvidia2 rw"  # its minor
    assert caplog.messages[-1].endswith(", strict: /dev/nvidia2 only")


# -- the exporter's answer is bounded -----------------------------------------------------------
def answer(gpus=None, students=None) -> bytes:
    gpus = gpus if gpus is not None else [
        {"gpu": "0", "uuid": "GPU-0", "up": True, "memory_used_bytes": 1.0,
         "memory_total_bytes": 2.0}
    ]  # fmt: skip
    return json.dumps({"gpus": gpus, "students": students or []}).encode()


def gpu(**changes) -> dict:
    return {"gpu": "0", "uuid": "GPU-0", "up": True, "memory_used_bytes": 1, **changes}


@pytest.mark.parametrize(
    "body",
    [
        answer(gpus=[gpu(gpu=str(i), uuid=f"GPU-{i}") for i in range(65)]),  # more GPUs than NVML
        answer(students=[{"user": f"u{i}", "assigned_gpu": None} for i in range(10_001)]),
        answer(gpus=[gpu(memory_used_bytes="lots")]),
        answer(gpus=[gpu(memory_used_bytes=True)]),
        answer(gpus=[gpu(memory_used_bytes=-1)]),
        answer(gpus=[gpu(uuid="GPU-" + "9" * 200)]),
        answer(gpus=[gpu(uuid=["GPU-0"])]),
        answer(gpus=[gpu(gpu="1e9")]),
        answer(gpus=[gpu(gpu="٣")]),  # isdigit(), and int() reads it as 3
        answer(gpus=[gpu(gpu="²")]),  # isdigit(), and int() refuses it
        answer(students=[{"user": ["ada"], "assigned_gpu": {"uuid": "GPU-0"}}]),
        answer(students=[{"user": "ada", "assigned_gpu": {"uuid": 7}}]),
        answer(students=[{"user": "a" * 300, "assigned_gpu": {"uuid": "GPU-0"}}]),
        b'{"gpus": [{"gpu": "0", "uuid": "GPU-0", "up": true, "memory_used_bytes": NaN}],'
        b' "students": []}',
        b'{"gpus": {}, "students": []}',
    ],
    ids=lambda body: body[:60].decode(errors="replace"),
)
def test_an_answer_out_of_bounds_is_refused_whole(body):
    with pytest.raises(ExporterUnavailable, match="not an /api/class answer"):
        parse_class_gpus(body)


def test_an_answer_within_bounds_is_read():
    seen = parse_class_gpus(answer(students=[{"user": "ada", "assigned_gpu": {"uuid": "GPU-0"}}]))
    assert seen == ClassGpus((GpuLoad(0, "GPU-0", 1.0, 2.0),), {"ada": "GPU-0"})


# -- one deadline for the whole read -----------------------------------------------------------
@contextmanager
def trickling_exporter(every: float = 0.5) -> Iterator[str]:
    """A real HTTP server that sends a valid /api/class answer one byte every ``every``
    seconds, as a student's program on the exporter's port could (the whole answer: ~25 s)."""
    body = answer()
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            for byte in reply:
                if stop.wait(every):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def test_a_trickling_exporter_is_given_up_after_three_seconds(tmp_path):
    token = tmp_path / "token"
    token.write_text("t\n")
    with trickling_exporter() as url:
        started = time.monotonic()
        with pytest.raises(ExporterUnavailable, match="within 3 s"):
            read_class_gpus(url, str(token))
        elapsed = time.monotonic() - started
    assert 2.9 < elapsed < 4.0, elapsed


def test_a_trickling_exporter_costs_a_burst_one_deadline_and_it_still_spreads(tmp_path):
    token = tmp_path / "token"
    token.write_text("t\n")
    with trickling_exporter() as url:
        hook = GpuAssigner.from_tljh_config(
            str(tmp_path / "no-config.yaml"), exporter_url=url, token_file=str(token),
            staff_group="instructors", roster_gpus={},
            driver_proc=write_driver_proc(tmp_path / "proc"),
        )  # fmt: skip
        started = time.monotonic()
        spawners = spawn_at_once(copies_per_spawner(hook, 6), [f"s{i}" for i in range(6)])
        elapsed = time.monotonic() - started
    assert sorted(given(spawners)) == sorted([*UUIDS, *UUIDS])
    assert elapsed < 5.0, elapsed


@pytest.mark.parametrize("what", sorted(REASONS))
def test_a_token_file_that_would_hang_or_flood_the_hook_is_one_line(tmp_path, what):
    path = hostile_secret_files(tmp_path / "hostile")[what]
    with pytest.raises(ExporterUnavailable) as error:
        finishes_within(10, lambda: read_class_gpus("http://127.0.0.1:1", str(path)))
    assert str(error.value) == f"token file {path}: {REASONS[what]}"


# -- tljh-config values of the wrong kind -------------------------------------------------------
@pytest.mark.parametrize("section", ["round-robin", ["round-robin"], 3, True])
def test_a_dlcourse_section_that_is_not_a_mapping_is_one_line_and_the_defaults(section):
    settings, errors = settings_from_tljh({"dlcourse": section})
    assert settings == settings_from_tljh({})[0]
    assert errors == [
        f"tljh-config dlcourse {section!r} is not a mapping (set dlcourse.gpu_policy and "
        "dlcourse.gpu_strict): using the defaults"
    ]


def test_the_hook_loads_from_a_config_yaml_with_a_bad_section(tmp_path, caplog):
    config = tmp_path / "config.yaml"
    config.write_text("dlcourse: round-robin\nusers:\n  admin: [teacher]\n")
    caplog.set_level(logging.INFO)
    hook = GpuAssigner.from_tljh_config(
        str(config), exporter_url="http://127.0.0.1:1", token_file=str(tmp_path / "t"),
        staff_group="instructors", roster_gpus={}, driver_proc=write_driver_proc(tmp_path),
    )  # fmt: skip
    assert hook.settings == settings_from_tljh({})[0]
    assert [r.getMessage() for r in caplog.records if r.name == "JupyterHub"] == [
        "dlcourse GPU: tljh-config dlcourse 'round-robin' is not a mapping (set "
        "dlcourse.gpu_policy and dlcourse.gpu_strict): using the defaults"
    ]
