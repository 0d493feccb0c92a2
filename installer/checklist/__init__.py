"""The installation, as the checklist a careful sysadmin would follow by hand.

Each step looks before it acts, so a second run changes nothing. The order follows the seed
guide (base packages, driver, reboot, TLJH, packages for all users) with the course, the
exporter and monitoring after it. Each step's module declares it (``STEP``): the options it
reads, the parts of the generated files it writes, the releases it installed (step.py); the
runner walks them (runner.py) and the state remembers which are done (state.py).
"""

from dlcourse_installer.checklist import (
    base_packages,
    course,
    course_packages,
    exporter,
    final_check,
    monitoring,
    nvidia_driver,
    preflight,
    tljh,
    user_environment,
)

STEPS = [
    preflight.STEP,
    base_packages.STEP,
    nvidia_driver.STEP,
    tljh.STEP,
    user_environment.STEP,
    course_packages.STEP,
    course.STEP,
    exporter.STEP,
    monitoring.STEP,
    final_check.STEP,
]
