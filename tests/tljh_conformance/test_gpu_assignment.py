"""Issue 17's proof: TLJH's hub with dlcourse's GPU hook over three stand-in GPUs, seven
students of a roster (one TA, staff), the hub's admin, and the real exporter reading NVML
(fakenvml) and /proc: each policy's assignment lands in the servers' environments and in
``dlcourse_user_gpu_assigned``; a GPU that fills up is skipped; a hub restart keeps running
servers' GPUs and counts them; strict mode's unit properties pass ``systemd-analyze verify``.

Issue 21's: six more students of the roster, without a gpu, start their servers at the same
moment through the hub's REST API, and each policy spreads them; strict mode without the
driver's GPU list gives no GPU; a ``dlcourse`` setting that is no mapping starts the hub.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from dlcourse_testing.alerting import wait_until
from dlcourse_testing.exporter import TOKEN, RunningExporter, value
from dlcourse_testing.students import python_as
from dlcourse_testing.tljh_hub import tljh_config
from fakenvml import Gpu, Scenario

GIB = 1 << 30
UUIDS = [f"GPU-fa4e0000-0000-4000-8000-00000000000{i}" for i in range(3)]
STUDENTS = 7
CROWD = 6  # students without a gpu in the roster: a class that logs in at 9:00


def scenario(used_gib=(1, 1, 1)) -> Scenario:
    return Scenario(
        gpus=[
            Gpu(uuid=u, memory_total=16 * GIB, memory_used=int(used * GIB))
            for u, used in zip(UUIDS, used_gib, strict=True)
        ]
    )


@pytest.fixture(scope="module")
def crowd() -> list[str]:
    return [f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(CROWD)]


@pytest.fixture(scope="module")
def course(make_tljh_hub, fake_nvml_dir, tmp_path_factory, crowd):
    """The hub (started by each test with its policy), the exporter, the people."""
    folder = tmp_path_factory.mktemp("gpu-course")
    students = [f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(STUDENTS)]
    ta = f"dlct-ta-{uuid.uuid4().hex[:6]}"
    # The roster's gpu column: project teams of two share a GPU; the last student has none,
    # nor has the crowd (section B).
    rows = [f"{s},A,student,{i // 2 if i < STUDENTS - 1 else ''}" for i, s in enumerate(students)]
    rows += [f"{s},B,student," for s in crowd]
    roster = folder / "roster.csv"
    roster.write_text("username,section,role,gpu\n" + "\n".join([*rows, f"{ta},,ta,"]) + "\n")
    hub = make_tljh_hub("--roster", str(roster), start=False)
    # The driver's /proc files that strict mode reads /dev/nvidiaN's number from: minors in
    # another order than NVML's indices, as on servers where they differ.
    driver_proc = hub.site.local("/proc/driver/nvidia")  # where the rendered hook looks
    for index, gpu_uuid in enumerate(UUIDS):
        info = driver_proc / "gpus" / f"0000:{0x18 + index:02x}:00.0" / "information"
        info.parent.mkdir(parents=True)
        info.write_text(f"Model: Stand-in\nGPU UUID: {gpu_uuid}\nDevice Minor: {2 - index}\n")
    for name in [*students, *crowd, ta, hub.admin]:
        hub.users.append(name)  # stopped with the hub; their accounts removed with it
        hub.accounts_made.created.append(hub.account(name))
    gpus = folder / "gpus.scn"
    scenario().write(gpus)
    # The hook reads the exporter's token where the installer put it; the exporter and
    # these tests' scrapes use this session's.
    hub.site.local("/etc/dlcourse/exporter-token").write_text(TOKEN + "\n")
    hub.start(timeout=120)  # before the exporter, which is ready once the hub answers
    exporter = RunningExporter(
        [
            f"--hub.url={hub.api_url}",
            f"--hub.token-file={hub.site.local('/etc/dlcourse/hub-token')}",
            "--hub.interval=1",
            "--collection.interval=1",
        ],
        nvml_dir=fake_nvml_dir,
        scenario=gpus,
        port=hub.ports["exporter"],
        log_path=folder / "exporter.log",
    )
    yield hub, exporter, students, ta, gpus
    exporter.stop()


def with_policy(hub, exporter, policy: str, strict: bool = False) -> None:
    """As a lecturer would: tljh-config set, then the hub reloads (servers stopped here,
    and gone from the exporter's view before the next test's spawns)."""
    hub.stop()
    exporter.wait_for(
        lambda s: not any(m == "dlcourse_user_gpu_assigned" for m, _ in s), 60, "no servers"
    )
    for key, setting in (("dlcourse.gpu_policy", policy), ("dlcourse.gpu_strict", str(strict))):
        done = tljh_config(hub.prefix, "set", key, setting.lower())
        assert done.returncode == 0, done.stderr
    hub.start(timeout=120)


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


def server_environ(hub, name: str) -> dict[str, str]:
    return environ(hub.user_model(name)["servers"][""]["state"]["pid"])


def start(hub, names) -> dict[str, str | None]:
    """Starts each server in turn; {name: its CUDA_VISIBLE_DEVICES, or None}."""
    found = {}
    for name in names:
        pid = hub.start_server(name)["state"]["pid"]
        found[name] = environ(pid).get("CUDA_VISIBLE_DEVICES")
    return found


def start_at_once(hub, names) -> dict[str, str | None]:
    """Every server's POST /users/NAME/server sent at the same moment, as a class that
    logs in at 9:00, then each waited for; {name: its CUDA_VISIBLE_DEVICES, or None}."""

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=hub.client.headers, timeout=60) as client:
            return await asyncio.gather(
                *(client.post(f"{hub.api_url}/users/{name}/server") for name in names)
            )

    for name, answer in zip(names, asyncio.run(post_all()), strict=True):
        assert answer.status_code in (201, 202), f"{name}: {answer.status_code} {answer.text}"
    return {name: environ(hub.wait_server(name, ready=True)["state"]["pid"]).get(
        "CUDA_VISIBLE_DEVICES") for name in names}  # fmt: skip


def exported(exporter, names) -> dict[str, str]:
    """Waits until the exporter shows an assignment for each name; {name: uuid}."""

    def assigned(samples):
        return {
            dict(labels)["user"]: dict(labels)["uuid"]
            for (metric, labels), v in samples.items()
            if metric == "dlcourse_user_gpu_assigned" and v == 1
        }

    samples = exporter.wait_for(lambda s: set(names) <= set(assigned(s)), 90, "assignments")
    for (metric, labels), _ in samples.items():
        if metric == "dlcourse_user_gpu_assigned":
            labels = dict(labels)
            assert UUIDS[int(labels["gpu"])] == labels["uuid"]  # gpu is NVML's index
    return {name: gpu for name, gpu in assigned(samples).items() if name in names}


def test_least_loaded_spreads_the_class_and_staff_get_every_gpu(course):
    hub, exporter, students, ta, _ = course
    with_policy(hub, exporter, "least-loaded")
    given = start(hub, students)
    assert Counter(given.values()) == {UUIDS[0]: 3, UUIDS[1]: 2, UUIDS[2]: 2}
    assert list(given.values())[:3] == UUIDS  # equal load: in index order
    staff = start(hub, [ta, hub.admin])
    assert staff == {ta: None, hub.admin: None}  # every GPU
    assert exported(exporter, students) == given
    assert "dlcourse GPU: " + students[0] + " gets GPU 0" in hub.log_tail(2000)

    # The hub restarts (tljh-config reload hub): running servers keep GPU and process, and
    # the next student is counted against them (the hook learns them from the exporter).
    pids = {name: hub.user_model(name)["servers"][""]["state"]["pid"] for name in students}
    hub.restart_keeping_servers()
    after = {name: hub.user_model(name)["servers"][""]["state"]["pid"] for name in students}
    assert after == pids and {n: server_environ(hub, n).get("CUDA_VISIBLE_DEVICES")
                              for n in students} == given  # fmt: skip
    # GPU 2 then holds one server, the fewest; a hook that knew only its own choices (none
    # since the restart) would pick GPU 0.
    hub.stop_server(students[2])
    exporter.wait_for(
        lambda s: value(s, "dlcourse_user_gpu_assigned", user=students[2]) is None,
        60, "the stopped server's assignment gone",
    )  # fmt: skip
    assert start(hub, [students[2]]) == {students[2]: UUIDS[2]}


def test_a_student_cannot_move_their_exported_gpu(course):
    """What /proc/PID/environ shows is the environment at exec: a process changing its own
    environment, or a process started later with another one, moves nothing."""
    hub, exporter, students, _, _ = course
    name = students[0]
    given = exported(exporter, [name])[name]
    other = next(u for u in UUIDS if u != given)
    account = pwd.getpwnam(hub.account(name))
    code = (
        "import os, time; os.environ['CUDA_VISIBLE_DEVICES'] = 'changed'; "
        "os.putenv('CUDA_VISIBLE_DEVICES', 'changed'); "
        "print(open('/proc/self/environ', 'rb').read().split(b'\\0').count("
        f"b'CUDA_VISIBLE_DEVICES={other}'), flush=True); time.sleep(60)"
    )
    env = {"JUPYTERHUB_USER": name, "CUDA_VISIBLE_DEVICES": other}
    forger = python_as(account, code, env=env, stdout=subprocess.PIPE, text=True)
    try:
        # Its own view of its initial environment is unchanged by what it set...
        assert forger.stdout.readline().strip() == "1"
        # ...and the exporter keeps the server's, the first process with the name.
        exporter.wait_poll_after("processes", 1.0)  # a cycle that saw the forger
        assert exported(exporter, [name])[name] == given
    finally:
        forger.kill()
        forger.wait()


# What a student's own ~/.jupyter/jupyter_server_config.py can make their server do: when
# ~/rewrite-now appears (holding "OLD NEW"), overwrite OLD with NEW in the server's initial
# environment, in place (the area /proc/PID/environ shows is the process's own memory:
# env_start and env_end, fields 50 and 51 of /proc/PID/stat, proc(5)), rename the process,
# and say so in ~/rewritten.
REWRITER = """
import ctypes, threading, time
from pathlib import Path


