"""The one door to the machine.

Every step reaches the system through a ``Host``: run a command, read or write a file, ask
whether a path exists. Paths are the server's absolute paths (``/etc/...``); a host maps
them under its ``root``, which is ``/`` on a real server and a temporary folder in tests.

Commands come in two kinds, and the difference is what makes ``--dry-run`` honest:
``query`` only looks (dpkg-query, systemctl is-active, ...) and runs even in a dry run;
``run`` changes the machine, raises on failure, and a dry run prints it instead.
"""

from __future__ import annotations

import contextlib
import glob as globlib
import grp
import os
import pwd
import shlex
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TextIO

from dlcourse_installer.machine import streaming
from dlcourse_installer.machine.progress import Progress


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class FileMeta:
    mode: int
    owner: str
    group: str


class CommandError(Exception):
    """A command that changes the machine failed; the log has its whole output."""

    def __init__(self, result: Result):
        self.result = result
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        detail = f": {' / '.join(tail)}" if tail else ""
        super().__init__(f"`{shlex.join(result.argv)}` exited with {result.rc}{detail}")


@dataclass
class Host:
    """Files under ``root``; commands are left to the subclasses."""

    root: str = "/"
    log: TextIO | None = None
    # Every change made (or, in a dry run, planned), in order: the runner counts them
    # per step and the tests compare them.
    actions: list[str] = field(default_factory=list)
    # apt-get update ran in this run (a new source, e.g. Grafana's, resets it).
    apt_lists_fresh: bool = False
    # The live line of the running step; None: nothing but the log sees command output.
    progress: Progress | None = None
    # What a dry run would have made by now: later steps see it as there, as they would.
    planned: set[str] = field(default_factory=set)

    # -- commands --------------------------------------------------------------
    def query(
        self, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
    ) -> Result:
        """A command that only looks; stopped after ``timeout`` (a wedged GPU can hang
        nvidia-smi), with exit status 124."""
        raise NotImplementedError

    def run(
        self, argv: list[str], *, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    # -- files -----------------------------------------------------------------
    def local(self, path: str) -> str:
        """Where a server path lies on this host."""
        if not path.startswith("/"):
            raise ValueError(f"host paths are absolute, got {path!r}")
        return os.path.join(self.root, path.lstrip("/"))

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.local(path))

    def is_regular_file(self, path: str) -> bool:
        """A file, not a symlink to one: the installer never writes or chmods through links."""
        try:
            return stat.S_ISREG(os.lstat(self.local(path)).st_mode)
        except OSError:
            return False

    def read_text(self, path: str) -> str | None:
        try:
            with open(self.local(path), encoding="utf-8", errors="replace") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
            return None

    def glob(self, pattern: str) -> list[str]:
        base = self.local("/").rstrip("/")
        found = sorted(globlib.glob(self.local(pattern)))
        return ["/" + os.path.relpath(p, base) if base else p for p in found]

    def file_meta(self, path: str) -> FileMeta | None:
        try:
            st = os.stat(self.local(path))
        except OSError:
            return None
        return FileMeta(st.st_mode & 0o7777, _user_name(st.st_uid), _group_name(st.st_gid))

    def write_file(
        self,
        path: str,
        content: str,
        *,
        mode: int = 0o644,
        owner: str = "root",
        group: str = "root",
        secret: bool = False,
        origin: str = "",
    ) -> None:
        """``origin``: the packaged asset this is a copy of; logs name it, not its text."""
        self._record(f"write {path} ({mode:04o} {owner}:{group})", content, secret, origin)
        local = self.local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        write_atomically(local, content, mode)
        self._chown(local, owner, group)

    def set_attrs(self, path: str, *, mode: int, owner: str, group: str) -> None:
        self._record(f"chmod {mode:04o} {path}; chown {owner}:{group} {path}")
        local = self.local(path)
        fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW)  # a symlink here fails (ELOOP)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self._chown(local, owner, group)

    def make_dirs(self, path: str, *, mode: int = 0o755) -> None:
        self._record(f"mkdir -p -m {mode:04o} {path}")
        os.makedirs(self.local(path), mode=mode, exist_ok=True)

    def remove(self, path: str) -> None:
        self._record(f"rm -f {path}")
        local = self.local(path)
        if os.path.isdir(local) and not os.path.islink(local):
            shutil.rmtree(local)
        elif os.path.lexists(local):
            os.remove(local)

    # -- bookkeeping -------------------------------------------------------------
    def _chown(self, local: str, owner: str, group: str) -> None:
        # Not through a symlink: one swapped in at this path would hand its target over.
        os.chown(local, _uid(owner), _gid(group), follow_symlinks=False)

    def _record(
        self, action: str, content: str | None = None, secret: bool = False, origin: str = ""
    ) -> None:
        self.actions.append(action)
        self._log(f"+ {action}")
        if content is not None and self.log is not None:
            self._log(_indent(_shown(content, secret, origin)))

    def _log(self, text: str) -> None:
        if self.log is not None:
            self.log.write(text.rstrip("\n") + "\n")
            self.log.flush()


