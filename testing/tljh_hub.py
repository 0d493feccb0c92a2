"""A hub as TLJH runs it: TLJH's own configuration over what dlcourse's installer writes.

    hub = make_tljh_hub("--roster", str(csv))     # tests/conftest.py; started
    hub.site.read("/opt/tljh/config/jupyterhub_config.d/dlcourse-services.py")
    name = hub.add_user(); hub.start_server(name)  # LiveHub's API (testing/hub.py)

What runs is what a course server runs, less what no test machine has:

- ``dlcourse-install render --relocate`` writes every file of an install under ``site/``;
  TLJH's prefix (``TLJH_INSTALL_PREFIX``) is the site's ``/opt/tljh``, so the hub loads the
  ``jupyterhub_config.d`` files the installer writes and reads their secrets where they lie.
  ``<prefix>/hub`` is TLJH's venv (tests/tljh_env.py), as ``/opt/tljh/hub`` is on a server.
- The hub's own port is the one the rendered ``dlcourse-hub-port.py`` sets over TLJH's 15001:
  a free one (``--port hub=``), or one of the test's choosing (``hub_port=``).
- ``config.yaml`` is what the install leaves: TLJH's own installer code writes it and calls
  dlcourse's plugin (``testing/tljh_probe.py install``: the admin's pre-set password lands in
  TLJH's store), then every ``tljh-config`` command the installer's course step runs for the
  same options (as ``dlcourse-install --dry-run`` prints them) runs with TLJH's real
  ``tljh-config``; one that TLJH refuses raises HubError with TLJH's message.
- The hub is ``python -m jupyterhub -f <tljh>/jupyterhub_config.py --upgrade-db`` from TLJH's
  venv, in ``<prefix>/state`` with TLJH's environment, as TLJH's systemd unit runs it
  (tljh/systemd-units/jupyterhub.service).
- One test-only file sorts last in ``jupyterhub_config.d``: configurable-http-proxy instead of
  traefik (TLJH's installer downloads traefik's binary; there is none here), a free port
  instead of TLJH's 80 (other hubs run on this machine), the ``test-driver``
  service with admin rights (for LiveHub's API), and a spawner. TLJH's SystemdSpawner
  starts every server with ``systemd-run``, which needs systemd as PID 1; test machines
  (containers) have none. ``TljhAccountSpawner`` keeps what TLJH's UserCreatingSpawner does
  first: the Linux account TLJH names for the user, created by TLJH's own
  ``tljh.user.ensure_user`` (useradd); LocalProcessSpawner then starts the server as that
  account. Hence root, as for tljh-config (CI runs as root).

TLJH keeps servers running when the hub stops (``cleanup_servers = False``); ``stop()`` ends
them, and ``close()`` removes the accounts TLJH made.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

from . import tljh_env
from .exporter import free_port
from .hub import HubError, LinuxAccounts, LiveHub
from .rendered import Site, render_site

PROBE = Path(__file__).with_name("tljh_probe.py")
TEST_CONFIG_NAME = "zz-tests-only.py"  # sorts after dlcourse-*.py

TEST_CONFIG = """\
# Test-only, written by testing/tljh_hub.py (its docstring says why each line is here).
import json
import pwd
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from tljh import user
from traitlets import Dict
from tljh.normalize import generate_system_username

c = get_config()  # noqa: F821
c.JupyterHub.proxy_class = "configurable-http-proxy"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {proxy_pid_file!r}
c.JupyterHub.bind_url = "http://127.0.0.1:{public_port}"
# Admin by the service's flag, as TLJH's culler: a load_roles entry for the admin role that
# names services makes JupyterHub ignore every service's admin flag (jupyterhub/app.py,
# init_services), and the culler would lose its rights.
c.JupyterHub.services.append(
    {{"name": "test-driver", "admin": True,
     "api_token": Path({token_file!r}).read_text().strip()}}
)


class TljhAccountSpawner(LocalProcessSpawner):
    \"\"\"UserCreatingSpawner's account (tljh/user_creating_spawner.py), without systemd.

    SystemdSpawner's unit_extra_properties (which dlcourse's strict GPU mode sets) become
    systemd-run --property flags there; here they are put, expanded the way
    SystemdSpawner.start expands them (str.format with USERNAME and USERID,
    jupyterhub-systemdspawner 1.0.2), into the server's environment as JSON for tests.\"\"\"

    unit_extra_properties = Dict(config=True)

    @property
    def account(self):
        return generate_system_username("jupyter-" + self.user.name)

    async def start(self):
        user.ensure_user(self.account)
        return await super().start()

    def make_preexec_fn(self, name):
        return super().make_preexec_fn(self.account)

    def user_env(self, env):
        entry = pwd.getpwnam(self.account)
        env.update(USER=self.account, HOME=entry.pw_dir, SHELL=entry.pw_shell)
        if self.unit_extra_properties:
            expanded = {{k: v.format(USERNAME=self.user.name, USERID=self.user.id)
                        for k, v in self.unit_extra_properties.items()}}
            env["DLCOURSE_TEST_UNIT_PROPERTIES"] = json.dumps(expanded)
        return env


