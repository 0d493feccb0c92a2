"""Each student's own page, my-gpu: every hub user gets in through the hub's OAuth and sees
their own data; the staff pages stay staff-only."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from dlcourse_installer.rendered.staff import STATUS_SERVICE
from dlcourse_testing.browser import CHROMIUM, Browser
from dlcourse_testing.student_course import GIB, PAGE
from fakenvml import Process

# The page reads GPU-hours from a real Prometheus; the culler is on, warning after 6 s at 0 %
# and waiting 10 min more, so a warned kernel stays for the test.
PROMETHEUS = True
IDLE = {"gpu_idle_cull": True, "gpu_idle_warn": 0.1, "gpu_idle_grace": 10}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "artifacts" / "student-page.png"


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


def test_gpu_hours_come_from_prometheus(student_course):
    hub = student_course.hub
    student = hub.add_user()
    hub.start_server(student)
    kernel = hub.start_kernel(student)
    student_course.add_process(Process(hub.kernel_pid(student, kernel), 4 * GIB, 100))
    with hub.login(student) as browser:
        # The page asks Prometheus at most once a minute per student.
        page = student_course.wait_page(
            browser, lambda a: a["usage"] and a["usage"]["week"]["gpu_hours"] > 0, timeout=150
        )
    week, term = page["usage"]["week"], page["usage"]["term"]
    assert 0 < week["gpu_hours"] < 0.1 and week["gpu_memory_gib_hours"] > 0
    assert term["gpu_hours"] >= week["gpu_hours"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_a_student_sees_their_page_in_a_browser(student_course, tmp_path):
    hub = student_course.hub
    student = hub.add_user()
    hub.start_server(student)
    busy = hub.start_session(student, "train-resnet.ipynb")
    idle = hub.start_session(student, "explore-data.ipynb")
    doomed = hub.start_session(student, "custom-cuda-op.ipynb")
    for kernel, memory, util in ((busy, 6 * GIB, 70), (idle, 2 * GIB, 0), (doomed, GIB, 20)):
        student_course.add_process(Process(hub.kernel_pid(student, kernel), memory, util))
    with hub.login(student) as api:
        student_course.wait_page(api, lambda a: len(a["kernels"]) == 3)
        os.kill(hub.kernel_pid(student, doomed), signal.SIGSEGV)
        student_course.wait_page(
            api,
            lambda a: (
                a["deaths"]
                and any(k["idle"]["warned"] for k in a["kernels"])
                and a["usage"]
                and a["usage"]["week"]["gpu_hours"] > 0
            ),
            timeout=150,
        )
    browser = Browser(tmp_path / "profile")
    try:
        student_course.browse_as(browser, student, PAGE)
        browser.wait_for("document.querySelectorAll('#deaths .death').length === 1")
        text = browser.evaluate("document.body.innerText")
        assert f"hub user {student}" in text and "The kernel crashed" in text
        assert "shut down in" in text and "last 7 days" in text
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT)
    finally:
        browser.close()
