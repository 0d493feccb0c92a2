"""Real processes of real accounts: CPU, memory, limits and real OOM kills (root only).

The OOM kills are provoked for real: a process of a fresh account allocates past the
limit of a memory cgroup the test makes, once named like a TLJH unit (counted from the
cgroup's own counter) and once not (counted from the kernel log).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlcourse_testing.exporter_run import running_exporter, value, wait_for, wait_poll_after
from dlcourse_testing.students import python_as

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: accounts and cgroups")

CGROUPFS = Path("/sys/fs/cgroup")
COLLECTORS = ("--no-collector.gpu", "--no-collector.processes", "--no-collector.kernels")
LIMIT = 64 * 1024 * 1024
# Waits for a line on stdin (so the test can move it into a cgroup first), then either
# allocates far past the limit or burns CPU and holds memory until killed.
ALLOCATE = "import sys; sys.stdin.readline(); b = [bytearray(16 << 20) for _ in range(64)]"
# Waits for a line, then forks a child that takes the name in argv[1] and allocates past
# the limit (the OOM killer's victim, gone within milliseconds: never in a process table
# walk); prints the child's wait status.
NAMED_VICTIM = (
    "import os, sys; sys.stdin.readline(); pid = os.fork()\n"
    "if pid == 0:\n"
    "    open('/proc/self/comm', 'w').write(sys.argv[1])\n"
    "    b = [bytearray(16 << 20) for _ in range(64)]\n"
    "    os._exit(0)\n"
    "print(os.waitpid(pid, 0)[1], flush=True)\n"
)
BUSY = (
    "import sys, time; b = bytearray(32 << 20); sys.stdin.readline()\n"
    "while time.process_time() < 1.5: pass\n"
    "sys.stdin.readline()"
)


def memory_v1() -> Path | None:
    path = CGROUPFS / "memory"
    return path if (path / "memory.limit_in_bytes").exists() else None


def memory_v2() -> Path | None:
    for root in (CGROUPFS, CGROUPFS / "unified"):
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "memory" in controllers.read_text().split():
            return root
    return None


@pytest.fixture
def cgroup_dirs() -> Iterator[list[Path]]:
    """Cgroup directories the test makes; removed (deepest first) afterwards."""
    made: list[Path] = []
    yield made
    for path in reversed(made):
        for _ in range(50):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # processes still exiting
                time.sleep(0.1)


def start_as(
    account, code: str, hub_user: str | None = None, args: tuple[str, ...] = ()
) -> subprocess.Popen:
    env = {"JUPYTERHUB_USER": hub_user} if hub_user else {}
    return python_as(account, code, *args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def limited_cgroup(root: Path, relative: str, made: list[Path], v2: bool) -> Path:
    path = root
    for part in relative.split("/"):
        path = path / part
        if v2 and path.parent != root.parent:
            # cgroup v2: a child gets the memory controller only if its parent passes it on.
            (path.parent / "cgroup.subtree_control").write_text("+memory")
        if path.is_dir():
            continue  # systemd's own system.slice: used, never removed
        path.mkdir(exist_ok=True)
        made.append(path)
    if v2:
        (path / "memory.max").write_text(str(LIMIT))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
    else:
        (path / "memory.limit_in_bytes").write_text(str(LIMIT))
        if (path / "memory.memsw.limit_in_bytes").exists():
            (path / "memory.memsw.limit_in_bytes").write_text(str(LIMIT))
    return path


def provoke_oom(account, cgroup: Path, hub_user: str | None) -> None:
    process = start_as(account, ALLOCATE, hub_user)
    (cgroup / "cgroup.procs").write_text(str(process.pid))
    process.communicate(b"go\n", timeout=60)
    assert process.returncode == -9, f"expected an OOM kill, got exit {process.returncode}"


def oom_kills(url: str, user: str) -> float | None:
    return value(url, "dlcourse_user_oom_kills_total", user=user)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_oom_kill_in_the_users_unit_cgroup(version, make_linux_user, cgroup_dirs):
    root = memory_v1() if version == "v1" else memory_v2()
    if root is None:
        pytest.skip(f"no cgroup {version} memory controller on this machine")
    account = make_linux_user()
    user = account.pw_name
    # Where TLJH's systemd unit for the user is, so the exporter takes it as the user's own.
    unit = limited_cgroup(
        root, f"system.slice/jupyter-{user}.service", cgroup_dirs, version == "v2"
    )
    holder = start_as(account, "import sys; sys.stdin.readline()")
    (unit / "cgroup.procs").write_text(str(holder.pid))
    try:
        with running_exporter(*COLLECTORS, "--collector.host", "--collection.interval=0.5") as url:
            wait_for(
                lambda: value(url, "dlcourse_user_memory_limit_bytes", user=user) == LIMIT,
                60,
                "the user's cgroup limit was not reported",
            )
            assert value(url, "dlcourse_user_host_source_info", user=user, source="cgroup") == 1
            assert oom_kills(url, user) == 0
            provoke_oom(account, unit, hub_user=None)
            wait_for(lambda: oom_kills(url, user) == 1, 60, "the OOM kill was not counted")
            # The kernel log also has it (logged before the process died): the exporter's
            # reader takes it up at once, and it must not be counted twice. How far that
            # thread got is not visible, so: two more host polls, on the exporter's own pace.
            wait_poll_after(url, "host", 0)
            wait_poll_after(url, "host", 0)
            assert oom_kills(url, user) == 1
    finally:
        holder.communicate(b"\n", timeout=10)


def test_oom_kill_outside_a_unit_counted_from_the_kernel_log(make_linux_user, cgroup_dirs):
    root = memory_v1() or memory_v2()
    if root is None:
        pytest.skip("no memory cgroup controller on this machine")
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable")
    # TLJH's account for a hub user: the kernel log's uid alone names the student.
    account = make_linux_user(f"jupyter-dlct{uuid.uuid4().hex[:8]}")
    hub_user = account.pw_name.removeprefix("jupyter-")
    cgroup = limited_cgroup(root, f"dlct-{uuid.uuid4().hex[:8]}", cgroup_dirs, root != memory_v1())
    holder = start_as(account, "import sys; sys.stdin.readline()")
    try:
        with running_exporter(*COLLECTORS, "--collector.host", "--collection.interval=0.5") as url:
            wait_for(lambda: oom_kills(url, hub_user) == 0, 60, "the user was not reported")
            assert value(url, "dlcourse_user_memory_limit_bytes", user=hub_user) is None
            provoke_oom(account, cgroup, None)
            wait_for(lambda: oom_kills(url, hub_user) == 1, 60, "the OOM kill was not counted")
    finally:
        holder.communicate(b"\n", timeout=10)


def test_an_oom_killed_process_named_after_a_classmate_counts_for_its_owner(
    make_linux_user, cgroup_dirs
):
    """Old behaviour: the kill line was read by text after the victim's name, so a process
    named `a) UID:<classmate's uid> (` was counted for the classmate."""
    root = memory_v1() or memory_v2()
    if root is None:
        pytest.skip("no memory cgroup controller on this machine")
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable")
    account, classmate = (make_linux_user(f"jupyter-dlct{uuid.uuid4().hex[:8]}") for _ in "ab")
    hub_user, classmate_user = (a.pw_name.removeprefix("jupyter-") for a in (account, classmate))
    forged = f"a) UID:{classmate.pw_uid} ("
    assert len(forged.encode()) <= 15  # the kernel's TASK_COMM_LEN less its NUL
    cgroup = limited_cgroup(root, f"dlct-{uuid.uuid4().hex[:8]}", cgroup_dirs, root != memory_v1())
    holder = start_as(account, "import sys; sys.stdin.readline()")
    try:
        with running_exporter(*COLLECTORS, "--collector.host", "--collection.interval=0.5") as url:
            wait_for(lambda: oom_kills(url, hub_user) == 0, 60, "the user was not reported")
            parent = start_as(account, NAMED_VICTIM, args=(forged,))
            (cgroup / "cgroup.procs").write_text(str(parent.pid))
            out, _ = parent.communicate(b"go\n", timeout=60)
            assert int(out) & 0x7F == 9, f"expected an OOM kill, got status {out!r}"
            wait_for(lambda: oom_kills(url, hub_user) == 1, 60, "the OOM kill was not counted")
            assert oom_kills(url, classmate_user) is None
    finally:
        holder.communicate(b"\n", timeout=10)


def test_cpu_and_memory_summed_from_proc_without_a_cgroup(make_linux_user, tmp_path):
    account = make_linux_user()
    hub_user = f"hub-{account.pw_name}"
    other = make_linux_user()  # another account: its JUPYTERHUB_USER proves nothing
    busy = start_as(account, BUSY, hub_user)
    bystander = start_as(other, "import sys; sys.stdin.readline()", hub_user)  # not believed
    shared = f"--user.spawner-account={account.pw_name}"  # it runs servers for hub users
    try:
        with running_exporter(
            *COLLECTORS, "--collector.host", "--collection.interval=0.5", shared
        ) as url:
            wait_for(
                lambda: (
                    (value(url, "dlcourse_user_memory_used_bytes", user=hub_user) or 0) > 32 << 20
                ),
                60,
                "the user's resident memory was not reported",
            )
            assert value(url, "dlcourse_user_host_source_info", user=hub_user, source="proc") == 1
            assert value(url, "dlcourse_user_memory_limit_bytes", user=hub_user) is None
            before = value(url, "dlcourse_user_cpu_seconds_total", user=hub_user)
            busy.stdin.write(b"go\n")
            busy.stdin.flush()
            wait_for(
                lambda: (
                    value(url, "dlcourse_user_cpu_seconds_total", user=hub_user) >= before + 1.0
                ),
                60,
                "the user's CPU time did not grow",
            )
            busy.communicate(b"\n", timeout=60)
            # The process is gone: memory drops to 0, the CPU counter keeps what it had.
            spent = value(url, "dlcourse_user_cpu_seconds_total", user=hub_user)
            wait_for(
                lambda: value(url, "dlcourse_user_memory_used_bytes", user=hub_user) == 0,
                60,
                "memory of an exited process still reported",
            )
            assert value(url, "dlcourse_user_cpu_seconds_total", user=hub_user) >= spent
            assert value(url, "dlcourse_user_memory_used_bytes", user=other.pw_name) is None
    finally:
        for process in (busy, bystander):
            if process.poll() is None:
                process.communicate(b"\n\n", timeout=10)
    shutil.rmtree(tmp_path, ignore_errors=True)
