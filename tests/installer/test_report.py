"""`dlcourse-install report --since DATE`: the term per student, from a real Prometheus.

The live tests give Prometheus three days of known history (promtool's own backfill:
`promtool tsdb create-blocks-from openmetrics`), behind basic auth as installed, and run the
real command line against it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest

from dlcourse_installer import report
from dlcourse_installer.rendered import webauth
from dlcourse_testing.alerting import Process, find_tool, http_ok, wait_until
from dlcourse_testing.exporter import free_port

NOW = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_since_is_a_date_in_the_past():
    assert report.parse_since("2026-09-01T00:00+00:00", NOW) == dt.datetime(
        2026, 9, 1, tzinfo=dt.timezone.utc
    )
    for bad in ("last monday", "2026-13-01", "2026-10-02"):
        with pytest.raises(report.ReportError) as refused:
            report.parse_since(bad, NOW)
        assert "\n" not in str(refused.value)


def test_the_table_and_the_csv_hold_the_same_rows():
    rows = [report.Row("ada", (12.345, 6.0, 3.0, 0.0)), report.Row("alan", (0.0, 20.0, 0, 2))]
    table = report.render_table(rows, NOW)
    assert table.splitlines()[1].split() == [
        "student", "GPU-hours", "peak", "GPU", "memory", "GiB", "crashes", "idle", "culls",
    ]  # fmt: skip
    assert table.splitlines()[3].split() == ["ada", "12.35", "6.0", "3", "0"]
    assert report.render_csv(rows).splitlines() == [
        "student,gpu_hours,peak_gpu_memory_gib,crashes,idle_culls",
        "ada,12.35,6.0,3,0",
        "alan,0.00,20.0,0,2",
    ]
    assert "no student" in report.render_table([], NOW)


def test_a_credential_file_it_cannot_read_is_one_line_naming_staff(tmp_path):
    with pytest.raises(report.ReportError) as refused:
        report.credentials(str(tmp_path / "instructor.netrc"), "127.0.0.1")
    assert "staff only" in str(refused.value) and "\n" not in str(refused.value)


# --- live: a real Prometheus with three days of history ------------------------------------

STEP = 60  # one sample a minute
DAYS = 3
GIB = 1024**3


def openmetrics(end: float) -> str:
    """ada at 50 % for three days, her exporter restarting 1.5 days ago; grace crashing
    three times in the last day; alan with two idle culls and a 20 GiB peak 2 days ago."""
    start = end - DAYS * 86400
    lines = ["# TYPE dlcourse_user_gpu_seconds counter"]
    gpu = 'gpu="0",uuid="GPU-a"'
    restart = end - 1.5 * 86400
    for t in range(int(start), int(end), STEP):
        base = start if t < restart else restart
        lines.append(f'dlcourse_user_gpu_seconds_total{{user="ada",{gpu}}} {(t - base) * 0.5} {t}')
    lines.append("# TYPE dlcourse_user_kernel_crashes counter")
    for t in range(int(start), int(end), STEP):
        crashes = sum(t >= end - h * 3600 for h in (20, 10, 2))
        series = 'dlcourse_user_kernel_crashes_total{user="grace",signal="SIGSEGV"}'
        lines.append(f"{series} {crashes} {t}")
    lines.append("# TYPE dlcourse_user_gpu_idle_culls counter")
    for t in range(int(start), int(end), STEP):
        culls = sum(t >= end - h * 3600 for h in (30, 5))
        lines.append(f'dlcourse_user_gpu_idle_culls_total{{user="alan"}} {culls} {t}')
    lines.append("# TYPE user:dlcourse_user_gpu_memory_used_bytes:sum gauge")
    for t in range(int(start), int(end), STEP):
        peak = 20 * GIB if end - 49 * 3600 <= t < end - 47 * 3600 else 4 * GIB
        lines.append(f'user:dlcourse_user_gpu_memory_used_bytes:sum{{user="alan"}} {peak} {t}')
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def report_history(tmp_path_factory):
    prometheus, promtool = find_tool("prometheus"), find_tool("promtool")
    if prometheus is None or promtool is None:
        pytest.skip("prometheus and promtool are not installed (scripts/setup-system.sh)")
    work = tmp_path_factory.mktemp("report")
    end = time.time() - 120  # Prometheus refuses nothing from the past, everything ahead
    (work / "report_history.om").write_text(openmetrics(end))
    data = work / "data"
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics",
                    str(work / "report_history.om"), str(data)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    password = "instructor-secret"
    (work / "web.yml").write_text(webauth.web_config({"instructor": webauth.bcrypt_hash(password)}))
    port = free_port()
    (work / "prometheus.yml").write_text("global: {}\n")
    server = Process("prometheus", [prometheus, f"--config.file={work / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={data}",
                                    "--storage.tsdb.retention.time=200d",
                                    f"--web.listen-address=127.0.0.1:{port}",
                                    f"--web.config.file={work / 'web.yml'}"], work)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/-/ready", ("instructor", password)), 60,
                   lambda: f"prometheus ready\n{server.log_tail()}")  # fmt: skip
        netrc = work / "instructor.netrc"
        netrc.touch(mode=0o600)
        netrc.write_text(webauth.netrc("127.0.0.1", "instructor", password))
        yield url, netrc, end
    finally:
        server.stop()


STUDENT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}


def run_report(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dlcourse_installer", "report", *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if user is not None:
        argv = ["runuser", "-u", user, "--", *argv]
        # A student's run is the product alone: the coverage hooks in root's environment
        # would write their data where a student cannot, a second line on stderr.
        env = STUDENT_ENV
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def since(end: float, days: float) -> str:
    return dt.datetime.fromtimestamp(end - days * 86400, dt.timezone.utc).isoformat()


def test_the_last_day_as_a_table(report_history):
    url, netrc, end = report_history
    done = run_report("--since", since(end, 1), "--prometheus", url, "--netrc", str(netrc))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[3:]}
    assert set(rows) == {"ada", "alan", "grace"}
    assert float(rows["ada"][0]) == pytest.approx(12.0, rel=0.02)  # 24 h at 50 %
    assert rows["grace"][2] == "3" and rows["alan"][3] == "1"
    assert rows["alan"][1] == "4.0"  # the 20 GiB peak was two days ago


def test_two_days_as_csv_across_an_exporter_restart(report_history):
    url, netrc, end = report_history
    done = run_report("--since", since(end, 2), "--csv", "--prometheus", url, "--netrc", str(netrc))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "student,gpu_hours,peak_gpu_memory_gib,crashes,idle_culls"
    rows = {line.split(",")[0]: line.split(",")[1:] for line in lines[1:]}
    # The counter restarted from 0 1.5 days ago: increase() adds both stretches.
    assert float(rows["ada"][0]) == pytest.approx(24.0, rel=0.02)
    assert rows["alan"][1:] == ["20.0", "0", "2"]


def test_a_wrong_password_is_one_line(report_history, tmp_path):
    url, _, end = report_history
    wrong = tmp_path / "wrong.netrc"
    wrong.write_text(webauth.netrc("127.0.0.1", "instructor", "not-it"))
    done = run_report("--since", since(end, 1), "--prometheus", url, "--netrc", str(wrong))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "refused the instructor's password" in done.stderr


def test_a_student_is_refused_in_one_line(report_history, make_linux_user):
    url, netrc, end = report_history
    student = make_linux_user()
    # The staff command as a student needs the checkout's Python open to other accounts,
    # as an installed product's is (tests/testing/test_private_checkout.py: not a clone's).
    if subprocess.run(["runuser", "-u", student.pw_name, "--", sys.executable, "-c", ""],
                      env=STUDENT_ENV, capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("this checkout's Python is closed to other accounts (a 0700 clone)")
    done = run_report("--since", since(end, 1), "--prometheus", url, "--netrc", str(netrc),
                      user=student.pw_name)  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "staff only" in done.stderr
    assert done.stdout == ""
