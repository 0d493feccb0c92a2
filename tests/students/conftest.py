"""A live course for the students' side (dlcourse_testing.student_course), one per test
module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dlcourse_testing.student_course import StudentCourse


@pytest.fixture(scope="module")
def student_course(user_env, fake_nvml_dir, tmp_path_factory, request) -> Iterator[StudentCourse]:
    idle = getattr(request.module, "IDLE", {})
    prometheus = getattr(request.module, "PROMETHEUS", False)
    course = StudentCourse(tmp_path_factory.mktemp("students"), user_env, fake_nvml_dir,
                           idle=idle, prometheus=prometheus)  # fmt: skip
    try:
        yield course
    finally:
        course.close()
