"""Step 2: the packages the steps run before TLJH's bootstrap installs its own."""

from __future__ import annotations

from dlcourse_installer.checklist.step import Context, Step
from dlcourse_installer.machine import apt

# git: TLJH's bootstrap resolves --version with it.
BASE_PACKAGES = ["python3", "python3-venv", "git", "curl"]


def ensure_base_packages(ctx: Context) -> None:
    installed = apt.ensure_packages(ctx.host, BASE_PACKAGES)
    if installed:
        ctx.note(f"new packages: {' '.join(installed)}")


STEP = Step("base-packages", "Base packages", ensure_base_packages)
