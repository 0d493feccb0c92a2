"""Each student's own page, my-gpu: every hub user gets in through the hub's OAuth and sees
their own data; the staff pages stay staff-only."""

from __future__ import annotations

import httpx

from dlcourse_installer.staff import STATUS_SERVICE
from dlcourse_testing.students import PAGE


def test_a_student_gets_through_the_oauth_to_their_own_page(student_course):
    student = student_course.hub.add_user(groups=["section-monday"])
    with student_course.hub.login(student) as browser:
        page = browser.get(PAGE, follow_redirects=True)
        assert page.status_code == 200 and "<h1>My GPU use</h1>" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
        hops = [str(r.url) for r in page.history]
        assert any("/hub/api/oauth2/authorize" in h for h in hops), hops
        answer = student_course.student_api(browser)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"] == student
        # The staff page still refuses them at the hub's authorize step.
        staff = browser.get(f"/services/{STATUS_SERVICE}/", follow_redirects=True)
        assert staff.status_code == 403 and staff.url.path == "/hub/api/oauth2/authorize"


def test_anonymous_visitors_are_sent_to_the_hub_login(student_course):
    with httpx.Client(base_url=student_course.hub.public_url, follow_redirects=True) as anonymous:
        landed = anonymous.get(PAGE + "api/me")
    assert landed.url.path == "/hub/login"


def test_the_hub_home_links_every_user_to_their_page(student_course):
    student = student_course.hub.add_user()
    with student_course.hub.login(student) as browser:
        assert PAGE in browser.get("/hub/home").text