def rewrite():
    trigger = Path.home() / "rewrite-now"
    while not trigger.exists():
        time.sleep(0.1)
    old, new = trigger.read_text().split()
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])
    at = ctypes.string_at(start, end - start).index(old.encode())
    ctypes.memmove(start + at, new.encode(), len(new))
    Path("/proc/self/comm").write_text("renamed")
    (Path.home() / "rewritten").write_bytes(Path("/proc/self/environ").read_bytes())


threading.Thread(target=rewrite, daemon=True).start()
"""


def test_a_server_rewriting_its_own_environment_keeps_its_exported_gpu(course):
    """Old behaviour: the exporter read the environment again after the rename (a possible
    exec), and exported the GPU the server had written there."""
    hub, exporter, students, _, _ = course
    name = students[-2]
    hub.stop_server(name)  # running since an earlier test, or not
    if hub.account(name) not in {entry.pw_name for entry in pwd.getpwall()}:
        hub.start_server(name)  # TLJH makes the account at the first spawn
        hub.stop_server(name)
    account = pwd.getpwnam(hub.account(name))
    home = Path(account.pw_dir)
    config = home / ".jupyter" / "jupyter_server_config.py"
    config.parent.mkdir(exist_ok=True)
    config.write_text(REWRITER)
    for path in (config.parent, config):
        os.chown(path, account.pw_uid, account.pw_gid)  # the student's own files
    try:
        pid = hub.start_server(name)["state"]["pid"]
        given = exported(exporter, [name])[name]
        other = next(u for u in UUIDS if u != given)
        (home / "rewrite-now").write_text(f"CUDA_VISIBLE_DEVICES={given} "
                                          f"CUDA_VISIBLE_DEVICES={other}")  # fmt: skip
        wait_until(lambda: (home / "rewritten").exists(), 60, "the server's rewrite")
        assert environ(pid)["CUDA_VISIBLE_DEVICES"] == other  # /proc shows the forgery
        exporter.wait_poll_after("processes", 1.0)  # a cycle that saw the new name
        exporter.wait_poll_after("processes", 1.0)
        assert exported(exporter, [name])[name] == given
    finally:
        for path in (config, home / "rewrite-now", home / "rewritten"):
            path.unlink(missing_ok=True)
        hub.stop_server(name)


def test_least_loaded_skips_a_gpu_that_fills_up(course):
    hub, exporter, students, _, gpus = course
    with_policy(hub, exporter, "least-loaded")
    scenario(used_gib=(15, 1, 2)).write(gpus)  # someone's training run fills GPU 0
    exporter.wait_for(
        lambda s: value(s, "dlcourse_gpu_memory_used_bytes", gpu="0") == 15 * GIB,
        60, "GPU 0 full",
    )  # fmt: skip
    try:
        given = start(hub, students[:4])
    finally:
        scenario().write(gpus)
    assert UUIDS[0] not in given.values()
    assert list(given.values()) == [UUIDS[1], UUIDS[2], UUIDS[1], UUIDS[2]]


def test_round_robin_takes_the_gpus_in_turn(course):
    hub, exporter, students, _, _ = course
    with_policy(hub, exporter, "round-robin")
    assert list(start(hub, students[:4]).values()) == [*UUIDS, UUIDS[0]]


def test_roster_gives_each_team_its_gpu_and_the_rest_least_loaded(course):
    hub, exporter, students, _, _ = course
    with_policy(hub, exporter, "roster")
    given = start(hub, students)
    teams = {s: UUIDS[i // 2] for i, s in enumerate(students[:-1])}
    assert {s: given[s] for s in teams} == teams
    # The last student has no gpu in the roster: least-loaded (GPUs 0-2 hold 2, 2, 2).
    assert given[students[-1]] == UUIDS[0]


def test_all_sets_nothing(course):
    hub, exporter, students, _, _ = course
    with_policy(hub, exporter, "all")
    assert start(hub, students[:2]) == dict.fromkeys(students[:2])


def test_strict_mode_allows_the_servers_own_device_node_only(course, tmp_path):
    hub, exporter, students, ta, _ = course
    with_policy(hub, exporter, "round-robin", strict=True)
    start(hub, students[:2])
    for index, name in enumerate(students[:2]):
        env = server_environ(hub, name)
        assert env["CUDA_VISIBLE_DEVICES"] == UUIDS[index]
        properties = json.loads(env["DLCOURSE_TEST_UNIT_PROPERTIES"])
        assert properties["DevicePolicy"] == "closed"
        # The driver's minor for this GPU (2 - index here), not NVML's index.
        assert properties["DeviceAllow"][0] == f"/dev/nvidia{2 - index} rw"
        assert not any(f"/dev/nvidia{m} " in d for d in properties["DeviceAllow"][1:]
                       for m in range(3))  # fmt: skip
        unit = tmp_path / f"jupyter-{index}.service"
        unit.write_text(unit_file(properties))
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    staff = start(hub, [ta])
    assert staff == {ta: None}
    assert "DLCOURSE_TEST_UNIT_PROPERTIES" not in server_environ(hub, ta)


def unit_file(properties: dict) -> str:
    """The transient unit systemd-run makes from --property flags, as a unit file."""
    lines = []
    for key, values in properties.items():
        for one in values if isinstance(values, list) else [values]:
            lines.append(f"{key}={one}")
    body = "\n".join(lines)
    return f"[Service]\nExecStart=/bin/true\n{body}\n"


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "roster", "all"])
def test_a_class_that_starts_at_once_is_spread_over_every_gpu(course, crowd, policy):
    """Before the exporter has seen any of their servers, only the hook's own memory of its
    choices can spread them (on main, all six got GPU 0: each spawner held its own copy of
    the hook, and of that memory). The roster gives the crowd no gpu: least-loaded."""
    hub, exporter, _, _, _ = course
    with_policy(hub, exporter, policy)
    given = start_at_once(hub, crowd)
    counts = Counter(given.values())
    print(f"{policy}: {dict(counts)}")  # the measured spread, for the record (pytest -s)
    assert counts == ({None: CROWD} if policy == "all" else dict.fromkeys(UUIDS, 2)), counts


def test_strict_mode_without_the_drivers_gpu_list_gives_no_gpu(course):
    hub, exporter, students, _, _ = course
    driver_proc = hub.site.local("/proc/driver/nvidia")
    hidden = driver_proc.with_name("nvidia-hidden")
    driver_proc.rename(hidden)  # as on a server whose driver is not loaded
    try:
        with_policy(hub, exporter, "least-loaded", strict=True)
        start(hub, students[:1])
        env = server_environ(hub, students[0])
    finally:
        hidden.rename(driver_proc)
    assert "CUDA_VISIBLE_DEVICES" not in env  # the exporter still lists three GPUs
    properties = json.loads(env["DLCOURSE_TEST_UNIT_PROPERTIES"])
    assert properties["DevicePolicy"] == "closed"
    assert not [d for d in properties["DeviceAllow"] if re.match(r"/dev/nvidia\d", d)]
    log = hub.log_tail(400)
    assert f"dlcourse GPU: {students[0]} gets no GPU (strict mode): the driver lists no GPU" in log


def test_a_dlcourse_setting_that_is_not_a_mapping_starts_the_hub_with_the_defaults(course):
    """`tljh-config set dlcourse round-robin` (the key without .gpu_policy) made the hub
    exit 1 at its next start."""
    hub, exporter, students, _, _ = course
    hub.stop()
    done = tljh_config(hub.prefix, "set", "dlcourse", "round-robin")
    assert done.returncode == 0, done.stderr
    offset = hub.log_size()
    hub.start(timeout=120)
    logged = hub.log_since(offset)
    assert "dlcourse GPU: tljh-config dlcourse 'round-robin' is not a mapping" in logged
    exporter.wait_for(
        lambda s: not any(m == "dlcourse_user_gpu_assigned" for m, _ in s), 60, "no servers"
    )
    assert list(start(hub, students[:2]).values()) == UUIDS[:2]  # least-loaded, the default
