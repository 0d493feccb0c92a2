"""Files under one folder, written and read without following a symbolic link on the way.

``dlcourse-install render --root DIR`` runs as whoever calls it, root included (the test
suite runs as root), into a folder someone else may have prepared: a symlink planted in DIR
(or DIR itself, a name in /tmp) would turn a write of DIR/etc/dlcourse/exporter-token into
one of the live token. So DIR and every folder below it is opened with ``O_NOFOLLOW``,
each relative to its parent's descriptor, and a symlink on the way is refused
(``SymlinkRefused``). A file is written as ``host.write_atomically`` writes one, in its
folder's descriptor: a symlink where the file goes is replaced by the rename, never written
through. The folders above DIR are the caller's choice, as for any command.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator

FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SymlinkRefused(Exception):
    """A symbolic link where a folder of the tree should be; str() is one line."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is a symbolic link: render writes nothing through one")


class RootedTree:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(os.path.dirname(self.root), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root)
        self._root_fd = _open_folder(self.root, None, self.root)

    def close(self) -> None:
        os.close(self._root_fd)

    def write(self, path: str, content: str, mode: int) -> None:
        """/a/b/name under the root, with mode; folders made as needed (0777 less umask)."""
        folder, name = os.path.split(path)
        with self._folder(folder) as fd:
            temporary = f".dlcourse-{secrets.token_hex(8)}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            file = os.open(temporary, flags, 0o600, dir_fd=fd)  # never readable by others
            try:
                with os.fdopen(file, "w", encoding="utf-8") as f:
                    f.write(content)
                    os.fchmod(f.fileno(), mode)
                os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=fd)
                raise

    def read(self, path: str) -> str:
        folder, name = os.path.split(path)
        with self._folder(folder) as fd:
            file = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with os.fdopen(file, encoding="utf-8") as f:
                return f.read()

    @contextlib.contextmanager
    def _folder(self, folder: str) -> Iterator[int]:
        fd = os.dup(self._root_fd)
        try:
            shown = self.root
            for part in folder.strip("/").split("/") if folder.strip("/") else []:
                shown = os.path.join(shown, part)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                parent, fd = fd, -1
                try:
                    fd = _open_folder(part, parent, shown)
                finally:
                    os.close(parent)
            yield fd
        finally:
            if fd >= 0:
                os.close(fd)


def _open_folder(name: str, parent: int | None, shown: str) -> int:
    try:
        return os.open(name, FOLDER, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(shown):
            raise SymlinkRefused(shown) from None
        raise
