"""A real JupyterHub for tests: subprocess, proxy, users, servers and kernels.

`LiveHub` runs the test venv's JupyterHub on 127.0.0.1 with free ports, the dummy
authenticator and its database, cookie secret and logs in a temporary folder. It declares
services whose API tokens tests use:

- ``test-driver``: the hub's ``admin`` role (which includes ``access:servers``), so tests can
  make admins and start kernels through the hub's proxy. The exporter never holds it.
- ``dlcourse-exporter``: exactly the least-privilege role of docs/hub.md.
- ``no-list``, ``no-groups``: the exporter's role less one scope, for the fault tests.

``services=`` replaces the last three; ``extra_config=`` is appended to the generated
jupyterhub_config.py (the config assigns ``c.JupyterHub.services`` first, as TLJH does).

As root, users are real Linux accounts (useradd) and LocalProcessSpawner runs each server,
and so each kernel, as that account. Otherwise SimpleLocalProcessSpawner runs everything as
the current user and ownership comes from ``JUPYTERHUB_USER`` in the processes' environment.
Servers run ``jupyterhub-singleuser`` from the user environment (tests/conftest.py
``user_env``), which every account can read.

Kernels that die stay dead (``kernel_autorestart=False``, jupyter_server's default is to
restart them), so tests can count kernel processes exactly.

A spawn is left pending with `hold_spawn` (the hub's ``pre_spawn_hook`` waits while a flag
file exists) and ended with `release_spawn` or `cancel_spawn`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from dlcourse_installer.rendered.templates import EXPORTER_SCOPES

from .exporter import free_port
from .leftovers import (
    AccountError,
    create_account,
    die_with_parent,
    kill,
    pids,
    remove_account,
)

# The exporter's role as the installer declares it (docs/hub.md shows the same).
DEFAULT_SERVICES: dict[str, tuple[str, ...]] = {
    "dlcourse-exporter": EXPORTER_SCOPES,
    "no-list": tuple(s for s in EXPORTER_SCOPES if s != "list:users"),
    "no-groups": tuple(s for s in EXPORTER_SCOPES if s != "read:users:groups"),
}

CONFIG_TEMPLATE = """\
# Written by dlcourse_testing.hub (testing/hub.py)
import asyncio
import pathlib

c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = {proxy_pid_file!r}
c.JupyterHub.db_url = "sqlite:///{db_file}"
c.JupyterHub.cookie_secret_file = {cookie_file!r}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = {spawner_class!r}
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {spawner_args!r}
# Generous: CI runs on a busy 2-core machine.
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
{extra_spawner}
# The spawn API answers 202 at once instead of blocking up to 10 s: tests poll.
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.services = {services!r}
c.JupyterHub.load_roles = {roles!r}

HOLD_DIR = pathlib.Path({hold_dir!r})


async def hold_spawn(spawner):
    # A test leaves a spawn pending by creating HOLD_DIR/<user>; "fail" in it aborts.
    # <user>.held tells the test that this hook has the spawn in hand.
    flag = HOLD_DIR / spawner.user.name
    if flag.exists():
        (HOLD_DIR / (spawner.user.name + ".held")).touch()
    while flag.exists():
        if flag.read_text().strip() == "fail":
            flag.unlink()
            raise RuntimeError("spawn cancelled by the test")
        await asyncio.sleep(0.1)


c.Spawner.pre_spawn_hook = hold_spawn
"""


def tljh_authenticator(store: Path, allowed: Sequence[str] = ()) -> str:
    """Configuration for TLJH's own login (tljh/configurer.py, TLJH 2.0.0): FirstUseAuthenticator
    (the first login sets a password, unless one is in `store`), no new accounts; `allowed`
    (which the hub creates at start) and users added later (JupyterHub 5's
    allow_existing_users) may log in. Append it with `extra_config` or `add_config`."""
    return f"""
c.JupyterHub.authenticator_class = "firstuseauthenticator.FirstUseAuthenticator"
c.FirstUseAuthenticator.dbm_path = {str(store)!r}
c.FirstUseAuthenticator.create_users = False
c.Authenticator.allow_all = False
c.Authenticator.allowed_users = {set(allowed)!r}
c.Authenticator.allow_existing_users = True
"""


class HubError(AssertionError):
    """The live hub did not do what a test asked; the message carries its log's tail."""


