"""Pure parsers and the crash rule: /proc files, proc connector messages, wait statuses."""

from __future__ import annotations

import os
import signal
import struct
from pathlib import Path

import pytest

from dlcourse_exporter.sources import proc_events
from dlcourse_exporter.sources.kernels import MAX_NOTEBOOK_CHARS, classify, notebook_name
from dlcourse_exporter.sources.procfs import (
    exit_reason,
    kernel_connection_file,
    parse_stat,
    parse_uptime,
    split_cmdline,
)

# A zombie kernel killed by SIGSEGV with a core dump (status 139 = 0x80 | 11), comm with
# a space and a parenthesis, as /proc/<pid>/stat prints it.
STAT = (
    "4242 (python (x) 3) Z 4200 4242 4200 0 -1 4194308 3042 0 0 0 175 23 0 0 20 0 1 0 "
    "987654 0 0 18446744073709551615 0 0 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0 "
    "0 0 0 0 0 0 0 139"
)


def test_parse_stat_fields():
    stat = parse_stat(STAT)
    assert (stat.pid, stat.comm, stat.state, stat.ppid) == (4242, "python (x) 3", "Z", 4200)
    assert (stat.utime_ticks, stat.stime_ticks, stat.starttime_ticks) == (175, 23, 987654)
    assert stat.exit_code == 139
    assert exit_reason(stat.exit_code) == "SIGSEGV"


def test_parse_uptime():
    assert parse_uptime("350735.47 234388.90\n") == 350735.47
    assert parse_uptime(Path("/proc/uptime").read_text()) > 0


def test_parse_stat_of_this_process():
    stat = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert stat.pid == os.getpid() and stat.ppid == os.getppid() and stat.rss_bytes > 0


@pytest.mark.parametrize("text", ["", "garbage", "1 (x) S 1"])
def test_parse_stat_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_stat(text)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # jupyter_server's ipykernel kernelspec
        (
            ["/opt/tljh/user/bin/python", "-m", "ipykernel_launcher", "-f", "/r/kernel-1a.json"],
            "/r/kernel-1a.json",
        ),
        (["python", "-m", "ipykernel_launcher", "--f=/r/kernel-2.json"], "/r/kernel-2.json"),
        # IRkernel / IJulia: a bare argument
        (
            ["R", "--slave", "-e", "IRkernel::main()", "--args", "/r/kernel-3.json"],
            "/r/kernel-3.json",
        ),
        # a bare jupyter_client KernelManager names the file tmpXXXX.json
        (["python", "-m", "ipykernel_launcher", "-f", "/tmp/tmpab12.json"], "/tmp/tmpab12.json"),
        # not kernels
        (["jupyter", "console", "--existing", "/r/kernel-4.json"], None),
        (["jupyter-console", "--existing=/r/kernel-4.json"], None),
        (["jq", "-f", "/tmp/filter.json"], None),
        (["python", "-m", "jupyter_server"], None),
        (["cat", "kernel-.json"], None),
        ([], None),
    ],
)
def test_kernel_connection_file(argv, expected):
    assert kernel_connection_file(argv) == expected


def test_split_cmdline():
    assert split_cmdline(b"python\0-f\0/r/kernel-1.json\0") == ["python", "-f", "/r/kernel-1.json"]
    assert split_cmdline(b"") == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (0, "ok"),
        (1 << 8, "exit"),
        (signal.SIGKILL, "SIGKILL"),
        (signal.SIGSEGV | 0x80, "SIGSEGV"),  # core dumped
        (signal.SIGABRT, "SIGABRT"),
        (40, "SIG40"),  # a real-time signal
    ],
)
def test_exit_reason(status, reason):
    assert exit_reason(status) == reason


@pytest.mark.parametrize(
    ("status", "parent_alive", "file_exists", "outcome"),
    [
        (0, True, True, "clean"),  # shutdown_request or restart: the kernel exits 0
        (0, False, False, "clean"),
        (signal.SIGSEGV, True, True, "SIGSEGV"),
        (signal.SIGSEGV, False, False, "SIGSEGV"),  # a segfault is never a stop
        (signal.SIGKILL, True, True, "SIGKILL"),  # OOM killer, kill -9: restarted, file kept
        (signal.SIGKILL, True, False, "shutdown"),  # jupyter_client escalated a shutdown
        (signal.SIGTERM, False, True, "server-stopped"),  # systemd stopped the whole unit
        (3 << 8, True, True, "exit"),
        (3 << 8, False, True, "server-stopped"),
        (None, True, True, "unknown"),  # polling missed the status
        (None, True, False, "shutdown"),
        (None, False, True, "server-stopped"),
    ],
)
def test_classify(status, parent_alive, file_exists, outcome):
    assert classify(status, parent_alive, file_exists) == outcome


