import os
import pwd
import shutil
import time

import pytest

from dlcourse_exporter.model import Attribution, Evidence, ProcessTable
from dlcourse_exporter.sources.host import HostTracker
from dlcourse_exporter.sources.owners import (
    Owners,
    Policy,
    attribute,
    environ_user,
    status_uid,
    unit_user,
)
from dlcourse_exporter.sources.proctable import ProcessTableSource, environ_variables
from dlcourse_exporter.sources.roster import (
    USER_RETENTION_SECONDS,
    Roster,
    SharedRoster,
    keep_user,
    system_account,
)
from dlcourse_testing.procfs import write_process

CGROUP_V2_TLJH = "0::/system.slice/jupyter-alice.service\n"
CGROUP_V1_TLJH = (
    "12:memory:/system.slice/jupyter-bob.service\n"
    "11:cpu,cpuacct:/system.slice/jupyter-bob.service\n1:name=systemd:/system.slice/x\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CGROUP_V2_TLJH, "alice"),
        (CGROUP_V1_TLJH, "bob"),
        ("0::/system.slice/jupyterhub.service\n", None),  # the hub itself
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
        ("0::/system.slice/jupyter-carol.service/kernel\n", "carol"),
        ("", None),
        # A student's own systemd --user manager can run any unit name: proves nothing.
        ("0::/user.slice/user-1001.slice/user@1001.service/jupyter-victim.service\n", None),
        ("0::/user.slice/user-1001.slice/user@1001.service/app.slice/jupyter-v.service\n", None),
        ("0::/system.slice/other.slice/jupyter-victim.service\n", None),
        ("0::/x/system.slice/jupyter-victim.service\n", None),
    ],
)
def test_unit_user(text, expected):
    assert unit_user(text.splitlines(), "jupyter-") == expected


def test_unit_user_custom_prefix():
    assert unit_user(["0::/system.slice/course-dan.service"], "course-") == "dan"
    assert unit_user(["0::/system.slice/course-dan.service"], "jupyter-") is None
    assert unit_user(["0::/system.slice/cron.service"], "") is None  # no prefix, no rule


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (b"PATH=/bin\0JUPYTERHUB_USER=alice\0HOME=/home/a\0", "alice"),
        (b"JUPYTERHUB_USER=\0", None),
        (b"PATH=/bin\0", None),
        (b"\xff\xfe\0JUPYTERHUB_USER=\xe9ve\0", "\ufffdve"),  # garbage never raises
        (b"", None),
    ],
)
def test_environ_user(environ, expected):
    assert environ_user(environ_variables(environ)) == expected


def test_status_uid():
    assert status_uid("Name:\tpython\nUid:\t1001\t1001\t1001\t1001\n") == 1001
    assert status_uid("Name:\tpython\n") is None
    assert status_uid("Uid:\tgarbage\n") is None


LONG = "averyveryverylongstudentname"
LONG_ACCOUNT = "jupyter-averyveryverylongs-808f4"


def test_tljh_account_names():
    # Expected values printed by TLJH 2.0.0's own tljh/normalize.py generate_system_username.
    assert system_account("alice", "jupyter-") == "jupyter-alice"
    assert system_account("a" * 17, "jupyter-") == "jupyter-" + "a" * 17  # 25 characters
    assert system_account("a" * 18, "jupyter-") == "jupyter-aaaaaaaaaaaaaaaaaa-3f1e4"
    assert system_account(LONG, "jupyter-") == LONG_ACCOUNT
    assert system_account(LONG, "") == LONG  # LocalProcessSpawner: the hub name itself


HUB = Policy(prefix="jupyter-", spawner_account="jupyterhub", hub=True)
NO_HUB = Policy(prefix="jupyter-", spawner_account="jupyterhub", hub=False)
ROSTER = Roster.of([(n, n) for n in ("alice", "victim", LONG)], "jupyter-")


@pytest.mark.parametrize(
    ("evidence", "policy", "expected"),
    [
        # 1. the unit under /system.slice
        (Evidence("alice", "nobody", "victim"), HUB, Attribution("alice", "unit")),
        # 2. the student's own account, with TLJH's hashed long-name form
        (Evidence(None, "jupyter-alice", "victim"), HUB, Attribution("alice", "account")),
        (Evidence(None, LONG_ACCOUNT), HUB, Attribution(LONG, "account")),
        (Evidence(None, LONG_ACCOUNT), NO_HUB, Attribution("averyveryverylongs-808f4", "account")),
        # 3. JUPYTERHUB_USER only under the spawner's shared account
        (Evidence(None, "jupyterhub", "victim"), HUB, Attribution("victim", "environ")),
        (Evidence(None, "nobody", "victim"), HUB, None),  # forged: another account
        (Evidence(None, "root", "victim"), HUB, None),
        (Evidence(None, "nobody", "victim"), NO_HUB, Attribution("nobody", "linux-account")),
        # with a hub, only its users are students
        (Evidence("mallory", "root"), HUB, None),
        (Evidence(None, "jupyter-mallory"), HUB, None),
        (Evidence(None, "jupyterhub", "made-up-name"), HUB, None),
        (Evidence(None, "jupyter-mallory"), NO_HUB, Attribution("mallory", "account")),
        (Evidence(None, None, "victim"), HUB, None),  # a uid without an account
        (Evidence(None, None, "victim"), NO_HUB, None),
    ],
)
def test_attribution_rules(evidence, policy, expected):
    assert attribute(evidence, policy, ROSTER if policy.hub else None) == expected


