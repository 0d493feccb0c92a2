"""The GPU idle culler on a real hub with real kernels: an idle kernel is warned (the page
says so with the time left), then shut down through the student's server API and its memory
leaves the exporter's figures; a busy kernel and a process outside any kernel are untouched.

Thresholds come through the same config.yaml a lecturer edits (`dlcourse.gpu_idle_*`), in
fractions of a minute: warned after 6 s at 0 %, shut down 12 s later.
"""

from __future__ import annotations

import pwd
import subprocess
import time

import pytest

from dlcourse_installer.rendered.students import CULLER_SERVICE
from dlcourse_testing.exporter import value
from dlcourse_testing.student_course import GIB
from fakenvml import Process

IDLE = {"gpu_idle_cull": True, "gpu_idle_warn": 0.1, "gpu_idle_grace": 0.2}


def kernel_ids(hub, user: str) -> set[str]:
    return {k["id"] for k in hub.kernels(user)}


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_the_hub_starts_the_culler_because_config_yaml_says_so(student_course):
    assert len(student_course.hub.children(f"JUPYTERHUB_SERVICE_NAME={CULLER_SERVICE}")) == 1


@pytest.fixture
def own_process(student_course):
    """A student's program outside any kernel (a script in a terminal)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(user: str) -> subprocess.Popen[bytes]:
        account = pwd.getpwnam(user)
        process = subprocess.Popen(["sleep", "600"], user=account.pw_uid,
                                   group=account.pw_gid, env={"JUPYTERHUB_USER": user})  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_an_idle_kernel_is_warned_then_shut_down_and_nothing_else(student_course, own_process):
    hub = student_course.hub
    student = hub.add_user()
    hub.start_server(student)
    idle, busy = hub.start_kernel(student), hub.start_kernel(student)
    script = own_process(student)
    student_course.gpus(
        [Process(hub.kernel_pid(student, idle), 2 * GIB, 0),
         Process(hub.kernel_pid(student, busy), 2 * GIB, 60),
         Process(script.pid, 2 * GIB, 0)],
        utilization=60,
    )  # fmt: skip
    with hub.login(student) as browser:
        page = student_course.wait_page(
            browser,
            lambda a: any(k["kernel_id"] == idle and k["idle"]["warned"] for k in a["kernels"]),
        )
        warned = next(k for k in page["kernels"] if k["kernel_id"] == idle)
        assert 0 < warned["idle"]["seconds_left"] <= 12 and page["culling"]["on"]
        assert next(k for k in page["kernels"] if k["kernel_id"] == busy)["idle"]["phase"] == (
            "active"
        )
        assert [p["pid"] for p in page["other_gpu_processes"]] == [script.pid]

        wait(lambda: idle not in kernel_ids(hub, student), 60, "the idle kernel shut down")
        shut_down = time.monotonic()
        student_course.wait_page(
            browser, lambda a: idle not in {k["kernel_id"] for k in a["kernels"]}, timeout=30
        )
        gone = time.monotonic() - shut_down
        print(f"the culled kernel's memory left the exporter's figures {gone:.1f} s after")
        assert gone < 30  # its memory left the exporter's figures

    assert busy in kernel_ids(hub, student)  # never touched
    assert script.poll() is None  # reported, not killed
    samples = student_course.scrape()
    assert value(samples, "dlcourse_user_gpu_idle_culls_total", user=student) == 1
    assert f"shut down kernel {idle} of {student}" in hub.log_file.read_text()


def test_activity_on_the_gpu_resets_the_clock(student_course):
    hub = student_course.hub
    student = hub.add_user()
    hub.start_server(student)
    kernel = hub.start_kernel(student)
    pid = hub.kernel_pid(student, kernel)
    student_course.gpus([Process(pid, 2 * GIB, 0)])
    with hub.login(student) as browser:
        first = student_course.wait_page(
            browser, lambda a: any(k["idle"]["warned"] for k in a["kernels"])
        )["kernels"][0]
        student_course.gpus([Process(pid, 2 * GIB, 30)], utilization=30)  # it trains again
        student_course.wait_page(
            browser, lambda a: all(k["idle"]["phase"] == "active" for k in a["kernels"])
        )
        busy_until = time.time()
        student_course.gpus([Process(pid, 2 * GIB, 0)])  # and rests again
        second = student_course.wait_page(
            browser, lambda a: any(k["idle"]["warned"] for k in a["kernels"])
        )["kernels"][0]
    # A new idle spell, warned after its own 6 s, with a whole grace ahead of it.
    assert second["gpu_idle_since"] >= busy_until - 2 > first["gpu_idle_since"]
    assert second["idle"]["seconds_left"] > 6
    assert kernel in kernel_ids(hub, student)
