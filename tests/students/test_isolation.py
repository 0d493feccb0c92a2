"""1,000 requests by one student for another student's data, all refused.

Every route, parameter, encoding and header of the students' page and its API, the
class-status page's routes, and the exporter's per-student API without its token. The victim
has a kernel on the GPU, which their own page shows (so there is something to steal); no
answer to the attacker may carry it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest

from dlcourse_installer.rendered.staff import STATUS_SERVICE
from dlcourse_testing.student_course import GIB, PAGE
from fakenvml import Process

STATUS = f"/services/{STATUS_SERVICE}/"


@dataclass(frozen=True)
class Attempt:
    method: str
    url: str  # a path on the hub, or an absolute URL (the exporter)
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    def send(self, client: httpx.Client) -> httpx.Response:
        return client.request(self.method, self.url, headers=dict(self.headers),
                              content=self.body, follow_redirects=True)  # fmt: skip


def encodings(name: str) -> list[str]:
    every_byte = "".join(f"%{b:02X}" for b in name.encode())
    return list(dict.fromkeys([
        name,
        every_byte,
        quote(every_byte, safe=""),  # twice
        name.upper(),
        f"{name}/",
        f"./{name}",
        f"..%2f{name}",
        f"%2e%2e/{name}",
        f"{name}%00",
        f"%20{name}",
        f"{name}%20",
        f"{name};",
        f"{name}%2F",
        f"{name}%3F",
        f"{name}#",
    ]))  # fmt: skip


def page_attempts(victim: str, attacker_token: str, xsrf: str) -> Iterator[Attempt]:
    params = ("user", "name", "student", "username", "u", "as", "for", "hub_user", "login",
              "self", "who", "owner")  # fmt: skip
    routes = ("", "api/me", "api/me/", "api/class", "api/students/{v}", "api/{v}", "{v}",
              "api/me/{v}", "users/{v}", "api/users/{v}", "oauth_callback")  # fmt: skip
    for route, v in itertools.product(routes, encodings(victim)):
        yield Attempt("GET", PAGE + route.format(v=v))
    forms = [form for p in params for form in (p, p.upper(), f"{p}[]")]
    for param, v in itertools.product(forms, encodings(victim)[:6]):
        yield Attempt("GET", f"{PAGE}api/me?{param}={v}")
        yield Attempt("GET", f"{PAGE}?{param}={v}")
        yield Attempt(
            "GET", f"{PAGE}api/me?{param}={v}", (("X-XSRFToken", xsrf), ("Sec-Fetch-Mode", "cors"))
        )
    for header in ("X-Forwarded-User", "X-Remote-User", "Remote-User", "X-Jupyterhub-User",
                   "X-User", "From"):  # fmt: skip
        yield Attempt("GET", PAGE + "api/me", ((header, victim),))
    for method, route in itertools.product(("POST", "PUT", "PATCH", "DELETE"), ("", "api/me")):
        body = f'{{"user": "{victim}"}}'.encode()
        yield Attempt(method, PAGE + route, (("Content-Type", "application/json"),
                                             ("X-XSRFToken", xsrf)), body)  # fmt: skip
    # The attacker's own hub token: the hub names them, whatever they ask for.
    for v in encodings(victim)[:4]:
        yield Attempt("GET", f"{PAGE}api/me?user={v}",
                      (("Authorization", f"token {attacker_token}"),))  # fmt: skip
    for route, v in itertools.product(("", "api/class", "api/class?user={v}",
                                       "api/students/{v}"), encodings(victim)):  # fmt: skip
        yield Attempt("GET", STATUS + route.format(v=v))


def exporter_attempts(exporter: str, victim: str, attacker_token: str) -> Iterator[Attempt]:
    credentials = [(), (("Authorization", f"Bearer {attacker_token}"),),
                   (("Authorization", f"token {attacker_token}"),),
                   (("Authorization", "Bearer"),), (("Authorization", "Bearer x"),),
                   (("Authorization", "Basic bWU6cGFzcw=="),)]  # fmt: skip
    routes = ("/api/students/{v}", "/api/students/{v}?token=x", "/api/idle", "/api/class",
              "/metrics", "/api/students/{v}/")  # fmt: skip
    for auth, route, v in itertools.product(credentials, routes, encodings(victim)):
        yield Attempt("GET", exporter + route.format(v=v), auth)
    for auth in credentials:
        yield Attempt("POST", f"{exporter}/api/students/{victim}/culls", auth,
                      b'{"kernel_id": "x"}')  # fmt: skip


def leaks(answer: httpx.Response, victim: str, secrets: list[str]) -> list[str]:
    text = answer.text
    found = [s for s in secrets if s in text]
    if f'"user": "{victim}"' in text or f'"user":"{victim}"' in text:
        found.append("the victim's user record")
    return found


@pytest.fixture(scope="module")
def victim_with_a_kernel(student_course):
    hub = student_course.hub
    victim = hub.add_user(groups=["section-monday"])
    hub.start_server(victim)
    kernel = hub.start_kernel(victim)
    student_course.gpus([Process(hub.kernel_pid(victim, kernel), 3 * GIB, 40)], utilization=40)
    with hub.login(victim) as browser:
        # Their own page shows it: there is something to steal.
        student_course.wait_page(browser, lambda a: [k["kernel_id"] for k in a["kernels"]]
                                 == [kernel])  # fmt: skip
    return victim, kernel


def test_a_thousand_requests_for_another_students_data_are_all_refused(
    student_course, victim_with_a_kernel
):
    victim, kernel = victim_with_a_kernel
    hub = student_course.hub
    attacker = hub.add_user(groups=["section-monday"])
    attacker_token = hub.api("POST", f"/users/{attacker}/tokens", json={}).json()["token"]
    with hub.login(attacker) as browser:
        page = browser.get(PAGE, follow_redirects=True)
        xsrf = page.text.split('<meta name="xsrf" content="', 1)[1].split('"', 1)[0]
        attempts = list(dict.fromkeys([
            *page_attempts(victim, attacker_token, xsrf),
            *exporter_attempts(student_course.exporter.url, victim, attacker_token),
        ]))  # fmt: skip
        random.Random(23).shuffle(attempts)  # every kind among the 1,000, the same each run
        attempts = attempts[:1000]
        assert len(attempts) == 1000  # all different
        outcomes: dict[int, int] = {}
        for attempt in attempts:
            answer = attempt.send(browser)
            outcomes[answer.status_code] = outcomes.get(answer.status_code, 0) + 1
            found = leaks(answer, victim, [kernel])
            assert not found, (attempt, answer.status_code, found)
            if answer.status_code == 200 and answer.url.path == PAGE + "api/me":
                assert answer.json()["user"] == attacker, attempt
        print(f"1,000 attempts, answers by status: {dict(sorted(outcomes.items()))}")
        assert outcomes.get(401, 0) >= 1  # the exporter's API, without its token
