"""Grafana's generated sign-in, against the hub's real OAuth endpoints.

Grafana cannot be installed on the test machines, so this test does what Grafana's
generic_oauth does with the settings `dlcourse-install render` writes (grafana.ini, the hub
snippet that registers the grafana service): send the browser to `auth_url`, trade the code at
`token_url` with the client id and the secret from its file, read `api_url`, and apply
Grafana's JMESPath settings (with the `jmespath` package; Grafana uses go-jmespath, the same
specification) to the hub's answer. What only a running Grafana can show is listed in
docs/security.md.
"""

from __future__ import annotations

import configparser
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import jmespath
import pytest

from dlcourse_testing.exporter import free_port
from dlcourse_testing.hub import LiveHub
from dlcourse_testing.rendered import Site, render_site

STAFF_GROUP = "tutors"  # not the default: the setting must reach every file


@dataclass
class Hub:
    hub: LiveHub
    site: Site
    ini: configparser.ConfigParser
    admin: str
    ta: str
    student: str

    @property
    def oauth(self) -> configparser.SectionProxy:
        return self.ini["auth.generic_oauth"]

    def client_secret(self) -> str:
        [path] = re.fullmatch(r"\$__file\{(.+)\}", self.oauth["client_secret"]).groups()
        with open(path) as f:
            return f.read().strip()

    def redirect_uri(self) -> str:
        return self.ini["server"]["root_url"] + "login/generic_oauth"


@pytest.fixture(scope="module")
def course(user_env, tmp_path_factory) -> Iterator[Hub]:
    work = tmp_path_factory.mktemp("grafana-oauth")
    hub = LiveHub(work / "hub", user_env)
    site = render_site(
        work / "site", "--admin", "teacher", "--staff-group", STAFF_GROUP,
        "--domain", hub.public_url, relocate=True,
        ports={"hub": hub.hub_port, "status": free_port(), "exporter": free_port()},
    )  # fmt: skip
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ini.read_string(site.read("/etc/grafana/grafana.ini"))
    try:
        hub.add_config(site.read("/opt/tljh/config/jupyterhub_config.d/dlcourse-staff.py"))
        hub.start()
        admin = hub.add_user(admin=True)
        ta = hub.add_user(groups=[STAFF_GROUP])
        student = hub.add_user(groups=["section-a"])
        yield Hub(hub, site, ini, admin, ta, student)
    finally:
        hub.close()


def authorize(course: Hub, name: str, redirect_uri: str | None = None) -> httpx.Response:
    """The browser's visit to auth_url, as Grafana sends it there, logged in to the hub."""
    params = {
        "client_id": course.oauth["client_id"],
        "redirect_uri": redirect_uri or course.redirect_uri(),
        "response_type": "code",
        "state": secrets.token_urlsafe(8),
    }
    if course.oauth["scopes"]:
        params["scope"] = course.oauth["scopes"]
    with course.hub.login(name) as browser:
        return browser.get(course.oauth["auth_url"], params=params)


def grafana_sign_in(course: Hub, name: str) -> dict:
    """The whole code flow; returns the user info Grafana reads from api_url."""
    answer = authorize(course, name)
    assert answer.status_code == 302, answer.text[:500]
    back = answer.headers["location"]
    assert back.startswith(course.redirect_uri() + "?"), back
    [code] = parse_qs(urlsplit(back).query)["code"]
    token = httpx.post(
        course.oauth["token_url"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": course.redirect_uri(),
            "client_id": course.oauth["client_id"],
            "client_secret": course.client_secret(),
        },
        timeout=30,
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    user = httpx.get(course.oauth["api_url"], headers=bearer, timeout=30)
    assert user.status_code == 200, user.text
    # The hub has no e-mail endpoint: Grafana would fail there without email_attribute_path.
    assert httpx.get(course.oauth["api_url"] + "/emails", headers=bearer).status_code == 404
    return user.json()


def grafana_identity(course: Hub, user: dict) -> dict:
    """What Grafana makes of the hub's answer with the generated JMESPath settings."""
    return {
        key: jmespath.search(course.oauth[f"{key}_attribute_path"], user) or ""
        for key in ("login", "name", "email", "role")
    }


def test_the_settings_leave_one_door(course):
    ini = course.ini
    assert ini.getboolean("auth.generic_oauth", "enabled")
    assert ini.getboolean("auth.generic_oauth", "allow_sign_up")  # staff get accounts
    assert ini.getboolean("auth.generic_oauth", "role_attribute_strict")
    assert not ini.getboolean("users", "allow_sign_up")
    assert not ini.getboolean("auth.anonymous", "enabled")
    assert ini.getboolean("auth", "disable_login_form")
    assert not ini.getboolean("auth.basic", "enabled")
    assert course.oauth["client_id"] == "service-grafana"  # JupyterHub's id for the service
    assert ini["server"]["root_url"] == f"{course.hub.public_url}/services/grafana/"
    assert ini["server"]["http_addr"] == "127.0.0.1"


def test_the_urls_are_the_hubs_real_oauth_endpoints(course):
    assert urlsplit(course.oauth["auth_url"]).netloc == urlsplit(course.hub.public_url).netloc
    assert course.oauth["token_url"] == f"{course.hub.api_url}/oauth2/token"
    assert course.oauth["api_url"] == f"{course.hub.api_url}/user"
    # The hub knows Grafana's client, with exactly the redirect Grafana will send.
    anyone_else = authorize(course, course.ta, redirect_uri="http://evil.example/callback")
    assert anyone_else.status_code == 400


def test_a_ta_signs_in_as_a_viewer(course):
    user = grafana_sign_in(course, course.ta)
    assert user["name"] == course.ta and STAFF_GROUP in user["groups"]
    assert grafana_identity(course, user) == {
        "login": course.ta,
        "name": course.ta,
        "email": f"{course.ta}@dlcourse.invalid",
        "role": "Viewer",
    }


def test_a_hub_admin_signs_in_as_a_grafana_admin(course):
    identity = grafana_identity(course, grafana_sign_in(course, course.admin))
    assert identity["role"] == "Admin" and identity["email"] == f"{course.admin}@dlcourse.invalid"


def test_a_student_is_refused_by_the_hub_and_would_be_by_grafana(course):
    refused = authorize(course, course.student)
    assert refused.status_code == 403
    assert "location" not in refused.headers  # no code for Grafana
    # Even with the hub's answer in hand, the role is empty: role_attribute_strict refuses.
    model = {"kind": "user", "name": course.student, "admin": False, "groups": ["section-a"]}
    assert grafana_identity(course, model)["role"] == ""
    assert grafana_identity(course, {"name": course.student, "admin": False})["role"] == ""
