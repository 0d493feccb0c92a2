import os
import pwd
from pathlib import Path

import pytest

from dlcourse_exporter.sources.owners import (
    OwnerResolver,
    account_user,
    environ_user,
    status_uid,
    tljh_account,
    unit_user,
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
    ],
)
def test_unit_user(text, expected):
    assert unit_user(text, "jupyter-") == expected


def test_unit_user_custom_prefix():
    assert unit_user("0::/system.slice/course-dan.service\n", "course-") == "dan"
    assert unit_user("0::/system.slice/course-dan.service\n", "jupyter-") is None


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


def test_account_user_strips_only_the_prefix():
    assert account_user("jupyter-alice", "jupyter-") == "alice"
    assert account_user("alice", "jupyter-") is None  # root, daemons, the lecturer
    assert account_user("jupyter-alice", "") is None


def test_a_long_names_account_is_told_only_among_the_hub_users():
    # TLJH's account for a 25-character hub name: its start, "-", a hash (tests/tljh_conformance
    # checks tljh_account against TLJH's own function).
    name = "averyveryverylongstudent1"
    account = tljh_account(name, "jupyter-")
    assert account == "jupyter-averyveryverylongs-" + account[-5:] and len(account) == 32
    assert account_user(account, "jupyter-", ["alice", name]) == name
    assert account_user(account, "jupyter-", ["alice"]) is None  # never its cut start
    assert account_user(account, "jupyter-") is None


def write_proc(root: Path, pid: int, cgroup: str, environ: bytes, uid: int) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(environ)
    (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


def test_resolver_order_on_a_fixture_tree(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    write_proc(tmp_path, 10, CGROUP_V2_TLJH, b"JUPYTERHUB_USER=zed\0", os.getuid())
    write_proc(tmp_path, 11, "0::/\n", b"JUPYTERHUB_USER=zed\0", os.getuid())
    write_proc(tmp_path, 12, "0::/\n", b"", os.getuid())
    write_proc(tmp_path, 13, "0::/\n", b"", 4_000_000)  # no such account
    resolver = OwnerResolver(tmp_path, "jupyter-")
    assert resolver.owner(10) == "alice"  # systemd unit wins
    assert resolver.owner(11) == "zed"  # then JUPYTERHUB_USER
    assert resolver.owner(12) == (account_user(me, "jupyter-") or me)  # then the account
    assert resolver.owner(13) is None  # unknown uid: skipped
    assert resolver.owner(99) is None  # vanished


def test_resolver_on_the_real_proc():
    assert OwnerResolver().owner(os.getpid()) is not None
