"""Who may reach the monitoring stack, and with which credential: the files that say so.

Localhost is not private on a server where every student has a shell, so every endpoint that
serves per-student data asks for a credential (docs/security.md has the whole picture):

- the exporter, a bearer token (``exporter-token``, 0640 root:prometheus): Prometheus reads
  it; the exporter gets a copy from systemd and the status page from the hub, both root;
- Prometheus, Alertmanager and node_exporter, basic auth (``--web.config.file``, bcrypt
  hashes) for three users: ``prometheus`` (the server itself: scrapes and alerts),
  ``grafana`` (its datasources) and ``instructor`` (root's curl, amtool and promtool). Debian
  runs all three daemons as the ``prometheus`` account, which may read their files.

Each password is a secret of the registry; the web-config files and the netrc are made from
them (``Derived``), so no password is ever written into a configuration file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from dlcourse_installer.layout.paths import Paths
from dlcourse_installer.layout.ports import LOOPBACK, Ports
from dlcourse_installer.rendered import webauth
from dlcourse_installer.rendered.generated_file import GeneratedFile
from dlcourse_installer.rendered.students import STUDENT_SERVICE

# Who may use which daemon. node_exporter has no per-student data but shows every process
# name and mount of the server; Grafana has no use for it.
READERS = {
    # my-gpu: the students' page reads each one's own GPU-hours (dlcourse_status/usage.py).
    "prometheus": ("prometheus", "grafana", "instructor", STUDENT_SERVICE),
    "alertmanager": ("prometheus", "grafana", "instructor"),
    "node-exporter": ("prometheus", "instructor"),
}
# The account that reads each user's password file (None: root only).
PASSWORD_GROUP = {
    "prometheus": "prometheus",
    "grafana": "grafana",
    "instructor": None,
    STUDENT_SERVICE: None,  # the hub (root) hands it to the page
}


@dataclass(frozen=True)
class WebConfig:
    """A --web.config.file for these users: (name, password file) pairs."""

    users: tuple[tuple[str, str], ...]

    def __call__(self, secret: Callable[[str], str], current: str | None) -> str:
        kept = webauth.parse_web_config(current or "")
        hashes = {}
        for name, password_file in self.users:
            password = secret(password_file)
            old = kept.get(name)
            # A hash has a random salt: keep the one in place while it matches, so a rerun
            # writes nothing and restarts nothing.
            fits = old is not None and webauth.hash_matches(password, old)
            hashes[name] = old if fits else webauth.bcrypt_hash(password)
        return webauth.web_config(hashes)


@dataclass(frozen=True)
class Netrc:
    host: str
    username: str
    password_file: str

    def __call__(self, secret: Callable[[str], str], current: str | None) -> str:
        return webauth.netrc(self.host, self.username, secret(self.password_file))


def hub_files(paths: Paths) -> list[GeneratedFile]:
    """Secrets the hub's configuration reads when it starts (part hub-services)."""
    secret = partial(GeneratedFile, part="hub-services", content=None, mode=0o640)
    return [
        secret(paths.exporter_token, group="prometheus"),
        secret(paths.grafana_oauth_secret, group="grafana"),
        secret(paths.culler_token, mode=0o600),  # the exporter and the culler: both root
    ]


def monitoring_files(paths: Paths, ports: Ports) -> list[GeneratedFile]:
    """Passwords first (part prometheus, the first monitoring step), then what uses them."""
    new = GeneratedFile
    files = [
        new(paths.password(user), "prometheus", None, mode=0o640 if group else 0o600,
            group=group or "root")
        for user, group in PASSWORD_GROUP.items()
    ]  # fmt: skip
    for daemon, readers in READERS.items():  # each written by its daemon's part (step)
        web = WebConfig(tuple((user, paths.password(user)) for user in readers))
        files.append(new(paths.web_config(daemon), daemon, None, mode=0o640,
                         group="prometheus", derived=web))  # fmt: skip
    netrc = Netrc(LOOPBACK, "instructor", paths.password("instructor"))
    client = webauth.client_config("instructor", paths.password("instructor"))
    amtool = (
        f"# {webauth.HEADER}\n# `sudo amtool ...` talks to this Alertmanager as the instructor.\n"
        f"alertmanager.url: http://{ports.address('alertmanager')}\n"
        f"http.config.file: {paths.instructor_http_config}\n"
    )
    return [
        *files,
        new(paths.instructor_netrc, "prometheus", None, mode=0o600, derived=netrc),
        new(paths.instructor_http_config, "prometheus", client, mode=0o600),
        new(paths.amtool_config, "alertmanager", amtool),
    ]
