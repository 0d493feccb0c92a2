"""Nobody can pass their GPU use or their crashes off as someone else's.

Issue 11, "Why" 4: a process of another account (even `nobody`) with JUPYTERHUB_USER=victim
counted as the victim's, its SIGABRT as the victim's kernel crash; a jupyter-victim.service
anywhere in a cgroup path named the victim; 500 processes with made-up names left 500
permanent phantom students; with a hub, accounts that are no hub users showed as students.
The processes here are real, of real accounts (root only); GPUs are the stand-in NVML.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dlcourse_testing.exporter import value
from dlcourse_testing.hostile_hub import HostileHub, user_model
from dlcourse_testing.procfs import write_process
from fakenvml import Gpu, Process, Scenario

GIB = 1024**3
GPU_ONLY = ("--no-collector.host",)
WAIT_FOR_A_LINE = "import os, sys; sys.stdin.readline(); os.abort()"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: processes of real accounts")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    """spawn(account, claim=None, kernel=False) -> a process of that account (uid or passwd
    entry); with kernel=True it looks like a notebook kernel and aborts on a line on stdin."""
    started: list[subprocess.Popen] = []
    tmp_path.chmod(0o755)

    def start(account, claim: str | None = None, kernel: bool = False) -> subprocess.Popen:
        env = {"PATH": "/usr/bin:/bin"}
        if claim:
            env["JUPYTERHUB_USER"] = claim
        uid = account if isinstance(account, int) else account.pw_uid
        argv = ["/usr/bin/python3", "-c", WAIT_FOR_A_LINE]
        if kernel:
            argv += ["-f", str(tmp_path / f"kernel-{uuid.uuid4()}.json")]
        process = subprocess.Popen(argv, env=env, user=uid, stdin=subprocess.PIPE, cwd="/")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def per_user(samples, name: str) -> dict[str, float]:
    return {dict(labels)["user"]: v for (n, labels), v in samples.items() if n == name}


def tljh_account(make_linux_user) -> tuple[pwd.struct_passwd, str]:
    """A TLJH-style account jupyter-<name> and its hub user <name>."""
    account = make_linux_user(f"jupyter-v{uuid.uuid4().hex[:8]}")
    return account, account.pw_name.removeprefix("jupyter-")


@needs_root
def test_forged_jupyterhub_user_is_not_believed(
    run_exporter, scenario_path, make_linux_user, spawn
):
    victim_account, victim = tljh_account(make_linux_user)
    attacker = make_linux_user()
    nobody = pwd.getpwnam("nobody")
    own = spawn(victim_account)
    forged = spawn(attacker, claim=victim)
    by_nobody = spawn(nobody, claim=victim)
    phantoms = [spawn(attacker, claim=f"phantom-{n}") for n in range(20)]
    Scenario(
        gpus=[
            Gpu(
                processes=[
                    Process(own.pid, 1 * GIB),
                    Process(forged.pid, 5 * GIB),
                    Process(by_nobody.pid, 2 * GIB),
                    *(Process(p.pid, GIB // 64) for p in phantoms),
                ]
            )
        ]
    ).write(scenario_path)
    exporter = run_exporter(*GPU_ONLY)
    samples = exporter.wait_for(
        lambda s: value(s, "dlcourse_user_gpu_processes", user=attacker.pw_name) == 21,
        what="the attacker's processes under the attacker's own name",
    )
    memory = per_user(samples, "dlcourse_user_gpu_memory_used_bytes")
    # Before: the victim had 8 GiB and 2 processes more, and 20 phantom students appeared.
    assert memory[victim] == 1 * GIB
    assert memory["nobody"] == 2 * GIB  # no hub: the Linux account stands in
    assert memory[attacker.pw_name] == 5 * GIB + 20 * (GIB // 64)
    assert not [user for user in memory if user.startswith("phantom-")]
    assert value(samples, "dlcourse_gpu_unattributed_memory_bytes", gpu="0") == 0

    # Its kernel's crash is not the victim's either; the victim's own one is.
    fake_kernel = spawn(attacker, claim=victim, kernel=True)
    own_kernel = spawn(victim_account, kernel=True)
    exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_user_kernels", user=attacker.pw_name) == 1
            and value(s, "dlcourse_user_kernels", user=victim) == 1
        ),
        what="both kernels",
    )
    fake_kernel.communicate(b"abort\n", timeout=10)
    crash = "dlcourse_user_kernel_crashes_total"
    exporter.wait_for(
        lambda s: value(s, crash, user=attacker.pw_name, signal="SIGABRT") == 1,
        timeout=30,
        what="the forged kernel's crash, counted for its own account",
    )
    own_kernel.communicate(b"abort\n", timeout=10)
    samples = exporter.wait_for(
        lambda s: value(s, crash, user=victim, signal="SIGABRT") == 1,
        timeout=30,
        what="the victim's own crash",
    )
    assert value(samples, crash, user=victim, signal="SIGABRT") == 1


@pytest.fixture
def hub_of(tmp_path: Path) -> Iterator:
    """hub_of(names) -> exporter arguments for a hub that lists exactly these users."""
    hubs: list[HostileHub] = []

    def make(names: list[str]) -> list[str]:
        hub = HostileHub()
        hub.users = [user_model(name) for name in names]
        hubs.append(hub)
        token = tmp_path / "hub-token"
        token.write_text("t\n")
        return [f"--hub.url={hub.api_url}", f"--hub.token-file={token}", "--hub.interval=1"]

    yield make
    for hub in hubs:
        hub.close()


@needs_root
def test_with_a_hub_only_its_users_are_students(
    run_exporter, scenario_path, make_linux_user, spawn, hub_of
):
    victim_account, victim = tljh_account(make_linux_user)
    stranger_account, stranger = tljh_account(make_linux_user)  # TLJH-named, not in the hub
    attacker = make_linux_user()
    no_account = 4_000_000 + os.getpid() % 1000  # a uid without a passwd entry
    processes = {
        "own": (spawn(victim_account), 1 * GIB),
        "forged": (spawn(attacker, claim=victim), 5 * GIB),
        "stranger": (spawn(stranger_account), 3 * GIB),
        "orphan uid": (spawn(no_account, claim=victim), 2 * GIB),
        "made up": (spawn(attacker, claim="nobody-knows-me"), 4 * GIB),
    }
    spawn(stranger_account, kernel=True)
    Scenario(
        gpus=[Gpu(processes=[Process(p.pid, memory) for p, memory in processes.values()])]
    ).write(scenario_path)
    exporter = run_exporter(*GPU_ONLY, *hub_of([victim, "someone-else"]))
    samples = exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_gpu_unattributed_processes", gpu="0") == 4
            and value(s, "dlcourse_user_gpu_processes", user=victim) == 1
        ),
        what="the hub's one student and four unattributed processes",
    )
    memory = per_user(samples, "dlcourse_user_gpu_memory_used_bytes")
    assert memory == {victim: 1 * GIB}  # before: the stranger, the attacker, ... as students
    unattributed = value(samples, "dlcourse_gpu_unattributed_memory_bytes", gpu="0")
    assert unattributed == (5 + 3 + 2 + 4) * GIB
    # Per GPU, the users' memory plus the unattributed memory is all NVML lists.
    assert sum(memory.values()) + unattributed == sum(m for _, m in processes.values())
    assert stranger not in per_user(samples, "dlcourse_user_kernels")


def test_a_unit_named_for_someone_else_proves_nothing(run_exporter, scenario_path, tmp_path):
    """On a fixture /proc tree: the cgroup paths a student can and cannot make."""
    procfs = tmp_path / "proc"
    me = os.getuid()
    write_process(procfs, 7001, cgroup="0::/system.slice/jupyter-victim.service\n", uid=me)
    # A student's own systemd --user manager runs units of any name:
    student_manager = "0::/user.slice/user-1001.slice/user@1001.service"
    unit = "jupyter-victim.service"
    write_process(procfs, 7002, cgroup=f"{student_manager}/app.slice/{unit}\n", uid=me)
    write_process(procfs, 7003, cgroup=f"{student_manager}/{unit}/x\n", uid=me)
    Scenario(
        gpus=[Gpu(processes=[Process(7001, GIB), Process(7002, 4 * GIB), Process(7003, 2 * GIB)])]
    ).write(scenario_path)
    exporter = run_exporter(f"--path.procfs={procfs}", "--no-collector.kernels", *GPU_ONLY)
    samples = exporter.wait_for(
        lambda s: value(s, "dlcourse_user_gpu_processes", user="victim") is not None,
        what="the victim's unit",
    )
    # Before: 7 GiB and 3 processes for the victim.
    assert value(samples, "dlcourse_user_gpu_memory_used_bytes", user="victim") == GIB
    assert value(samples, "dlcourse_user_gpu_processes", user="victim") == 1
