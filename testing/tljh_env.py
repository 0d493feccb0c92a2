"""The Littlest JupyterHub 2.0.0, installed from its own source, for the conformance tests.

TLJH is not on PyPI. ``../shared/upstream/the-littlest-jupyterhub-2.0.0`` beside the checkout
holds its unmodified source (``../shared/upstream/README.md``); a plain clone of dlcourse has
no such folder, and the tests that need it skip saying so (`absent_reason`).

The venv (``build/tljh/venv``) is what TLJH's installer makes of ``/opt/tljh/hub``: TLJH
itself, the hub requirements it installs (``tljh/requirements-hub-env.txt``: JupyterHub 5,
the authenticators, SystemdSpawner, the idle culler), and dlcourse installed into it as TLJH's
``--plugin`` does (``pip install`` into the hub environment; tljh/installer.py
``setup_plugins``), editable so that the tests run this checkout's code. Left out: pycurl,
which TLJH compiles from source (``--no-binary``) against libcurl's headers only to speed up
the hub's HTTP client; JupyterHub runs without it (tornado's own client).

TLJH is installed from a copy in a temporary folder: pip builds a local project in place and
would write ``build/`` and ``*.egg-info`` into the shared, read-only source. The venv is
reused while the TLJH source and the Python stay the same; dlcourse is reinstalled when
pyproject.toml changes (its entry points are read from the installed metadata).

    python -m dlcourse_testing.tljh_env  # build or reuse it (`make tljh-env`)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UPSTREAM = REPO.parent / "shared" / "upstream" / "the-littlest-jupyterhub-2.0.0"
VENV = REPO / "build" / "tljh" / "venv"
TLJH_STAMP = VENV / ".tljh-installed"
PLUGIN_STAMP = VENV / ".dlcourse-installed"


def absent_reason() -> str | None:
    """Why the conformance tests cannot run here, or None when they can."""
    if not (UPSTREAM / "tljh" / "jupyterhub_config.py").exists():
        return (
            f"TLJH's source is not at {UPSTREAM} (../shared/upstream is beside the "
            "project's own checkouts, not in a plain clone)"
        )
    return None


def python() -> Path:
    return VENV / "bin" / "python"


def ensure() -> Path:
    """The venv's Python, building what is out of date. Raises if the source is absent."""
    reason = absent_reason()
    if reason:
        raise FileNotFoundError(reason)
    base = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    tljh_key = _digest(UPSTREAM, _source_files(UPSTREAM), subprocess.check_output([base, "-VV"]))
    if _stamp(TLJH_STAMP) != tljh_key:
        _install_tljh(base)
        TLJH_STAMP.write_text(tljh_key)
        PLUGIN_STAMP.unlink(missing_ok=True)
    plugin_key = _digest(REPO, [REPO / "pyproject.toml"])
    if _stamp(PLUGIN_STAMP) != plugin_key:
        _pip("install", "--editable", str(REPO))
        PLUGIN_STAMP.write_text(plugin_key)
    return python()


def _install_tljh(base: str) -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    _pip("install", "--upgrade", "pip")
    with tempfile.TemporaryDirectory(prefix="tljh-source-") as tmp:
        source = Path(tmp) / "tljh"
        shutil.copytree(
            UPSTREAM, source, ignore=lambda _, names: {n for n in names if _leftover(n)}
        )
        wanted = (source / "tljh" / "requirements-hub-env.txt").read_text().splitlines()
        requirements = Path(tmp) / "requirements-hub-env.txt"
        requirements.write_text(
            "\n".join(line for line in wanted if not line.startswith("pycurl")) + "\n"
        )
        _pip("install", str(source), "--requirement", str(requirements))


def _pip(*args: str) -> None:
    """pip, quiet unless it fails (setuptools warns at length about editable installs)."""
    done = subprocess.run([str(python()), "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def _leftover(name: str) -> bool:
    """What pip or Python may have left in a source folder: not part of the source."""
    return name in ("build", "__pycache__") or name.endswith(".egg-info")


def _source_files(top: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not _leftover(d)]
        found += [Path(dirpath) / name for name in filenames]
    return sorted(found)


def _digest(top: Path, files: list[Path], extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for path in files:
        h.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _stamp(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    reason = absent_reason()
    if reason:
        print(f"tljh_env: skipped: {reason}")
        sys.exit(0)
    print(f"tljh_env: TLJH 2.0.0 with dlcourse as its plugin in {ensure().parent.parent}")