class RealHost(Host):
    """The server itself. Command output streams to the log as it comes, never the terminal,
    which shows the live line of the step instead."""

    stall_after: float = 300.0

    def query(self, argv, *, env=None, timeout=300):
        return self._exec(argv, env=env, timeout=timeout, live=False)

    def run(
        self, argv: list[str], *, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        self._record(f"run {shlex.join(argv)}")
        result = self._exec(argv, env=env, input=input, live=True)
        if not result.ok:
            raise CommandError(result)
        return result

    def _exec(self, argv, *, env, input=None, timeout=None, live: bool) -> Result:
        self._log(f"$ {shlex.join(argv)}")
        watcher = _Watcher(self, shlex.join(argv), live)
        try:
            done = streaming.run(
                argv, env={**os.environ, **(env or {})}, watcher=watcher, input=input,
                stall_after=self.stall_after, timeout=timeout,
            )  # fmt: skip
        except FileNotFoundError:
            self._log(f"  (not found: {argv[0]})")
            return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except PermissionError as exc:
            return Result(tuple(argv), 126, "", str(exc))
        finally:
            if live and self.progress is not None:
                self.progress.finished()
        self._log(f"  [exit {done.rc}]")
        return Result(tuple(argv), done.rc, done.stdout, done.stderr)


class _Watcher:
    """Each line to the log at once; the live line and stall messages for changes."""

    def __init__(self, host: RealHost, command: str, live: bool):
        self.host, self.command = host, command
        self.progress = host.progress if live else None

    def line(self, text: str) -> None:
        self.host._log(f"  {text}")
        if self.progress is not None:
            self.progress.output(text)

    def tick(self) -> None:
        if self.progress is not None:
            self.progress.tick()

    def stalled(self, quiet_seconds: float, protected: bool) -> None:
        self.host._log(f"  (no output and no CPU for {quiet_seconds:.0f}s)")
        if self.progress is not None:
            self.progress.stalled(self.command, quiet_seconds, protected)

    def interrupted(self) -> None:
        if self.progress is not None:
            self.progress.interrupted(self.command)


class DryRunHost(RealHost):
    """Looks at the real machine, prints what it would change, changes nothing."""

    def exists(self, path):
        made = any(p == path or p.startswith(path.rstrip("/") + "/") for p in self.planned)
        return made or Host.exists(self, path)  # (the fake dry-run host borrows this method)

    def run(
        self, argv: list[str], *, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        self._plan(f"$ {prefix + ' ' if prefix else ''}{shlex.join(argv)}")
        return Result(tuple(argv), 0, "", "")

    def write_file(
        self, path, content, *, mode=0o644, owner="root", group="root", secret=False, origin=""
    ):
        self._plan(f"write {path} (mode {mode:04o}, {owner}:{group})")
        self.planned.add(path)
        if secret or origin:
            sys.stdout.write(f"      {_shown(content, secret, origin)}\n")
            return
        lines = content.splitlines()
        shown = lines[:12]
        sys.stdout.write("".join(f"      | {line}\n" for line in shown))
        if len(lines) > len(shown):
            sys.stdout.write(f"      | ... ({len(lines) - len(shown)} more lines)\n")

    def set_attrs(self, path, *, mode, owner, group):
        self._plan(f"chmod {mode:04o} {path} && chown {owner}:{group} {path}")

    def make_dirs(self, path, *, mode=0o755):
        self._plan(f"mkdir -p -m {mode:04o} {path}")
        self.planned.add(path)

    def remove(self, path):
        self._plan(f"rm -rf {path}")

    def sleep(self, seconds: float) -> None:
        pass

    def _plan(self, line: str) -> None:
        self.actions.append(line)
        sys.stdout.write(f"    {line}\n")


def write_atomically(local: str, content: str, mode: int) -> None:
    """Readers see the old file or the new one, never half of it.

    The temporary file has an unpredictable name in the target's folder and is created
    exclusively with mode 0600, so a symlink planted there is never followed and a secret
    is never readable, even for a moment; the rename then replaces the target itself.
    """
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(local), prefix=".dlcourse-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, local)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _uid(owner: str) -> int:
    return pwd.getpwnam(owner).pw_uid


def _gid(group: str) -> int:
    return grp.getgrnam(group).gr_gid


def _shown(content: str, secret: bool, origin: str) -> str:
    """What a log or the dry run shows of a file's content."""
    if secret:
        return "(a generated secret; never printed)"
    if origin:
        return f"(a copy of {origin} from the dlcourse package)"
    return content


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
