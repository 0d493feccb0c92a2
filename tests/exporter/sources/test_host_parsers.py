"""cgroup and kernel-log parsers, and the cgroup reader over fixture trees (v1, v2, hybrid)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dlcourse_exporter.sources.cgroups import (
    CgroupReader,
    CgroupUsage,
    parse_keyed,
    parse_v1_limit,
    parse_v2_limit,
    unit_cgroup,
)
from dlcourse_exporter.sources.host import increase
from dlcourse_exporter.sources.kmsg import (
    KmsgWatcher,
    parse_oom_kill,
    parse_oom_summary,
    record_message,
)
from dlcourse_exporter.sources.procfs import cgroup_paths

HYBRID = """9:name=systemd:/system.slice/jupyter-alice.service
4:memory:/system.slice/jupyter-alice.service
2:cpu,cpuacct:/system.slice/jupyter-alice.service
0::/system.slice/jupyter-alice.service
"""
KILLED = (
    "3,422,416013029,-;Memory cgroup out of memory: Killed process 9198 (python3) "
    "total-vm:116352kB, anon-rss:32512kB, file-rss:5320kB, shmem-rss:0kB, UID:1001 "
    "pgtables:124kB oom_score_adj:0"
)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_cgroup_paths_and_unit():
    found = cgroup_paths(HYBRID.splitlines())
    assert found["memory"] == "/system.slice/jupyter-alice.service"
    assert found[""] == "/system.slice/jupyter-alice.service"
    assert unit_cgroup("/system.slice/jupyter-alice.service/x", "jupyter-", "alice") == (
        "/system.slice/jupyter-alice.service"
    )
    assert unit_cgroup("/system.slice/jupyter-alicea.service", "jupyter-", "alice") is None
    assert unit_cgroup("/user.slice/user-1001.slice", "jupyter-", "alice") is None


def test_keyed_and_limits():
    assert parse_keyed("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")["oom_kill"] == 2
    assert parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")["oom_kill"] == 1
    assert parse_keyed("usage_usec 1500000\nuser_usec 1000000\n")["usage_usec"] == 1500000
    assert parse_v2_limit("max\n") is None and parse_v2_limit("67108864\n") == 67108864
    assert parse_v1_limit("9223372036854771712\n") is None
    assert parse_v1_limit("67108864\n") == 67108864


def test_reader_hybrid_v1_controllers(tmp_path):
    unit = "system.slice/jupyter-alice.service"
    write(
        tmp_path,
        {
            "unified/cgroup.controllers": "hugetlb\n",
            f"unified/{unit}/cgroup.procs": "",
            f"memory/{unit}/memory.usage_in_bytes": "1048576\n",
            f"memory/{unit}/memory.limit_in_bytes": "67108864\n",
            f"memory/{unit}/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            f"cpu,cpuacct/{unit}/cpuacct.usage": "2500000000\n",
        },
    )
    reader = CgroupReader(tmp_path)
    located = reader.locate(cgroup_paths(HYBRID.splitlines()), "jupyter-", "alice")
    assert located is not None and located.exists()
    assert reader.usage(located) == CgroupUsage(1048576, 67108864, 3, 2.5)
    assert reader.locate(cgroup_paths(HYBRID.splitlines()), "jupyter-", "bob") is None


def test_reader_pure_v2(tmp_path):
    unit = "system.slice/jupyter-alice.service"
    write(
        tmp_path,
        {
            "cgroup.controllers": "cpu memory pids\n",
            f"{unit}/memory.current": "2097152\n",
            f"{unit}/memory.max": "max\n",
            f"{unit}/memory.events": "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n",
            f"{unit}/cpu.stat": "usage_usec 4000000\nuser_usec 3000000\nsystem_usec 1000000\n",
        },
    )
    reader = CgroupReader(tmp_path)
    located = reader.locate({"": f"/{unit}"}, "jupyter-", "alice")
    assert reader.usage(located) == CgroupUsage(2097152, None, 1, 4.0)


def test_increase_handles_recreated_counters():
    assert increase(None, 5) == 5
    assert increase(5, 7) == 2
    assert increase(7, 1) == 1  # a new cgroup counts from zero


def test_oom_kill_lines():
    kill = parse_oom_kill(record_message(KILLED))
    assert (kill.pid, kill.command, kill.uid) == (9198, "python3", 1001)
    old = parse_oom_kill("Out of memory: Killed process 77 (a b) total-vm:1kB")
    assert (old.pid, old.uid) == (77, None)  # a tail this kernel does not write: no uid
    oom_line = "oom-kill:constraint=CONSTRAINT_MEMCG,task=python3,pid=9198,uid=1001"
    assert parse_oom_kill(oom_line) is None  # one victim, counted once
    assert parse_oom_summary(oom_line) == (9198, 1001)
    assert record_message("6,1,2,-;hello\n SUBSYSTEM=x") == "hello"


# The victim's name is the student's to choose (15 bytes, TASK_COMM_LEN): here one that
# imitates the fields after it, as on a real kernel (tests/exporter/sources/test_host_live.py).
FORGED = (
    "Memory cgroup out of memory: Killed process 4242 (a) UID:1109 () total-vm:9kB, "
    "anon-rss:1kB, file-rss:2kB, shmem-rss:0kB, UID:1001 pgtables:4kB oom_score_adj:0"
)
FORGED_SUMMARY = (
    "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    "oom_memcg=/x,task_memcg=/x,task=,pid=7,uid=1109,pid=4242,uid=1001"
)


def test_a_victim_named_like_the_fields_after_it_fools_nothing():
    """Old behaviour: a process named `a) UID:1109 (` was counted for uid 1109."""
    kill = parse_oom_kill(FORGED)
    assert (kill.pid, kill.uid, kill.command) == (4242, 1001, "a) UID:1109 (")
    assert parse_oom_summary(FORGED_SUMMARY) == (4242, 1001)


@pytest.mark.parametrize(
    "message",
    [
        "a.out[1]: Memory cgroup out of memory: Killed process 5 (x) " + KILLED.split(") ", 1)[1],
        "audit: Killed process 5 (x) total-vm:1kB",
        "Killed process 5 (x) total-vm:1kB",  # no "<reason>: " before it
    ],
)
def test_only_a_line_that_starts_as_the_kernel_s_counts(message):
    assert parse_oom_kill(message) is None


def test_records_written_from_user_space_are_not_the_kernel_s(tmp_path):
    """Only facility 0 is the kernel's own: the kernel gives anything written to /dev/kmsg
    another facility (kernel/printk/printk.c, devkmsg_write)."""
    assert record_message(KILLED) != ""
    assert record_message("12," + KILLED.split(",", 1)[1]) == ""  # <12>: user.warning
    assert record_message("14,1,2,-;oom-kill:task=x,pid=1,uid=2") == ""


def test_kmsg_watcher_reads_appended_records(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text("3,1,1,-;Killed process 1 (old) UID:5\n")  # before start: not counted
    watcher = KmsgWatcher(log)
    watcher.start()
    try:
        with log.open("a") as handle:
            handle.write(KILLED + "\n6,2,2,-;unrelated\n")
        deadline = time.monotonic() + 30  # generous: a busy machine
        kills = []
        while not kills and time.monotonic() < deadline:
            kills = watcher.take()
            time.sleep(0.1)
        assert [(k.pid, k.uid) for k in kills] == [(9198, 1001)]
    finally:
        watcher.stop()


def test_the_summary_gives_the_uid_when_the_kill_line_has_none(tmp_path):
    """The summary line (rate-limited) comes first; a kill line whose tail this parser does
    not know takes the uid from the summary of the same pid."""
    log = tmp_path / "kmsg"
    log.write_text("")
    watcher = KmsgWatcher(log)
    watcher.start()
    try:
        with log.open("a") as handle:
            handle.write("6,1,1,-;oom-kill:constraint=CONSTRAINT_NONE,task=x,pid=77,uid=1001\n")
            handle.write("3,2,2,-;Out of memory: Killed process 77 (x) total-vm:1kB\n")
            handle.write("3,3,3,-;Out of memory: Killed process 78 (y) total-vm:1kB\n")
        deadline, kills = time.monotonic() + 30, []
        while len(kills) < 2 and time.monotonic() < deadline:
            kills += watcher.take()
            time.sleep(0.1)
        assert [(k.pid, k.uid) for k in kills] == [(77, 1001), (78, None)]
    finally:
        watcher.stop()
