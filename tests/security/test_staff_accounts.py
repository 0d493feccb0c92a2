"""A TA from the roster is staff, and no student can claim a TA's account.

A real JupyterHub 5 with TLJH's own authenticator settings (FirstUseAuthenticator, no new
accounts, the roster as the allowed users: tljh/configurer.py of TLJH 2.0.0) loads the course
and staff snippets `dlcourse-install render --roster` writes; TLJH's password store is seeded
from the rendered password files the way the installer does it (hub_passwords.py).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from dlcourse_testing.exporter import free_port
from dlcourse_testing.hub import HubError, LiveHub, tljh_authenticator
from dlcourse_testing.rendered import Site, render_site

STATUS = "/services/dlcourse-status/"
CONFIG_D = "/opt/tljh/config/jupyterhub_config.d"


@dataclass
class Course:
    hub: LiveHub
    site: Site
    ta: str
    student: str

    def ta_password(self) -> str:
        return self.site.read(f"/etc/dlcourse/hub-passwords/{self.ta}").strip()


@pytest.fixture(scope="module")
def course(user_env, tmp_path_factory) -> Iterator[Course]:
    work = tmp_path_factory.mktemp("staff-accounts")
    ta, student = (f"dlct-{uuid.uuid4().hex[:8]}" for _ in range(2))
    roster = work / "roster.csv"
    roster.write_text(f"username,section,role\n{student},Monday,student\n{ta},,ta\n")
    hub = LiveHub(work / "hub", user_env)
    site = render_site(
        work / "site", "--admin", "teacher", "--roster", str(roster), relocate=True,
        ports={"hub": hub.hub_port, "status": free_port(), "exporter": free_port()},
    )  # fmt: skip
    store = work / "state" / "passwords.dbm"
    # What the installer runs in the hub's Python before the hub learns the roster.
    subprocess.run(
        [sys.executable, "-m", "dlcourse_installer.hub.hub_passwords",
         str(site.local("/etc/dlcourse/hub-passwords")), str(store)],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        hub.add_config(tljh_authenticator(store, [student, ta]))
        for snippet in ("dlcourse-course.py", "dlcourse-staff.py"):
            hub.add_config(site.read(f"{CONFIG_D}/{snippet}"))
        hub.start()
        hub.wait_for_service("dlcourse-status")
        yield Course(hub, site, ta, student)
    finally:
        hub.close()


def test_the_roster_makes_the_ta_a_member_of_the_staff_group(course):
    group = course.hub.api("GET", "/groups/instructors").json()
    assert group["users"] == [course.ta]
    assert course.site.owners[f"/etc/dlcourse/hub-passwords/{course.ta}"] == ("root", "root", 0o600)


def test_nobody_can_claim_the_tas_account(course):
    with pytest.raises(HubError, match="refused"), course.hub.login(course.ta, "claimed-first"):
        pass


def test_the_ta_logs_in_with_the_generated_password_and_sees_the_class(course):
    with course.hub.login(course.ta, course.ta_password()) as browser:
        page = browser.get(STATUS, follow_redirects=True)
        assert page.status_code == 200 and "<h1>Class status</h1>" in page.text


def test_a_student_sets_a_password_at_first_login_and_gets_403(course):
    with course.hub.login(course.student, "students-own-password") as browser:
        refused = browser.get(STATUS, follow_redirects=True)
        assert refused.status_code == 403
    # The password the student chose is theirs from now on.
    with pytest.raises(HubError, match="refused"), course.hub.login(course.student, "another"):
        pass


def test_a_name_not_on_the_roster_cannot_log_in(course):
    stranger = f"dlct-{uuid.uuid4().hex[:8]}"
    with pytest.raises(HubError, match="refused"), course.hub.login(stranger, "whatever-123"):
        pass
    assert httpx.get(course.hub.public_url + STATUS).status_code == 302
