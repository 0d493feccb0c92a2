"""my-gpu: each student's own page, a hub service every hub user may open.

``python -m dlcourse_status.student``, started by the hub like the staff page (a managed
service in the hub's Python), at ``/services/my-gpu/``. A student sees their own GPU, memory
and utilization now, their GPU-hours this week and term, their kernels with idle warnings
and the time left, and their recent kernel deaths with the reason in plain words.

Whose page it is comes from the hub alone: JupyterHub's service OAuth (``HubOAuthenticated``)
names the logged-in user, and no route takes a user name. The hub lets every user through
because the installer adds ``access:services!service=my-gpu`` to JupyterHub's default
``user`` role (installer/rendered/students.py); staff pages keep their own OAuth clients and scopes.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.escape import xhtml_escape

from dlcourse_installer.hub.gpu_hook import read_tljh_config
from dlcourse_installer.hub.gpu_idle import IdleSettings, settings_from_tljh
from dlcourse_installer.rendered.students import STUDENT_SERVICE
from dlcourse_status.exporter import Exporter, ExporterError
from dlcourse_status.service import HEADERS, ConfigError, Headers, Settings, serve
from dlcourse_status.student_view import WrongStudent, student_view
from dlcourse_status.usage import Prometheus

log = logging.getLogger("dlcourse_status.student")

PAGE = (Path(__file__).parent / "student_page.html").read_text()
# The JupyterLab extension frames the page (same origin) to read its XSRF token.
STUDENT_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": HEADERS["Content-Security-Policy"].replace(
        "frame-ancestors 'none'", "frame-ancestors 'self'"
    ),
}


@dataclass(frozen=True)
class StudentSettings:
    hub: Settings
    idle: IdleSettings
    prometheus_url: str = ""
    prometheus_user: str = ""
    prometheus_password_file: str = ""

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> tuple[StudentSettings, list[str]]:
        """Raises ConfigError for what it cannot run without; returns one warning line per
        bad idle threshold (which keeps its default)."""
        hub = Settings.from_environment(environ)
        config, warnings = read_tljh_config(environ.get("DLCOURSE_TLJH_CONFIG", ""))
        idle, bad = settings_from_tljh(config)
        url = environ.get("DLCOURSE_PROMETHEUS_URL", "").rstrip("/")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"DLCOURSE_PROMETHEUS_URL {url!r} must start with http://")
        user = environ.get("DLCOURSE_PROMETHEUS_USER", STUDENT_SERVICE)
        password_file = environ.get("DLCOURSE_PROMETHEUS_PASSWORD_FILE", "")
        return cls(hub, idle, url, user, password_file), [*warnings, *bad]


class StudentHeaders(Headers):
    security_headers = STUDENT_HEADERS


class StudentOnly(HubOAuthenticated):
    """The logged-in hub user, never a service or a name from the request."""

    def student(self) -> str:
        model = self.current_user  # type: ignore[attr-defined]
        if model.get("kind", "user") != "user" or not isinstance(model.get("name"), str):
            raise web.HTTPError(403, "a hub user's page")
        return model["name"]


class StudentPage(StudentHeaders, StudentOnly, web.RequestHandler):
    @web.authenticated
    def get(self) -> None:
        self.student()
        self.finish(PAGE.replace("{{xsrf}}", xhtml_escape(self.xsrf_token)))


class StudentApi(StudentHeaders, StudentOnly, web.RequestHandler):
    def initialize(
        self, exporter: Exporter, prometheus: Prometheus | None, idle: IdleSettings
    ) -> None:
        self.exporter = exporter
        self.prometheus = prometheus
        self.idle = idle

    @web.authenticated
    async def get(self) -> None:
        user = self.student()
        try:
            facts = await self.exporter.student(user)
        except ExporterError as exc:
            log.warning("%s", exc)
            raise web.HTTPError(502, "the exporter did not answer") from None
        usage = await self.prometheus.usage(user) if self.prometheus else None
        try:
            view = student_view(user, facts, self.idle, time.time(), usage)
        except WrongStudent as exc:
            log.error("refused: %s", exc)
            raise web.HTTPError(502, "the exporter's answer was not for you") from None
        self.finish(view)


def make_app(settings: StudentSettings) -> web.Application:
    hub = settings.hub
    exporter = Exporter(hub.exporter_url, hub.exporter_token)
    prometheus = (
        Prometheus(
            settings.prometheus_url, settings.prometheus_user, settings.prometheus_password_file
        )
        if settings.prometheus_url
        else None
    )
    api = {"exporter": exporter, "prometheus": prometheus, "idle": settings.idle}
    return web.Application(
        [
            (hub.prefix, StudentPage),
            (url_path_join(hub.prefix, "api/me"), StudentApi, api),
            (url_path_join(hub.prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=secrets.token_bytes(32),
    )


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings, warnings = StudentSettings.from_environment(dict(os.environ))
    except ConfigError as exc:
        print(f"dlcourse-my-gpu: error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    return serve(make_app(settings), settings.hub, "dlcourse-my-gpu")


if __name__ == "__main__":
    sys.exit(main())
