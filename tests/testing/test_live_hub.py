"""The live hub fixture's own promises, which other test areas build on."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

from dlcourse_testing.hub import LiveHub


def process_uid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])


def process_environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").split("=", 1) for e in entries if b"=" in e)


def gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


def test_kernels_start_restart_and_shut_down_as_the_user(live_hub: LiveHub):
    user = live_hub.add_user()
    try:
        live_hub.start_server(user)
        kernel = live_hub.start_kernel(user)
        pid = live_hub.kernel_pid(user, kernel)
        assert [k["id"] for k in live_hub.kernels(user)] == [kernel]
        assert process_environ(pid)["JUPYTERHUB_USER"] == user
        if os.geteuid() == 0:
            assert pwd.getpwuid(process_uid(pid)).pw_name == user

        live_hub.restart_kernel(user, kernel)
        assert gone(pid)
        new_pid = live_hub.kernel_pid(user, kernel)
        assert new_pid != pid

        live_hub.shutdown_kernel(user, kernel)
        assert gone(new_pid)
        assert live_hub.kernels(user) == []
    finally:
        live_hub.remove_user(user)


def test_held_spawn_stays_pending_until_released(live_hub: LiveHub):
    user = live_hub.add_user()
    try:
        live_hub.hold_spawn(user)  # returns once the hub's pre-spawn hook holds it
        server = live_hub.user_model(user)["servers"][""]
        assert (server["pending"], server["ready"]) == ("spawn", False)
        assert live_hub.release_spawn(user)["ready"] is True
    finally:
        live_hub.remove_user(user)


def test_a_cancelled_spawn_leaves_no_server(live_hub: LiveHub):
    user = live_hub.add_user()
    try:
        live_hub.hold_spawn(user)
        live_hub.cancel_spawn(user)
        assert live_hub.user_model(user)["servers"] == {}
    finally:
        live_hub.remove_user(user)
