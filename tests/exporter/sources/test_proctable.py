"""The process table: one walk of /proc per cycle, each process's identity read once."""

from __future__ import annotations

import os
import pwd

from dlcourse_exporter.sources import proctable
from dlcourse_exporter.sources.owners import Owners
from dlcourse_exporter.sources.proctable import ProcessTableSource, environ_variables
from dlcourse_testing.procfs import write_process, write_uptime

ME = pwd.getpwuid(os.getuid()).pw_name
V1_CGROUP = (
    "12:memory:/system.slice/jupyter-bob.service\n"
    "1:name=systemd:/kubepods/burstable/pod1234/abcd\n"
    "0::/system.slice/jupyter-bob.service\n"
)


class CountingReads:
    """Counts the identity reads of the table (the files read once per process)."""

    def __init__(self, monkeypatch) -> None:
        self.pids: list[int] = []
        real = proctable.read_identity

        def counted(procfs, pid, *rest, **options):
            self.pids.append(pid)
            return real(procfs, pid, *rest, **options)

        monkeypatch.setattr(proctable, "read_identity", counted)


def test_an_entry_carries_what_every_rule_needs(tmp_path):
    write_process(
        tmp_path,
        42,
        environ=b"PATH=/x\0JUPYTERHUB_USER=bob\0SECRET=hunter2\0",
        cgroup=V1_CGROUP,
        argv=("python", "-m", "train"),
        state="R",
        utime=250,
        stime=50,
        start_ticks=7000,
        rss_pages=10,
    )
    entry = ProcessTableSource(Owners(), tmp_path).poll().get(42)
    assert (entry.pid, entry.ppid, entry.state, entry.start_ticks) == (42, 1, "R", 7000)
    assert entry.cpu_seconds == 3.0 and entry.rss_bytes == 10 * os.sysconf("SC_PAGE_SIZE")
    # The raw cgroup lines, for any rule to come (a pod UID on Kubernetes).
    assert entry.identity.cgroup == tuple(V1_CGROUP.splitlines())
    assert entry.identity.environ == {"JUPYTERHUB_USER": "bob"}  # nothing else is kept
    assert entry.identity.argv == ("python", "-m", "train")
    assert entry.owner.user == "bob" and entry.owner.via == "unit"


def test_identity_is_read_once_per_process_and_again_after_an_exec(tmp_path, monkeypatch):
    reads = CountingReads(monkeypatch)
    write_process(tmp_path, 7)
    write_process(tmp_path, 8)
    source = ProcessTableSource(Owners(), tmp_path)
    for _ in range(3):
        table = source.poll()
    assert sorted(reads.pids) == [7, 8] and len(table) == 2
    write_process(tmp_path, 8, comm="sudo")  # the same process runs another program
    source.poll()
    assert sorted(reads.pids) == [7, 8, 8]
    os.remove(tmp_path / "7" / "stat")  # gone
    assert set(source.poll().entries) == {8}


def test_what_a_process_writes_is_read_bounded(tmp_path):
    huge = b"JUNK=" + b"x" * (2 * proctable.LIMITS["environ"]) + b"\0JUPYTERHUB_USER=late\0"
    write_process(tmp_path, 9, environ=huge, argv=["a"] * 100_000)
    entry = ProcessTableSource(Owners(), tmp_path).poll().get(9)
    assert entry.identity.environ == {}  # past the bound: not read, so no claim
    assert len(entry.identity.argv) == proctable.LIMITS["cmdline"] // 2
    long_name = b"JUPYTERHUB_USER=" + b"n" * 5000 + b"\0"
    assert len(environ_variables(long_name)["JUPYTERHUB_USER"]) == proctable.MAX_VARIABLE_CHARS


def test_a_process_without_its_files_is_left_out(tmp_path):
    write_process(tmp_path, 5)
    os.remove(tmp_path / "5" / "cgroup")  # as when it exits between two reads
    (tmp_path / "self").mkdir()  # not a process directory
    assert len(ProcessTableSource(Owners(), tmp_path).poll()) == 0


def test_the_real_proc_lists_this_process_as_its_account():
    entry = ProcessTableSource(Owners(prefix="")).poll().get(os.getpid())
    assert entry.identity.uid == os.getuid() and entry.identity.evidence.account == ME


def test_a_server_s_environment_is_kept_from_when_it_was_first_seen(tmp_path):
    """Old behaviour: a server that overwrote its own /proc/PID/environ area in place (its
    memory, e.g. with ctypes) and renamed itself was read again: its GPU moved. Only until
    the hub's JUPYTERHUB_USER first shows is the environment read again (between fork and
    exec a process shows its parent's)."""
    started = {"start_ticks": 100 * 60}  # a minute after boot
    write_uptime(tmp_path, 60 + 5)  # five seconds old: read again every cycle (exec-wise)
    write_process(tmp_path, 50, environ=b"PATH=/bin\0", **started)  # systemd, pre-exec
    source = ProcessTableSource(Owners(), tmp_path)
    assert source.poll().get(50).identity.environ == {}
    server = b"JUPYTERHUB_USER=ana\0CUDA_VISIBLE_DEVICES=GPU-a\0"
    write_process(tmp_path, 50, environ=server, comm="jupyterhub-sing", **started)
    assert source.poll().get(50).identity.environ["CUDA_VISIBLE_DEVICES"] == "GPU-a"
    forged = b"JUPYTERHUB_USER=bob\0CUDA_VISIBLE_DEVICES=GPU-b\0"
    write_process(tmp_path, 50, environ=forged, comm="renamed", **started)
    identity = source.poll().get(50).identity
    assert identity.environ == {"JUPYTERHUB_USER": "ana", "CUDA_VISIBLE_DEVICES": "GPU-a"}
    assert identity.evidence.environ_user == "ana"
    write_uptime(tmp_path, 60 + 3600)  # an hour on, renamed again: the same
    write_process(tmp_path, 50, environ=forged, comm="again", **started)
    assert source.poll().get(50).identity.environ["CUDA_VISIBLE_DEVICES"] == "GPU-a"
    # A new process with the same pid (another start time) is read afresh.
    write_process(tmp_path, 50, environ=forged, start_ticks=100 * 3000)
    assert source.poll().get(50).identity.environ["CUDA_VISIBLE_DEVICES"] == "GPU-b"


def test_a_kernel_s_notebook_is_read_after_its_exec_while_its_owner_stays_kept(tmp_path):
    """Between fork and exec a kernel shows its server's environment (JUPYTERHUB_USER, no
    JPY_SESSION_NAME); the notebook's name is read after the exec, the kept ones are not."""
    started = {"start_ticks": 100 * 60}
    write_uptime(tmp_path, 60 + 5)
    server = b"JUPYTERHUB_USER=ana\0CUDA_VISIBLE_DEVICES=GPU-a\0"
    write_process(tmp_path, 51, environ=server, comm="jupyterhub-sing", **started)  # pre-exec
    source = ProcessTableSource(Owners(), tmp_path)
    assert "JPY_SESSION_NAME" not in source.poll().get(51).identity.environ
    kernel = b"JUPYTERHUB_USER=bob\0CUDA_VISIBLE_DEVICES=GPU-b\0JPY_SESSION_NAME=/h/a.ipynb\0"
    write_process(tmp_path, 51, environ=kernel, comm="python", **started)
    assert source.poll().get(51).identity.environ == {
        "JUPYTERHUB_USER": "ana",
        "CUDA_VISIBLE_DEVICES": "GPU-a",
        "JPY_SESSION_NAME": "/h/a.ipynb",
    }
