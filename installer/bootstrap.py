"""Bootstrap dlcourse-install on a fresh server, the way TLJH's bootstrap.py does.

    sudo python3 installer/bootstrap.py --admin NAME [installer options]
    curl -fsSL <url of this file> | sudo python3 - --admin NAME --source 'dlcourse @ git+https://...'

Makes a venv under the prefix, installs dlcourse into it (from this checkout, or from
``--source`` / ``DLCOURSE_BOOTSTRAP_PIP_SPEC``), then hands every argument over to
``dlcourse-install``. Constraints: one file, stdlib only, runs on Python 3.10 to 3.14 (Ubuntu
22.04 to 26.04) and still parses on 3.8, so Ubuntu 20.04 gets a clear refusal.
"""

import os
import subprocess
import sys

PREFIX = os.environ.get("DLCOURSE_PREFIX", "/opt/dlcourse")
VENV = os.path.join(PREFIX, "venv")


def checkout():
    """The checkout this file lies in, if it is run from one (not piped through curl)."""
    try:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    except NameError:
        return None
    return here if os.path.exists(os.path.join(here, "pyproject.toml")) else None


def pip_spec(argv):
    for i, arg in enumerate(argv):
        if arg == "--source" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--source="):
            return arg.split("=", 1)[1]
    return os.environ.get("DLCOURSE_BOOTSTRAP_PIP_SPEC") or checkout()


# These change nothing on the machine, not even the venv: they run from the checkout itself.
LOOKING = ("--dry-run", "--help", "-h", "--version")


def looks_only(argv):
    return any(a in LOOKING for a in argv) or argv[:1] in (["render"], ["status"])


def run_from_checkout(argv):
    """Load dlcourse_installer from this checkout (no install) and run it with argv."""
    source = checkout()
    if source is None:
        if "--help" in argv or "-h" in argv:
            print(__doc__)
            sys.exit(0)
        sys.exit("bootstrap: --dry-run needs a checkout (run installer/bootstrap.py from it)")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dlcourse_installer",
        os.path.join(source, "installer", "__init__.py"),
        submodule_search_locations=[os.path.join(source, "installer")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["dlcourse_installer"] = module
    spec.loader.exec_module(module)
    from dlcourse_installer.cli import main as install_main

    sys.exit(install_main(argv))


def main():
    # Ruff assumes 3.10 (pyproject); this runs on older Pythons precisely to refuse them.
    if sys.version_info < (3, 10):  # noqa: UP036
        found = ".".join(str(n) for n in sys.version_info[:2])
        sys.exit(
            "bootstrap: dlcourse needs Python 3.10 or newer: Ubuntu 22.04, 24.04 or 26.04 "
            f"(this Python is {found})"
        )
    argv = sys.argv[1:]
    if looks_only(argv):
        run_from_checkout(argv)
    spec = pip_spec(argv)
    if spec is None:
        sys.exit("bootstrap: run it from a dlcourse checkout, or pass --source PIP_SPEC")
    if os.geteuid() != 0:
        sys.exit("bootstrap: run it as root (sudo python3 installer/bootstrap.py ...)")
    python = os.path.join(VENV, "bin", "python3")
    if not os.path.exists(python):
        if subprocess.call([sys.executable, "-c", "import ensurepip"]) != 0:
            # Ubuntu splits venv support out of python3.
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.check_call(["apt-get", "update"], env=env)
            subprocess.check_call(["apt-get", "install", "-y", "python3-venv"], env=env)
        print("Making " + VENV + " ...", flush=True)
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    print("Installing dlcourse into " + VENV + " from " + spec + " ...", flush=True)
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    # pip shows its own progress: building and downloading take minutes.
    subprocess.check_call([python, "-m", "pip", "install", "--upgrade", spec])
    # The install records where dlcourse came from; the other commands take no --source.
    subcommand = argv[:1] in (["packages"], ["resume"], ["driver"])
    if spec == checkout() and "--source" not in " ".join(argv) and not subcommand:
        argv = argv + ["--source", spec]
    os.execv(python, [python, "-m", "dlcourse_installer"] + argv)


if __name__ == "__main__":
    main()
