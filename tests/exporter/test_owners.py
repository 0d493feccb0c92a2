import os
import pwd
import shutil
from pathlib import Path

import pytest

from dlcourse_exporter.sources.host import HostReader
from dlcourse_exporter.sources.owners import (
    Attribution,
    Evidence,
    OwnerResolver,
    Policy,
    attribute,
    environ_user,
    status_uid,
    unit_user,
)
from dlcourse_exporter.sources.roster import (
    USER_RETENTION_SECONDS,
    Roster,
    SharedRoster,
    keep_user,
    system_account,
)

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
    assert unit_user(text, "jupyter-") == expected


def test_unit_user_custom_prefix():
    assert unit_user("0::/system.slice/course-dan.service\n", "course-") == "dan"
    assert unit_user("0::/system.slice/course-dan.service\n", "jupyter-") is None
    assert unit_user("0::/system.slice/cron.service\n", "") is None  # no prefix, no rule


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
    assert environ_user(environ) == expected


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


def write_proc(root: Path, pid: int, cgroup: str, environ: bytes, uid: int) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(environ)
    (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


def test_resolver_on_a_fixture_tree(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    write_proc(tmp_path, 10, CGROUP_V2_TLJH, b"JUPYTERHUB_USER=zed\0", os.getuid())
    write_proc(tmp_path, 11, "0::/\n", b"JUPYTERHUB_USER=zed\0", os.getuid())
    write_proc(tmp_path, 12, "0::/\n", b"", os.getuid())
    write_proc(tmp_path, 13, "0::/\n", b"", 4_000_000)  # no such account
    resolver = OwnerResolver(tmp_path, "jupyter-", spawner_account=me)
    assert resolver.owner(10) == "alice"  # systemd unit wins
    assert resolver.owner(11) == "zed"  # then JUPYTERHUB_USER under the spawner's account
    assert resolver.owner(12) == me  # no hub: the account stands in
    assert resolver.owner(13) is None  # unknown uid
    assert resolver.owner(99) is None  # vanished
    untrusting = OwnerResolver(tmp_path, "jupyter-")
    assert untrusting.owner(11) == me  # JUPYTERHUB_USER of a stranger is ignored

    roster = SharedRoster(hub_configured=True)
    with_hub = OwnerResolver(tmp_path, "jupyter-", spawner_account=me, roster=roster)
    assert with_hub.owner(10) is None  # the hub has not answered yet
    roster.update([("alice", "alice")])
    assert with_hub.owner(10) == "alice"
    assert with_hub.owner(11) is None  # zed is no hub user
    assert with_hub.owner(12) is None


def test_resolver_on_the_real_proc():
    assert OwnerResolver().owner(os.getpid()) is not None


def test_a_student_without_processes_drops_out_after_the_retention(tmp_path):
    """Why 4: 500 made-up names stayed on /metrics for good; now they go after an hour."""
    me = os.getuid()
    for pid, name in ((20, "ghost"), (21, "alice")):
        write_proc(tmp_path, pid, "0::/\n", f"JUPYTERHUB_USER={name}\0".encode(), me)
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (python) S 1 " + "0 " * 47 + "\n")
    owners = OwnerResolver(tmp_path, "jupyter-", spawner_account=pwd.getpwuid(me).pw_name)
    now = [0.0]
    reader = HostReader(owners, tmp_path, tmp_path / "no-cgroups", kmsg=None, clock=lambda: now[0])
    assert {host.user for host in reader.read()} == {"ghost", "alice"}
    shutil.rmtree(tmp_path / "20")  # the ghost's process ends; alice's runs on
    now[0] = USER_RETENTION_SECONDS - 1
    assert {host.user for host in reader.read()} == {"ghost", "alice"}  # counters stay a while
    now[0] = USER_RETENTION_SECONDS + 1
    assert {host.user for host in reader.read()} == {"alice"}
