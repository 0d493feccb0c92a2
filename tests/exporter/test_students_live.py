"""Each student's own view through the real exporter (issue 23): real ipykernel kernels of
a real account (root only) on the stand-in GPUs, read through the API the status page and
the culler use, and through /metrics.

- a kernel whose process holds GPU memory at 0 % shows ``gpu_idle_since``; activity resets
  it; the student's GPU process outside any kernel is reported, never as a kernel;
- culls are counted once per kernel, only with the culler's token, only for a kernel the
  exporter saw for that student;
- each way a kernel dies, provoked for real (``dlcourse_testing.kernel_deaths``), shows with
  the right reason within 10 s;
- two students sharing a GPU with known square-wave loads each get their own GPU time,
  within 5 %.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dlcourse_exporter.sources.kernel_errors import SUFFIX
from dlcourse_testing.alerting import wait_until
from dlcourse_testing.exporter import AUTH, RunningExporter, value
from dlcourse_testing.kernel_deaths import (
    DEATHS,
    EXIT_CODE,
    memory_cage,
    memory_hierarchy,
    provoke,
)
from dlcourse_testing.kernels import KernelDriver
from fakenvml import Gpu, Process, Scenario
from fakenvml.scenario import default_uuid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real accounts")

GIB = 1024**3
GPU0 = default_uuid(0)
DEATH_SECONDS = 10.0  # the promise: the reason shows within 10 s


@dataclass
class Student:
    account: object
    hub_user: str
    driver: KernelDriver
    user_env: Path

    def start_process(self) -> subprocess.Popen:
        """A process of the student outside any kernel (a script in a terminal)."""
        return subprocess.Popen(
            ["sleep", "600"],
            user=self.account.pw_uid,
            group=self.account.pw_gid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin", "JUPYTERHUB_USER": self.hub_user},
        )


@pytest.fixture
def student(make_linux_user, user_env) -> Iterator[Student]:
    extension = user_env / "etc" / "ipython" / "dlcourse_kernel_gpu_errors.py"
    assert extension.exists(), f"{extension} missing: run `make userenv`"
    account = make_linux_user()
    driver = KernelDriver(account, user_env, f"hub-{account.pw_name}")
    yield Student(account, f"hub-{account.pw_name}", driver, user_env)
    driver.close()


@pytest.fixture
def culler_token(tmp_path) -> tuple[Path, str]:
    token = secrets.token_hex(16)
    path = tmp_path / "culler-token"
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return path, token


def start(run_exporter, student: Student, culler_token_file: Path, *args: str) -> RunningExporter:
    # The account runs the hub user's server, as a spawner's shared account would: only then
    # is JUPYTERHUB_USER believed (sources/owners.py).
    return run_exporter(
        f"--user.spawner-account={student.account.pw_name}",
        f"--web.culler-token-file={culler_token_file}",
        *args,
    )


def get(exporter: RunningExporter, path: str, headers=AUTH) -> httpx.Response:
    return httpx.get(f"{exporter.url}{path}", headers=headers, timeout=5)


def wait_json(exporter: RunningExporter, path: str, predicate, what: str, timeout=60.0):
    """GET path (web token) until predicate(its JSON) holds; returns that JSON."""
    last: list = [None]

    def answered():
        response = get(exporter, path)
        last[0] = response.json() if response.status_code == 200 else None
        return last[0] is not None and predicate(last[0]) and last[0]

    return wait_until(
        answered, timeout, lambda: f"{what}; last {path}: {last[0]}\n{exporter.log_tail()}", 0.1
    )


def kernel_in(doc: dict, kernel_id: str) -> dict | None:
    return next((k for k in doc["kernels"] if k["kernel_id"] == kernel_id), None)


def write_gpu(path: Path, *processes: Process) -> Scenario:
    scenario = Scenario(gpus=[Gpu(memory_total=40 * GIB, processes=list(processes))])
    scenario.write(path)
    return scenario


def test_idle_kernel_other_process_and_culls(run_exporter, scenario_path, student, culler_token):
    token_file, token = culler_token
    kernel = student.driver.start()
    other = student.start_process()
    try:
        write_gpu(
            scenario_path, Process(kernel["pid"], 2 * GIB, sm_util=0), Process(other.pid, GIB)
        )
        exporter = start(run_exporter, student, token_file)
        me = f"/api/students/{student.hub_user}"

        doc = wait_json(
            exporter,
            me,
            lambda d: (k := kernel_in(d, kernel["id"])) is not None and k["gpu_idle_since"],
            "the kernel holding memory at 0 % to show gpu_idle_since",
        )
        mine = kernel_in(doc, kernel["id"])
        assert mine["gpu_memory_bytes"] == 2 * GIB and mine["gpus"] == [GPU0]
        assert mine["gpu_utilization_ratio"] == 0 and mine["started"] <= time.time()
        first_idle = mine["gpu_idle_since"]
        # The student's own process outside any kernel: reported, never a kernel.
        assert [p["pid"] for p in doc["other_gpu_processes"]] == [other.pid]
        assert doc["other_gpu_processes"][0]["gpu_memory_bytes"] == GIB
        assert doc["other_gpu_processes"][0]["command"] == "sleep 600"
        assert [k["kernel_id"] for k in doc["kernels"]] == [kernel["id"]]
        assert doc["gpus"] == [
            {
                "gpu": "0",
                "uuid": GPU0,
                "assigned": False,
                "memory_used_bytes": 3 * GIB,
                "utilization_ratio": 0.0,
            }
        ]
        idle = get(exporter, "/api/idle", {"Authorization": f"Bearer {token}"}).json()
        assert idle == [
            {
                "user": student.hub_user,
                "kernel_id": kernel["id"],
                "gpu_memory_bytes": 2 * GIB,
                "gpu_idle_since": first_idle,
                "gpus": [GPU0],
            }
        ]

        # Activity resets the clock; idle again, it starts afresh.
        write_gpu(
            scenario_path, Process(kernel["pid"], 2 * GIB, sm_util=40), Process(other.pid, GIB)
        )
        wait_json(
            exporter,
            me,
            lambda d: kernel_in(d, kernel["id"])["gpu_idle_since"] is None,
            "activity to reset gpu_idle_since",
        )
        assert get(exporter, "/api/idle").json() == []
        write_gpu(
            scenario_path, Process(kernel["pid"], 2 * GIB, sm_util=0), Process(other.pid, GIB)
        )
        again = wait_json(
            exporter,
            me,
            lambda d: kernel_in(d, kernel["id"])["gpu_idle_since"] is not None,
            "the idle clock to start again",
        )
        assert kernel_in(again, kernel["id"])["gpu_idle_since"] > first_idle

        # Culls: the culler's token only, once per kernel, only a kernel of that student.
        culls = f"{exporter.url}{me}/culls"
        culler = {"Authorization": f"Bearer {token}"}
        report = {"kernel_id": kernel["id"]}
        assert httpx.post(culls, json=report, headers=AUTH).status_code == 401  # Prometheus's
        assert httpx.post(culls, json=report).status_code == 401
        assert httpx.post(culls, json={"kernel_id": "nope"}, headers=culler).status_code == 404
        elsewhere = f"{exporter.url}/api/students/someone-else/culls"
        assert httpx.post(elsewhere, json=report, headers=culler).status_code == 404
        assert httpx.post(culls, content=b"{", headers=culler).status_code == 400
        assert httpx.post(culls, content=b" " * 5000, headers=culler).status_code == 413
        for _ in range(2):
            answer = httpx.post(culls, json=report, headers=culler)
            assert answer.status_code == 200 and answer.json()["idle_culls"] == 1
        exporter.wait_for(
            lambda s: value(s, "dlcourse_user_gpu_idle_culls_total", user=student.hub_user) == 1,
            what="the cull on /metrics",
        )
        assert wait_json(exporter, me, lambda d: d["idle_culls"] == 1, "the cull on the API")

        # Nothing for anyone without the web token; the culler's token reads /api/idle only.
        for path in (me, "/api/idle", "/metrics", "/api/class"):
            assert get(exporter, path, {}).status_code == 401, path
            assert get(exporter, path, {"Authorization": "Bearer x"}).status_code == 401, path
        for path in (me, "/metrics", "/api/class"):
            assert get(exporter, path, culler).status_code == 401, path
        assert get(exporter, "/api/students/nobody-here").status_code == 404
    finally:
        other.kill()
        other.wait()


def test_a_culler_token_equal_to_the_web_token_is_refused(run_exporter, tmp_path):
    from dlcourse_testing.exporter import token_file

    with pytest.raises(RuntimeError, match="the culler's token must be its own"):
        run_exporter(f"--web.culler-token-file={token_file()}")


@pytest.mark.parametrize("reason", DEATHS)
def test_each_death_shows_its_reason_within_10_s(
    reason, run_exporter, scenario_path, student, culler_token
):
    if reason == "oom_killer" and memory_hierarchy() is None:
        pytest.skip("no memory cgroup controller here")
    cage_or_not = memory_cage(student.hub_user) if reason == "oom_killer" else nullcontext()
    with cage_or_not as cage:
        if cage is not None:
            cage.put(student.driver.pid)  # the server, so its kernels start inside
        try:
            check_death(reason, run_exporter, scenario_path, student, culler_token[0])
        finally:
            student.driver.close()  # out of the cage before it goes


def check_death(reason, run_exporter, scenario_path, student, culler_token_file) -> None:
    kernel = student.driver.start()
    scenario = write_gpu(scenario_path, Process(kernel["pid"], 2 * GIB, sm_util=10))
    exporter = start(run_exporter, student, culler_token_file)
    me = f"/api/students/{student.hub_user}"
    wait_json(
        exporter,
        me,
        lambda d: (k := kernel_in(d, kernel["id"])) is not None and k["gpus"] == [GPU0],
        "the kernel on GPU 0",
    )
    provoked = time.time()
    provoke(
        reason,
        kernel["pid"],
        lambda code, wait: student.driver.run(kernel["id"], code, wait),
        scenario=scenario,
        scenario_path=scenario_path,
    )
    doc = wait_json(exporter, me, lambda d: d["deaths"], f"the {reason} death", timeout=30)
    seen = time.time()
    (death,) = doc["deaths"]
    assert death["kernel_id"] == kernel["id"] and death["reason"] == reason, death
    assert provoked - 1 <= death["at"] <= seen
    assert seen - provoked <= DEATH_SECONDS, f"shown {seen - provoked:.1f} s after"
    assert death["detail"] == expected_detail(reason), death
    samples = exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_user_kernel_deaths_total", user=student.hub_user, reason=reason) == 1
        ),
        what=f"dlcourse_user_kernel_deaths_total{{reason={reason}}} == 1",
    )
    deaths = sum(
        v for (n, labels), v in samples.items() if n == "dlcourse_user_kernel_deaths_total"
    )
    crashes = sum(
        v for (n, labels), v in samples.items() if n == "dlcourse_user_kernel_crashes_total"
    )
    assert deaths == crashes == 1  # the same death, split by reason
    if reason == "cuda_oom":
        # The kernel's note stays beside its connection file (it died): only its own.
        assert Path(kernel["connection_file"].removesuffix(".json") + SUFFIX).exists()


def expected_detail(reason: str) -> str:
    return {
        "oom_killer": "killed by the out-of-memory killer at its memory limit of 256.0 MiB",
        "cuda_oom": "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
        "capacity of 39.39 GiB of which 1.20 GiB is free.",
        "xid": f"GPU error XID 31 on GPU 0 ({GPU0}), then killed by SIGABRT (Aborted)",
        "signal": "killed by SIGSEGV (Segmentation fault)",
        "exit": f"exited with code {EXIT_CODE}",
    }[reason]
