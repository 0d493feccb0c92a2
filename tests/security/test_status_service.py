"""The class-status page as a hub service: staff get in through the hub's OAuth, nobody else.

A real JupyterHub 5 loads the hub snippet `dlcourse-install render` writes (services and
the staff role); the hub starts the status service, which reads a real exporter with the
rendered bearer token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dlcourse_installer.rendered import staff
from dlcourse_testing.alerting import wait_until
from dlcourse_testing.browser import CHROMIUM, Browser
from dlcourse_testing.exporter import RunningExporter, free_port
from dlcourse_testing.hub import LiveHub
from dlcourse_testing.leftovers import terminate
from dlcourse_testing.ports import free_privileged_port, started_on_a_taken_port
from dlcourse_testing.rendered import render_site
from fakenvml import Gpu, Scenario

STATUS = f"/services/{staff.STATUS_SERVICE}/"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "artifacts" / "class-status.png"


@dataclass
class Course:
    hub: LiveHub
    exporter: RunningExporter
    token: Path
    admin: str
    ta: str
    student: str


@pytest.fixture(scope="module")
def course(user_env, fake_nvml_dir, tmp_path_factory) -> Iterator[Course]:
    work = tmp_path_factory.mktemp("status-service")
    hub = LiveHub(work / "hub", user_env)
    ports = {"exporter": free_port(), "status": free_port(), "hub": hub.hub_port}
    site = render_site(work / "site", "--admin", "teacher", relocate=True, ports=ports)
    token = site.local("/etc/dlcourse/exporter-token")
    scenario = work / "gpus.scn"
    Scenario(gpus=[Gpu(utilization_gpu=40)]).write(scenario)
    exporter = RunningExporter(
        [
            f"--web.token-file={token}",
            f"--hub.url={hub.api_url}",
            f"--hub.token-file={hub.token_file()}",
            "--hub.interval=1",
            "--collection.interval=0.5",
        ],
        nvml_dir=fake_nvml_dir,
        scenario=scenario,
        log_path=work / "exporter.log",
        port=ports["exporter"],
    )
    try:
        hub.add_config(site.read("/opt/tljh/config/jupyterhub_config.d/dlcourse-staff.py"))
        hub.start()
        admin = hub.add_user(admin=True)
        ta = hub.add_user(groups=["instructors"])
        student = hub.add_user(groups=["section-monday"])
        hub.wait_for_service(staff.STATUS_SERVICE)
        yield Course(hub, exporter, token, admin, ta, student)
    finally:
        exporter.stop()
        hub.close()


def test_anonymous_visitors_are_sent_to_the_hub_login(course):
    with httpx.Client(base_url=course.hub.public_url, follow_redirects=True) as anonymous:
        landed = anonymous.get(STATUS)
    assert landed.url.path == "/hub/login", landed.url
    assert "Class status" not in landed.text


def test_staff_see_the_class_after_the_oauth_round_trip(course):
    for name in (course.ta, course.admin):
        with course.hub.login(name) as browser:
            page = browser.get(STATUS, follow_redirects=True)
            assert page.status_code == 200 and "<h1>Class status</h1>" in page.text
            # The round trip went through the hub's authorize endpoint and back.
            hops = [str(r.url) for r in page.history]
            assert any("/hub/api/oauth2/authorize" in h for h in hops), hops
            assert page.headers["cache-control"] == "no-store"
            students = wait_for_students(browser, {course.student, course.ta})
            assert course.student in students


def wait_for_students(browser: httpx.Client, names: set[str], timeout: float = 30) -> set[str]:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        answer = browser.get(STATUS + "api/class")
        assert answer.status_code == 200, answer.text
        seen = {s["user"] for s in answer.json()["students"]}
        if names <= seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{names} not all on the status page: {seen}")


def test_a_student_gets_403_and_no_data(course):
    with course.hub.login(course.student) as browser:
        refused = browser.get(STATUS, follow_redirects=True)
        assert refused.status_code == 403, refused.url
        assert refused.url.path == "/hub/api/oauth2/authorize"
        assert course.ta not in refused.text and "Class status" not in refused.text
        api = browser.get(STATUS + "api/class", follow_redirects=True)
        assert api.status_code == 403 and "students" not in api.text


def test_the_hub_shows_the_service_link_to_staff_only(course):
    with course.hub.login(course.ta) as ta, course.hub.login(course.student) as student:
        assert STATUS in ta.get("/hub/home").text
        assert STATUS not in student.get("/hub/home").text


def test_the_exporter_token_stays_out_of_the_hub_log(course):
    token = course.token.read_text().strip()
    assert token and token not in course.hub.log_file.read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_a_staff_member_sees_the_page_in_a_browser(course, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(course.hub.public_url + STATUS)
        # Not logged in: the hub's login form, with the status page as where to go next.
        browser.wait_for("document.querySelector('#username_input') !== null")
        browser.evaluate(
            f"document.querySelector('#username_input').value = {course.ta!r};"
            "document.querySelector('#password_input').value = 'any password';"
            "document.querySelector('#login_submit').click(); true"
        )
        rows = browser.wait_for(
            "Array.from(document.querySelectorAll('#students tr[data-user]'))"
            ".map(r => r.dataset.user)"
            f".filter(u => u === {course.student!r}).length"
        )
        assert rows == 1
        assert browser.evaluate("location.pathname") == STATUS
        assert "GPU 0: 40 % busy" in browser.evaluate("document.body.innerText")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT)
        assert SCREENSHOT.stat().st_size > 10_000
    finally:
        browser.close()


def status_service(
    env: dict[str, str], prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "dlcourse_status"],
        env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def settings(port: int) -> dict[str, str]:
    return {"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
            "JUPYTERHUB_SERVICE_PREFIX": STATUS, "DLCOURSE_EXPORTER_TOKEN": "t"}  # fmt: skip


@pytest.mark.live
def test_bad_settings_are_one_line_and_exit_2():
    result = status_service({"JUPYTERHUB_SERVICE_URL": "http://127.0.0.1"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    for missing in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX", "EXPORTER_TOKEN"):
        assert missing in result.stderr
    # A port below 1024 without the right to bind it (as root: the capability taken away).
    port = free_privileged_port()
    without = ("setpriv", "--bounding-set=-net_bind_service", "--") if os.geteuid() == 0 else ()
    result = status_service(settings(port), prefix=without)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Permission denied" in result.stderr


@pytest.mark.live
def test_a_port_in_use_is_waited_for(tmp_path):
    """Issue 21: whatever held the port (the page before, still stopping) lets go, and the
    page serves at once; before, it exited 2 and waited for the hub's next poll (30 s)."""
    log = tmp_path / "status.log"
    service, port = started_on_a_taken_port(
        lambda port: [sys.executable, "-m", "dlcourse_status"],
        log,
        env=lambda port: {"PATH": os.environ["PATH"], **settings(port)},
    )
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}{STATUS}"), 30, lambda: log.read_text())
    finally:
        terminate(service)


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.TransportError:
        return False
