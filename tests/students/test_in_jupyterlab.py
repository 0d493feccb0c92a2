"""The extension in a student's open JupyterLab (headless Chromium, the real JupyterLab 4 of
the users' environment, the installer's prebuilt extension): a warning when their notebook's
kernel holds GPU memory idle, with the notebook, the memory and the time left; an error within
10 s when a kernel died, with why and what to try; and "My GPU use" in the launcher."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dlcourse_testing.browser import CHROMIUM, Browser
from dlcourse_testing.student_course import GIB
from fakenvml import Process

# Warned after 6 s at 0 %; the shutdown would come a minute later, after this test.
IDLE = {"gpu_idle_cull": True, "gpu_idle_warn": 0.1, "gpu_idle_grace": 1}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "artifacts" / "jupyterlab-gpu.png"
TOASTS = "Array.from(document.querySelectorAll('.Toastify__toast')).map(t => t.innerText)"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def toast(browser: Browser, text: str, timeout: float) -> str:
    found = browser.wait_for(f"{TOASTS}.filter(t => t.includes({text!r})).join('\\n')", timeout)
    return found


def test_jupyterlab_tells_the_student_of_idle_memory_and_of_a_death(student_course, tmp_path):
    hub = student_course.hub
    student = hub.add_user()
    hub.start_server(student)
    idle = hub.start_session(student, "train-resnet.ipynb")
    doomed = hub.start_session(student, "segfault.ipynb")
    doomed_pid = hub.kernel_pid(student, doomed)
    student_course.gpus(
        [Process(hub.kernel_pid(student, idle), 3 * GIB, 0), Process(doomed_pid, GIB // 2, 50)],
        utilization=50,
    )  # fmt: skip
    browser = Browser(tmp_path / "profile")
    try:
        student_course.browse_as(browser, student, f"/user/{student}/lab")
        # JupyterLab is up with the extension: its launcher card.
        browser.wait_for("document.body.innerText.includes('My GPU use')", timeout=180)
        warning = toast(browser, "its kernel shuts down in", timeout=90)
        assert "train-resnet.ipynb" in warning and "3.0 GiB" in warning, warning

        os.kill(doomed_pid, signal.SIGSEGV)
        died = time.monotonic()
        death = toast(browser, "died at", timeout=30)
        took = time.monotonic() - died
        print(f"JupyterLab showed the death {took:.1f} s after it")
        assert "segfault.ipynb" in death and "The kernel crashed (killed by SIGSEGV" in death, death
        assert took <= 10, f"the death was shown {took:.1f} s after it"
        # What to try, in full: a click away (JupyterLab cuts notifications at 140 characters).
        browser.evaluate(
            "Array.from(document.querySelectorAll('.Toastify__toast button'))"
            ".find(b => b.innerText.includes('What to try')).click(); true"
        )
        advice = browser.wait_for(
            "Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText).join()"
        )
        assert "segfault.ipynb" in advice and "What to try: Often a compiled library" in advice
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.screenshot(SCREENSHOT)
    finally:
        browser.close()
