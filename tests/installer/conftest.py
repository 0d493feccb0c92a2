import io
import os
from dataclasses import fields

import pytest

from dlcourse_installer import cli
from dlcourse_installer.layout.paths import Paths

from .fakehost import FakeHost

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# TLJH 2.0.0's source beside the checkout (../shared/upstream); a plain clone lacks it.
UPSTREAM_TLJH = os.path.join(
    os.path.dirname(REPO), "shared", "upstream", "the-littlest-jupyterhub-2.0.0"
)


@pytest.fixture
def fake(tmp_path):
    return FakeHost(tmp_path / "root")


@pytest.fixture
def paths():
    return Paths()


def rooted(paths: Paths, root) -> Paths:
    """The same layout with every path under ``root``: for tools that read real files."""
    return Paths(**{f.name: f"{root}{getattr(paths, f.name)}" for f in fields(Paths)})


def install(host, argv, paths=None, capsys=None) -> tuple[int, str]:
    """Runs ``dlcourse-install`` against a host; returns the exit status and its output."""
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        rc = cli.install(argv, host=host, paths=paths or Paths())
    return rc, out.getvalue()
