"""One secret (a token, a password) from a file, bounded: ``read_secret(path)``.

Stdlib only, and a package of its own, because three processes in three environments read
secret files and each must import the same reader: the exporter (its own venv:
``--web.token-file``, ``--hub.token-file``, the Kubernetes token), and inside the hub's
process, in TLJH's hub environment, the GPU hook (the exporter's token) and the hub's
configuration files (the services' tokens, the status page's exporter token). The whole
dlcourse distribution is installed in both environments.

A path that names anything but a regular file (a FIFO that would block, /dev/zero that never
ends, a directory) is refused before it is opened, and at most ``MAX_SECRET_BYTES`` are read.

Symbolic links are followed (no ``O_NOFOLLOW``): the Kubernetes service-account token is one
(the kubelet's projected volume shows each file as a link into ``..data/``:
kubernetes/kubernetes pkg/volume/util/atomic_writer.go, ``AtomicWriter``), and a lecturer
may link a file into place. What a link leads to is checked like any path: a regular file,
the same one that is then opened (device and inode compared). The secret files lie in
folders only root writes (/etc/dlcourse, /run/credentials, /run/secrets), so no student can
plant a link there.
"""

from __future__ import annotations

import os
import stat

MAX_SECRET_BYTES = 4096


class SecretFileError(ValueError):
    """A secret file that cannot serve: one line that names the path and the reason."""


def read_secret(path: str | os.PathLike[str]) -> str:
    """The file's text without surrounding whitespace; SecretFileError unless it is a
    regular file of at most MAX_SECRET_BYTES holding one line of printable UTF-8."""
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise SecretFileError(f"{path}: not a regular file ({_kind(before.st_mode)})")
        # O_NONBLOCK: should a FIFO replace the file after the check, open() does not wait.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretFileError(f"{path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as file:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise SecretFileError(f"{path}: replaced while being read")
        data = file.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"{path}: larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise SecretFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    if not text:
        raise SecretFileError(f"{path}: empty")
    if not text.isprintable():  # a newline or control character would split an HTTP header
        raise SecretFileError(f"{path}: more than one line, or control characters")
    return text


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")