def netlink_event(what: int, data: bytes) -> bytes:
    """One proc connector message laid out as in linux/cn_proc.h."""
    event = proc_events.EVENT_HEADER.pack(what, 0, 123456789) + data
    cn = proc_events.CN_MSG.pack(
        proc_events.CN_IDX_PROC, proc_events.CN_VAL_PROC, 1, 0, len(event), 0
    )
    length = proc_events.NLMSGHDR.size + len(cn) + len(event)
    return proc_events.NLMSGHDR.pack(length, proc_events.NLMSG_DONE, 0, 1, 0) + cn + event


def test_parse_events_exit_and_exec():
    exit_leader = netlink_event(
        proc_events.PROC_EVENT_EXIT, struct.pack("=IIIIII", 77, 77, 9, 17, 1, 1)
    )
    exit_thread = netlink_event(proc_events.PROC_EVENT_EXIT, struct.pack("=IIII", 78, 77, 9, 17))
    exec_ = netlink_event(proc_events.PROC_EVENT_EXEC, struct.pack("=II", 90, 90))
    fork = netlink_event(1, struct.pack("=IIII", 1, 1, 91, 91))
    events = list(proc_events.parse_events(exit_leader + exit_thread + exec_ + fork))
    assert events == [
        proc_events.ExitEvent(pid=77, status=9),
        proc_events.ExecEvent(pid=90),
    ]


def test_parse_events_ignores_truncated_and_foreign():
    whole = netlink_event(proc_events.PROC_EVENT_EXIT, struct.pack("=IIII", 5, 5, 0, 17))
    assert list(proc_events.parse_events(whole[:-3])) == []
    foreign = bytearray(whole)
    struct.pack_into("=I", foreign, proc_events.NLMSGHDR.size, 99)  # another connector
    assert list(proc_events.parse_events(bytes(foreign))) == []
    assert list(proc_events.parse_events(b"\x00" * 7)) == []


def test_listen_message_layout():
    message = proc_events.listen_message(port=1234)
    length, kind, _, _, port = proc_events.NLMSGHDR.unpack_from(message)
    assert (length, kind, port) == (len(message), proc_events.NLMSG_DONE, 1234)
    assert struct.unpack_from("=I", message, len(message) - 4) == (
        proc_events.PROC_CN_MCAST_LISTEN,
    )


def test_listen_message_with_an_event_filter():
    wanted = proc_events.PROC_EVENT_EXEC | proc_events.PROC_EVENT_EXIT
    message = proc_events.listen_message(port=1, events=wanted)
    assert proc_events.NLMSGHDR.unpack_from(message)[0] == len(message)
    # struct proc_input: the op, then the event types (include/uapi/linux/cn_proc.h)
    assert struct.unpack_from("=II", message, len(message) - 8) == (
        proc_events.PROC_CN_MCAST_LISTEN,
        0x80000002,
    )


@pytest.mark.parametrize(
    ("release", "filters"),
    [("6.6.0", True), ("6.18.44-fc-v669", True), ("6.1.0-28-amd64", False), ("5.15.0", False)],
)
def test_only_linux_6_6_and_later_is_sent_a_filter(release, filters):
    # An older kernel ignores a listen message of the new size: it would send nothing.
    assert proc_events.kernel_filters_events(release) is filters


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"JPY_SESSION_NAME": "/home/jupyter-ada/week3/train.ipynb"}, "train.ipynb"),
        ({"JPY_SESSION_NAME": "train.ipynb"}, "train.ipynb"),  # a path without a folder
        ({}, ""),  # a kernel started another way
        ({"JPY_SESSION_NAME": "a\nb\x1b[2J.ipynb"}, "a b [2J.ipynb"),  # one printable line
        ({"JPY_SESSION_NAME": "x" * 5000}, "x" * (MAX_NOTEBOOK_CHARS - 1) + "…"),
    ],
)
def test_a_kernel_s_notebook_is_the_file_name_jupyter_server_gave_it(environ, expected):
    assert notebook_name(environ) == expected