class LinuxAccounts:
    """Real accounts for hub users (root only), marked as this process's
    (dlcourse_testing.leftovers) and removed with every process they own."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self, name: str) -> pwd.struct_passwd:
        entry = create_account(name)
        self.created.append(name)
        return entry

    def remove_all(self) -> None:
        """Removes every account, then raises the first failure (if any)."""
        errors = []
        for name in self.created:
            try:
                remove_account(name)
            except AccountError as exc:
                errors.append(exc)
        self.created.clear()
        if errors:
            raise errors[0]


class LiveHub:
    """One JupyterHub subprocess. `start()` and `stop()` may alternate (same ports, same db)."""

    def __init__(
        self,
        workdir: Path,
        user_env: Path,
        *,
        real_accounts: bool | None = None,
        services: Mapping[str, Sequence[str]] = DEFAULT_SERVICES,
        extra_config: str = "",
        kernel_autorestart: bool = False,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user_env = user_env
        self.real_accounts = os.geteuid() == 0 if real_accounts is None else real_accounts
        self.accounts = LinuxAccounts() if self.real_accounts else None
        self.public_port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.public_url = f"http://127.0.0.1:{self.public_port}"
        # What the exporter uses: the hub's own port, as TLJH's http://127.0.0.1:15001/hub/api.
        self.api_url = f"http://127.0.0.1:{self.hub_port}/hub/api"
        self.tokens = {name: secrets.token_hex(16) for name in ["test-driver", *services]}
        self.services = dict(services)
        self.extra_config = extra_config  # appended to jupyterhub_config.py, e.g. docs snippets
        self.kernel_autorestart = kernel_autorestart
        self.hold_dir = self.dir / "hold"
        self.hold_dir.mkdir(exist_ok=True)
        self.log_file = self.dir / "hub.log"
        self.users: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"token {self.tokens['test-driver']}"},
            timeout=30,
        )

    # --- the hub process -------------------------------------------------------------

    def _write_config(self) -> None:
        if self.real_accounts:
            spawner, extra = "localprocess", ""
        else:
            spawner = "simple"
            homes = self.dir / "homes"
            extra = f"c.SimpleLocalProcessSpawner.home_dir_template = {str(homes / '{username}')!r}"
        text = CONFIG_TEMPLATE.format(
            public_port=self.public_port,
            hub_port=self.hub_port,
            proxy_api_port=self.proxy_api_port,
            proxy_pid_file=str(self.dir / "proxy.pid"),
            db_file=self.dir / "jupyterhub.sqlite",
            cookie_file=str(self.dir / "cookie_secret"),
            spawner_class=spawner,
            singleuser=str(self.user_env / "bin" / "jupyterhub-singleuser"),
            extra_spawner=extra,
            # jupyter_server restarts a kernel that dies; off, a killed kernel stays dead
            # and tests can count kernel processes exactly.
            spawner_args=[] if self.kernel_autorestart else ["--KernelManager.autorestart=False"],
            services=[{"name": n, "api_token": t} for n, t in self.tokens.items()],
            roles=[
                {"name": "admin", "services": ["test-driver"]},
                *(
                    {"name": f"{n}-role", "scopes": list(s), "services": [n]}
                    for n, s in self.services.items()
                ),
            ],
            hold_dir=str(self.hold_dir),
        )
        (self.dir / "jupyterhub_config.py").write_text(text + "\n" + self.extra_config)

    def add_config(self, text: str) -> None:
        """Appends to jupyterhub_config.py (before start(), or followed by a restart)."""
        self.extra_config += "\n" + text

    def _launch(self) -> tuple[list[str], Path, dict[str, str]]:
        """The hub's command line, working folder and environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(16)
        return [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"], self.dir, env

    def start(self, timeout: float = 120) -> None:
        self._write_config()
        argv, cwd, env = self._launch()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                die_with_parent(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C in pytest must not reach it half-way
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HubError(
                    f"jupyterhub exited with {self.process.returncode}\n{self.log_tail()}"
                )
            try:
                # Through the proxy: ready means hub and proxy both answer.
                if httpx.get(f"{self.public_url}/hub/api/", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise HubError(f"jupyterhub not ready after {timeout} s\n{self.log_tail()}")

    def stop(self) -> None:
        """Stops servers, the hub and its proxy; kills whatever is left of them."""
        if self.process is None:
            return
        if self.process.poll() is None:
            for name in self.users:
                # On failure the hub's own cleanup and the kill below still apply.
                with contextlib.suppress(HubError, httpx.HTTPError):
                    self.stop_server(name)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        self._kill_leftovers()

    def restart_keeping_servers(self, timeout: float = 120) -> None:
        """Stops the hub alone and starts it again, as `tljh-config reload hub` does on a
        server: with cleanup_servers False (TLJH's setting) the servers keep running and the
        new hub finds them in its database."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process = None
        self.start(timeout)

    def close(self) -> None:
        """stop(), then remove the accounts and the working folder."""
        self.stop()
        if self.accounts is not None:
            self.accounts.remove_all()
        self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        pid_file = self.dir / "proxy.pid"
        if pid_file.exists():
            text = pid_file.read_text().strip()
            pid = int(text) if text.isdigit() else 0
            try:  # only if the pid still is our proxy, not a recycled number
                if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    kill(pid)
            except OSError:
                pass
            pid_file.unlink(missing_ok=True)
        # Servers, kernels and services whose hub is gone: its API URL is in their environment.
        for pid in self.children():
            kill(pid)

    def children(self, *markers: str) -> list[int]:
        """Processes the hub started (its API URL in their environment), with every marker
        (``NAME=value``) in it too, e.g. ``JUPYTERHUB_SERVICE_NAME=dlcourse-status``."""
        wanted = {f"JUPYTERHUB_API_URL=http://127.0.0.1:{self.hub_port}/hub/api", *markers}
        found = []
        for pid in pids():
            try:
                environ = set(Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0"))
            except (OSError, UnicodeDecodeError):
                continue
            if wanted <= environ:
                found.append(pid)
        return found

    def log_size(self) -> int:
        """Where the hub's log ends now; `log_since` reads what comes after."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no hub log)"

    def attribution_args(self) -> list[str]:
        """The exporter flags that say how this hub's spawner runs servers: as root each user
        under the account of the same name (LocalProcessSpawner, no prefix), else everyone
        under the current account (SimpleLocalProcessSpawner), which JUPYTERHUB_USER names."""
        if self.real_accounts:
            return ["--user.prefix="]
        return [f"--user.spawner-account={pwd.getpwuid(os.getuid()).pw_name}"]

    # --- tokens ----------------------------------------------------------------------

    def token_file(self, service: str = "dlcourse-exporter") -> Path:
        """A 0600 file holding the service's token, as the exporter reads it."""
        path = self.dir / f"{service}.token"
        path.write_text(self.tokens[service] + "\n")
        path.chmod(0o600)
        return path

    def wait_for_service(self, name: str, timeout: float = 60) -> None:
        """A service with a URL is routed and answers: an anonymous visit is sent to log in."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(f"{self.public_url}/services/{name}/").status_code == 302:
                return
            time.sleep(0.3)
        raise HubError(f"service {name} not routed\n{self.log_tail()}")

    # --- people in a browser -----------------------------------------------------------

    @contextlib.contextmanager
    def login(self, name: str, password: str = "any password") -> Iterator[httpx.Client]:
        """A browser-like session of `name`, logged in through the hub's own login form."""
        with httpx.Client(base_url=self.public_url, timeout=30) as client:
            form = client.get("/hub/login")
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
            if xsrf is None:
                raise HubError(f"no login form at /hub/login: {form.status_code}")
            answer = client.post(
                "/hub/login",
                data={"username": name, "password": password, "_xsrf": xsrf.group(1)},
            )
            if answer.status_code != 302:
                raise HubError(f"login of {name} refused: {answer.status_code}")
            yield client

    # --- users and servers -----------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A hub API call with the admin token; raises HubError on an HTTP error."""
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise HubError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def add_user(
        self, name: str | None = None, admin: bool = False, groups: Sequence[str] = ()
    ) -> str:
        name = name or f"dlct-{uuid.uuid4().hex[:8]}"
        if self.accounts is not None:
            self.accounts.create(name)
        self.api("POST", f"/users/{name}", json={"admin": admin})
        self.users.append(name)
        for group in groups:
            self.add_to_group(name, group)
        return name

    def add_to_group(self, name: str, group: str) -> None:
        if self.client.get(f"/groups/{group}").status_code == 404:
            created = self.client.post(f"/groups/{group}")
            # 409: a concurrent add_user (tests that start a class at once) made it first.
            if created.status_code not in (201, 409):
                raise HubError(f"POST /groups/{group}: {created.status_code} {created.text}")
        self.api("POST", f"/groups/{group}/users", json={"users": [name]})

    def remove_user(self, name: str) -> None:
        self.stop_server(name)
        self.api("DELETE", f"/users/{name}")
        self.users.remove(name)

    def user_model(self, name: str) -> dict[str, Any]:
        return self.api("GET", f"/users/{name}").json()

    def start_server(self, name: str, timeout: float = 120) -> dict[str, Any]:
        """Starts the user's default server and returns its model once it is ready."""
        self.api("POST", f"/users/{name}/server")
        return self.wait_server(name, ready=True, timeout=timeout)

    def stop_server(self, name: str, timeout: float = 60) -> None:
        server = self.user_model(name).get("servers", {}).get("")
        if server is None:
            return
        if server.get("pending") == "spawn":
            self.cancel_spawn(name)
        else:
            self.api("DELETE", f"/users/{name}/server")
        self.wait_server(name, ready=None, timeout=timeout)

    def wait_server(self, name: str, ready: bool | None, timeout: float = 120) -> dict[str, Any]:
        """Waits for the default server to be ready (True) or gone (None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.user_model(name).get("servers", {}).get("")
            if ready is None and server is None:
                return {}
            if ready and server is not None and server.get("ready"):
                return server
            if ready and server is None and not (self.hold_dir / name).exists():
                raise HubError(f"server of {name} failed to start\n{self.log_tail()}")
            time.sleep(0.2)
        raise HubError(f"server of {name} not {'ready' if ready else 'gone'}\n{self.log_tail()}")

    def hold_spawn(self, name: str, timeout: float = 60) -> None:
        """Starts a spawn that stays pending until release_spawn() or cancel_spawn();
        returns once the hub's pre-spawn hook holds it."""
        flag, held = self.hold_dir / name, self.hold_dir / f"{name}.held"
        held.unlink(missing_ok=True)
        flag.write_text("hold")
        self.api("POST", f"/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if held.exists():
                return
            time.sleep(0.1)
        raise HubError(f"spawn of {name} not held\n{self.log_tail()}")

    def release_spawn(self, name: str, timeout: float = 120) -> dict[str, Any]:
        (self.hold_dir / name).unlink(missing_ok=True)
        return self.wait_server(name, ready=True, timeout=timeout)

    def cancel_spawn(self, name: str, timeout: float = 60) -> None:
        (self.hold_dir / name).write_text("fail")
        self.wait_server(name, ready=None, timeout=timeout)

    # --- kernels, through the proxy to the user's server (admin token) ---------------

    def _server_api(self, method: str, user: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.public_url}/user/{user}/api{path}"
        response = self.client.request(method, url, **kwargs)
        if response.status_code >= 400:
            raise HubError(f"{method} {url}: {response.status_code} {response.text}")
        return response

    def start_kernel(self, user: str, kernel_name: str = "python3") -> str:
        """Starts a kernel in the user's running server; returns its id."""
        return self._server_api("POST", user, "/kernels", json={"name": kernel_name}).json()["id"]

    def start_session(self, user: str, path: str, kernel_name: str = "python3") -> str:
        """Opens a notebook as JupyterLab does (a session: the path and a new kernel);
        returns the kernel's id."""
        body = {"path": path, "name": path, "type": "notebook", "kernel": {"name": kernel_name}}
        return self._server_api("POST", user, "/sessions", json=body).json()["kernel"]["id"]

    def shutdown_kernel(self, user: str, kernel_id: str) -> None:
        self._server_api("DELETE", user, f"/kernels/{kernel_id}")

    def restart_kernel(self, user: str, kernel_id: str) -> None:
        self._server_api("POST", user, f"/kernels/{kernel_id}/restart")

    def kernels(self, user: str) -> list[dict[str, Any]]:
        return self._server_api("GET", user, "/kernels").json()

    def kernel_pid(self, user: str, kernel_id: str, timeout: float = 60) -> int:
        """The pid of the kernel process whose command line names kernel-<id>.json."""
        connection_file = f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in pids():
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(arg.decode(errors="replace").endswith(connection_file) for arg in argv):
                    return pid
            time.sleep(0.1)
        raise HubError(f"no process for kernel {kernel_id} of {user}")

    # --- what the exporter's token sees ------------------------------------------------

    def users_json(self) -> list[dict[str, Any]]:
        """All users as the exporter's token sees them (paginated response, first page)."""
        headers = {
            "Authorization": f"token {self.tokens['dlcourse-exporter']}",
            "Accept": "application/jupyterhub-pagination+json",
        }
        return json.loads(httpx.get(f"{self.api_url}/users", headers=headers).text)["items"]