def test_nobody_is_a_student_before_the_hub_answered():
    assert attribute(Evidence("alice", "jupyter-alice"), HUB, None) is None


def test_own_account_vouches_for_its_environ_without_a_prefix():
    local = Policy(prefix="", hub=False)  # LocalProcessSpawner: account = hub name
    assert attribute(Evidence(None, "dana", "dana"), local, None) == Attribution("dana", "environ")
    assert attribute(Evidence(None, "dana", "erik"), local, None) == Attribution(
        "dana", "linux-account"
    )
    listed = Roster.of([("dana", "dana")], "")
    assert attribute(Evidence(None, "dana"), Policy(prefix="", hub=True), listed) == Attribution(
        "dana", "account"
    )


def test_users_drop_out_when_no_longer_counted():
    hour = 3600
    assert keep_user("ghost", 0.0, hour - 1, False, None)
    assert not keep_user("ghost", 0.0, hour + 1, False, None)
    assert keep_user("alice", 0.0, 10 * hour, True, ROSTER)  # a hub user stays
    assert not keep_user("ghost", 0.0, 1.0, True, ROSTER)  # not in the hub: at once
    assert not keep_user("alice", 0.0, 1.0, True, None)


def owners_in(table: ProcessTable) -> dict[int, str | None]:
    return {e.pid: e.owner.user if e.owner else None for e in table}


def test_owners_in_a_fixture_tree(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    write_process(tmp_path, 10, cgroup=CGROUP_V2_TLJH, environ=b"JUPYTERHUB_USER=zed\0")
    write_process(tmp_path, 11, environ=b"JUPYTERHUB_USER=zed\0")
    write_process(tmp_path, 12)
    write_process(tmp_path, 13, uid=4_000_000)  # no such account
    table = ProcessTableSource(Owners("jupyter-", spawner_account=me), tmp_path).poll()
    # The unit wins; then JUPYTERHUB_USER under the spawner's account; without a hub the
    # account stands in; a uid without an account is nobody's.
    assert owners_in(table) == {10: "alice", 11: "zed", 12: me, 13: None}
    untrusting = ProcessTableSource(Owners("jupyter-"), tmp_path).poll()
    assert owners_in(untrusting)[11] == me  # JUPYTERHUB_USER of a stranger is ignored

    roster = SharedRoster(hub_configured=True)
    with_hub = ProcessTableSource(Owners("jupyter-", me, roster), tmp_path)
    assert owners_in(with_hub.poll())[10] is None  # the hub has not answered yet
    roster.update([("alice", "alice")])
    assert owners_in(with_hub.poll()) == {10: "alice", 11: None, 12: None, 13: None}


def test_owners_in_the_real_proc():
    entry = ProcessTableSource(Owners()).poll().get(os.getpid())
    assert entry is not None and entry.owner is not None


def test_a_student_without_processes_drops_out_after_the_retention(tmp_path):
    """Why 4: 500 made-up names stayed on /metrics for good; now they go after an hour."""
    me = os.getuid()
    for pid, name in ((20, "ghost"), (21, "alice")):
        write_process(tmp_path, pid, environ=f"JUPYTERHUB_USER={name}\0".encode(), uid=me)
    owners = Owners("jupyter-", spawner_account=pwd.getpwuid(me).pw_name)
    table = ProcessTableSource(owners, tmp_path)
    now = [0.0]
    host = HostTracker(owners, tmp_path / "no-cgroups", kmsg=None, clock=lambda: now[0])

    def users() -> set[str]:
        return {user.user for user in host.poll(table.poll()).users}

    assert users() == {"ghost", "alice"}
    shutil.rmtree(tmp_path / "20")  # the ghost's process ends; alice's runs on
    now[0] = USER_RETENTION_SECONDS - 1
    assert users() == {"ghost", "alice"}  # counters stay a while
    now[0] = USER_RETENTION_SECONDS + 1
    assert users() == {"alice"}


def test_an_oom_kill_counts_for_the_table_s_process_only_when_the_uid_agrees(tmp_path):
    """Old behaviour: a kill named a pid the table had seen, and counted for that process's
    owner whatever uid the kernel logged (a pid reused since the last walk)."""
    procfs, kmsg = tmp_path / "proc", tmp_path / "kmsg"
    unit = "0::/system.slice/jupyter-alice.service\n"
    write_process(procfs, 30, uid=os.getuid(), cgroup=unit)
    kmsg.write_text("")
    owners = Owners("jupyter-")
    table = ProcessTableSource(owners, procfs)
    host = HostTracker(owners, tmp_path / "no-cgroups", kmsg=kmsg)
    tail = "total-vm:1kB, anon-rss:0kB, file-rss:0kB, shmem-rss:0kB, UID:{} pgtables:0kB"
    killed = "3,{},1,-;Out of memory: Killed process 30 (python) " + tail + " oom_score_adj:0\n"
    try:
        assert [u.oom_kills for u in host.poll(table.poll()).users] == [0]
        other_uid = 0 if os.getuid() != 0 else 65534  # root's, or nobody's: not alice
        with kmsg.open("a") as handle:
            handle.write(killed.format(1, other_uid))  # pid 30 reused by another account
            handle.write(killed.format(2, os.getuid()))  # alice's own process
        deadline, counted = time.monotonic() + 30, 0
        while counted < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            counted = {u.user: u.oom_kills for u in host.poll(table.poll()).users}["alice"]
        assert counted == 1
        host.poll(table.poll())  # both records were taken in the same read or before
        assert {u.user: u.oom_kills for u in host.poll(table.poll()).users} == {"alice": 1}
    finally:
        host.close()