c.JupyterHub.spawner_class = TljhAccountSpawner
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
# The spawn API answers 202 at once instead of blocking up to 10 s: tests poll.
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
"""


def probe(command: str, *args: str, prefix: Path, etc: Path | None = None, **env_vars: str) -> dict:
    """tests/tljh_probe.py in TLJH's venv, with TLJH's prefix (and dlcourse's /etc)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(env_vars, TLJH_INSTALL_PREFIX=str(prefix))
    if etc is not None:
        env["DLCOURSE_ETC"] = str(etc)
    done = subprocess.run(
        [str(tljh_env.python()), str(PROBE), command, *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise HubError(f"tljh_probe {command} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def installer_tljh_config_commands(prefix: Path, *install_args: str) -> list[list[str]]:
    """The tljh-config commands `dlcourse-install <install_args>` runs on a server whose TLJH
    is at ``prefix``, as its dry run prints them (a dry run prints exactly what a run runs)."""
    env = dict(os.environ, TLJH_INSTALL_PREFIX=str(prefix))
    plan = subprocess.run(
        [sys.executable, "-m", "dlcourse_installer", "--dry-run", *install_args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if not re.search(r"^\[(\d+)/\1\] ", plan.stdout, re.MULTILINE):  # the last step
        raise HubError(f"no plan from the dry run ({plan.returncode}):\n{plan.stderr}")
    commands = [shlex.split(line.strip()[2:]) for line in plan.stdout.splitlines()
                if line.strip().startswith("$ ")]  # fmt: skip
    return [argv for argv in commands if argv[0] == f"{prefix}/hub/bin/tljh-config"]


def tljh_config(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """TLJH's own tljh-config on the config.yaml under ``prefix``."""
    return subprocess.run(
        [str(tljh_env.python().parent / "tljh-config"), *args],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TLJH_INSTALL_PREFIX=str(prefix)),
    )  # fmt: skip


def write_roster(folder: Path) -> tuple[Path, list[str]]:
    """A roster CSV of three students in sections A and B and one TA, random names; returns
    it and the names, students first."""
    students = [f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    ta = f"dlct-ta-{uuid.uuid4().hex[:6]}"
    rows = [f"{students[0]},A,student", f"{students[1]},A,student", f"{students[2]},B,student",
            f"{ta},,ta"]  # fmt: skip
    roster = folder / "roster.csv"
    roster.write_text("username,section,role\n" + "\n".join(rows) + "\n")
    return roster, [*students, ta]


class TljhHub(LiveHub):
    """TLJH's hub configuration over a rendered install; LiveHub's API for users and servers."""

    def __init__(
        self, workdir: Path, user_env: Path, *install_args: str, hub_port: int | None = None
    ) -> None:
        super().__init__(workdir, user_env, real_accounts=False, services={})
        if hub_port is not None:  # a port of the test's choosing, e.g. one below 1024
            self.hub_port = hub_port
            self.api_url = f"http://127.0.0.1:{hub_port}/hub/api"
            self.client.base_url = self.api_url
        self.python = tljh_env.python()  # built by the tljh_python fixture
        self.admin = f"dlct-admin-{uuid.uuid4().hex[:6]}"
        self.install_args = ("--admin", self.admin, *install_args)
        # The ports the rendered files name: the hub's, and the services' it starts or routes.
        self.ports = {"hub": self.hub_port, "status": free_port(), "exporter": free_port(),
                      "grafana": free_port()}  # fmt: skip
        self.site: Site = render_site(
            self.dir / "site", *self.install_args, relocate=True, ports=self.ports
        )
        self.prefix = self.site.local("/opt/tljh")
        (self.prefix / "hub").symlink_to(self.python.parent.parent)
        probe("install", self.admin, prefix=self.prefix, etc=self.site.local("/etc/dlcourse"))
        self.configured = installer_tljh_config_commands(self.prefix, *self.install_args)
        for argv in self.configured:
            done = tljh_config(self.prefix, *argv[1:])
            if done.returncode != 0:
                raise HubError(f"TLJH refused `{shlex.join(argv[1:])}`: {done.stderr.strip()}")
        self.accounts_made = LinuxAccounts()  # by TLJH at each user's first spawn

    def admin_password(self) -> str:
        """The admin's generated password, from the root-only file the installer wrote."""
        return self.site.read(f"/etc/dlcourse/hub-passwords/{self.admin}").strip()

    def account(self, name: str) -> str:
        """The Linux account TLJH runs this hub user's server as."""
        return probe("accounts", name, prefix=self.prefix)[name]

    def _write_config(self) -> None:
        token_file = self.dir / "test-driver.token"
        token_file.write_text(self.tokens["test-driver"] + "\n")
        token_file.chmod(0o600)
        text = TEST_CONFIG.format(
            proxy_api_port=self.proxy_api_port,
            proxy_pid_file=str(self.dir / "proxy.pid"),
            public_port=self.public_port,
            token_file=str(token_file),
            singleuser=str(self.user_env / "bin" / "jupyterhub-singleuser"),
        )
        config_d = self.prefix / "config" / "jupyterhub_config.d"
        (config_d / TEST_CONFIG_NAME).write_text(text + "\n" + self.extra_config)

    def _launch(self) -> tuple[list[str], Path, dict[str, str]]:
        _, _, env = super()._launch()
        hub_env = self.prefix / "hub"
        env["TLJH_INSTALL_PREFIX"] = str(self.prefix)
        env["PATH"] = f"{hub_env}/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        (tljh_dir,) = hub_env.glob("lib/python3*/site-packages/tljh")
        argv = [f"{hub_env}/bin/python", "-m", "jupyterhub",
                "-f", str(tljh_dir / "jupyterhub_config.py"), "--upgrade-db"]  # fmt: skip
        state = self.prefix / "state"
        state.mkdir(mode=0o700, exist_ok=True)
        return argv, state, env

    def add_user(self, name: str | None = None, admin: bool = False, groups=()) -> str:
        name = super().add_user(name, admin=admin, groups=groups)
        self.accounts_made.created.append(self.account(name))
        return name

    def close(self) -> None:
        super().close()
        self.accounts_made.remove_all()
