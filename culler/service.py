"""The culler's cycle, its hub calls and its settings.

Its hub calls follow jupyterhub-idle-culler's (jupyterhub_idle_culler/__init__.py): Tornado's
AsyncHTTPClient with a request timeout, a semaphore bounding how many run at once, and one
failure logged without stopping the others. It needs no paginated user list: the exporter
names the idle kernels and their users, and the hub is called once per shutdown.

Its one hub scope is ``access:servers`` (role ``dlcourse-gpu-culler``,
installer/rendered/students.py):
the students' servers accept a request when its token holds ``access:servers!server=NAME/``
(JupyterHub 5 ``HubAuth``, jupyterhub/services/auth.py, ``access_scopes``), and a server's API
has no narrower permission than that; the kernel DELETE is the only call it makes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from tornado import httpclient

from dlcourse_installer.hub.gpu_hook import read_tljh_config
from dlcourse_installer.hub.gpu_idle import (
    IdleSettings,
    culler_may_shut_down,
    judge,
    settings_from_tljh,
)
from dlcourse_secretfile import SecretFileError, read_secret
from dlcourse_status.exporter import Exporter, ExporterError

log = logging.getLogger("dlcourse_culler")

# jupyter_server names kernels by uuid4 (jupyter_client MultiKernelManager.new_kernel_id);
# the exporter reads the id from a connection file name, which a student can choose.
KERNEL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HUB_TIMEOUT_SECONDS = 30.0
CONCURRENCY = 10
# How often it looks: a sixth of the shorter threshold, so a shutdown comes at most that late,
# between 1 s and 30 s (the defaults: every 30 s).
FASTEST_SECONDS, SLOWEST_SECONDS = 1.0, 30.0


class ConfigError(Exception):
    """str() is one line."""


@dataclass(frozen=True)
class Settings:
    hub_token: str = field(repr=False)
    hub_url: str  # where /user/NAME/ is routed: the hub's public address
    verify_hub_cert: bool
    exporter_url: str
    culler_token: str = field(repr=False)  # the exporter's /api/idle and cull reports
    idle: IdleSettings

    @property
    def every_seconds(self) -> float:
        shorter = min(self.idle.warn_seconds, self.idle.grace_seconds)
        return min(SLOWEST_SECONDS, max(FASTEST_SECONDS, shorter / 6))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> tuple[Settings, list[str]]:
        errors = []
        hub_token = environ.get("JUPYTERHUB_API_TOKEN", "")
        if not hub_token:
            errors.append("JUPYTERHUB_API_TOKEN is not set: run me as a hub service")
        hub_url = environ.get("DLCOURSE_HUB_PUBLIC_URL", "").rstrip("/")
        if not hub_url.startswith(("http://", "https://")):
            errors.append("DLCOURSE_HUB_PUBLIC_URL must be the hub's http(s)://HOST:PORT")
        exporter_url = environ.get("DLCOURSE_EXPORTER_URL", "http://127.0.0.1:9945")
        culler_token = ""
        try:
            # At most 4 KiB of a regular file, one line (never a FIFO or /dev/zero).
            culler_token = read_secret(environ.get("DLCOURSE_CULLER_TOKEN_FILE", ""))
        except SecretFileError as exc:
            errors.append(f"DLCOURSE_CULLER_TOKEN_FILE {exc}")
        config, warnings = read_tljh_config(environ.get("DLCOURSE_TLJH_CONFIG", ""))
        idle, bad = settings_from_tljh(config)
        if errors:
            raise ConfigError("; ".join(errors))
        verify = environ.get("DLCOURSE_HUB_VERIFY_CERT", "true") != "false"
        settings = cls(hub_token, hub_url, verify, exporter_url, culler_token, idle)
        return settings, [*warnings, *bad]


class Culler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The culler's own token reads /api/idle and reports culls, and nothing else: it never
        # holds the token that reads every student's data.
        self.exporter = Exporter(settings.exporter_url, settings.culler_token)
        self._client = httpclient.AsyncHTTPClient(force_instance=True)
        self._semaphore = asyncio.Semaphore(CONCURRENCY)
        # (user, kernel id, idle since) -> when this culler first saw that idle spell warned
        self.warned: dict[tuple[str, str, float], float] = {}

    async def cycle(self, now: float | None = None) -> list[tuple[str, str]]:
        """One look at the idle kernels; returns the (user, kernel id) it shut down."""
        now = time.time() if now is None else now
        idle = self.settings.idle
        due, current = [], set()
        for kernel in await self.exporter.idle_kernels():
            user, kernel_id = str(kernel.get("user", "")), str(kernel.get("kernel_id", ""))
            since, memory = kernel.get("gpu_idle_since"), kernel.get("gpu_memory_bytes")
            if not isinstance(since, (int, float)) or not isinstance(memory, int):
                continue
            verdict = judge(memory, float(since), now, idle)
            if not verdict.warned:
                continue
            key = (user, kernel_id, float(since))
            current.add(key)
            if key not in self.warned:
                self.warned[key] = now
                log.info("warned: kernel %s of %s holds %d MiB idle on the GPU since %s; "
                         "shutdown in %.0f s or more unless it uses the GPU", kernel_id, user,
                         memory // 2**20, time.strftime("%H:%M:%S", time.localtime(since)),
                         idle.grace_seconds)  # fmt: skip
            if culler_may_shut_down(verdict, self.warned[key], now, idle):
                due.append((user, kernel_id))
        # A spell that ended (activity, shutdown) starts afresh next time.
        self.warned = {k: v for k, v in self.warned.items() if k in current}
        results = await asyncio.gather(*(self.shut_down(u, k) for u, k in due))
        return [pair for pair, done in zip(due, results, strict=True) if done]

    async def shut_down(self, user: str, kernel_id: str) -> bool:
        if not KERNEL_ID.match(kernel_id):
            log.warning("not shutting down %r of %s: not a kernel id", kernel_id[:80], user)
            return False
        try:
            if not await self.still_idle(user, kernel_id):
                log.info("not shutting down kernel %s of %s: it used the GPU", kernel_id, user)
                return False
            answer = await self.hub_delete(user, kernel_id)
        except (ExporterError, OSError, httpclient.HTTPClientError) as exc:
            log.warning("kernel %s of %s: %s", kernel_id, user, exc)
            return False
        if answer.code == 404:
            log.info("kernel %s of %s was gone already", kernel_id, user)
            return False
        if answer.code != 204:
            log.warning("kernel %s of %s: the server answered %d", kernel_id, user, answer.code)
            return False
        log.info("shut down kernel %s of %s: idle on the GPU past the grace", kernel_id, user)
        await self.report(user, kernel_id)
        return True

    async def still_idle(self, user: str, kernel_id: str) -> bool:
        """The exporter's newest word on this kernel, just before the shutdown."""
        for kernel in await self.exporter.idle_kernels():
            if kernel.get("user") == user and kernel.get("kernel_id") == kernel_id:
                since = kernel.get("gpu_idle_since")
                memory = kernel.get("gpu_memory_bytes")
                if isinstance(since, (int, float)) and isinstance(memory, int):
                    return judge(memory, float(since), time.time(), self.settings.idle).warned
        return False

    async def hub_delete(self, user: str, kernel_id: str) -> httpclient.HTTPResponse:
        url = (
            f"{self.settings.hub_url}/user/{quote(user, safe='')}/api/kernels/"
            f"{quote(kernel_id, safe='')}"
        )
        request = httpclient.HTTPRequest(
            url,
            method="DELETE",
            headers={"Authorization": f"token {self.settings.hub_token}"},
            request_timeout=HUB_TIMEOUT_SECONDS,
            follow_redirects=False,
            validate_cert=self.settings.verify_hub_cert,
        )
        async with self._semaphore:
            return await self._client.fetch(request, raise_error=False)

    async def report(self, user: str, kernel_id: str) -> None:
        """The exporter counts the shutdown (its own token: Prometheus's cannot forge one)."""
        try:
            answer = await self.exporter.fetch(
                f"/api/students/{quote(user, safe='')}/culls",
                method="POST",
                body={"kernel_id": kernel_id},
            )
        except ExporterError as exc:
            log.warning("the exporter did not count the shutdown of %s: %s", kernel_id, exc)
            return
        if answer.code >= 300:
            log.warning("the exporter did not count the shutdown of %s: %d", kernel_id, answer.code)


async def run(culler: Culler) -> None:
    while True:
        try:
            await culler.cycle()
        except ExporterError as exc:
            log.warning("%s", exc)
        except Exception:  # one bad cycle must not end the service
            log.exception("cycle failed")
        await asyncio.sleep(culler.settings.every_seconds)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings, warnings = Settings.from_environment(os.environ)
    except ConfigError as exc:
        print(f"dlcourse-gpu-culler: error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    idle = settings.idle
    log.info(
        "kernels holding >= %d MiB at 0 %% are warned after %.0f s and shut down %.0f s later; "
        "checking every %.0f s",
        idle.min_bytes // 2**20, idle.warn_seconds, idle.grace_seconds, settings.every_seconds,
    )  # fmt: skip
    asyncio.run(run(Culler(settings)))
    return 0
