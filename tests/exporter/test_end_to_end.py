"""`dlcourse-exporter` as a subprocess over the stand-in NVML, scraped over HTTP.

Every GPU value is checked against the scenario that produced it; GPU processes are real
processes, owned (as root) by real Linux accounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from dlcourse_testing.exporter import AUTH, value
from fakenvml import Gpu, Process, Scenario, XidEvent, build_library

pytestmark = pytest.mark.live  # every test here starts a process

GIB = 1024**3


def two_gpu_class(pids: dict[str, list[int]]) -> Scenario:
    """GPU 0: alice trains hard, bob idles on memory; GPU 1: carol, with a thermal slowdown."""
    alice, bob, carol = pids["alice"], pids["bob"], pids["carol"]
    return Scenario(
        driver_version="550.54.15",
        cuda_version=12040,
        gpus=[
            Gpu(
                uuid="GPU-00000000-0000-0000-0000-000000000000",
                name="NVIDIA A100-SXM4-40GB",
                utilization_gpu=87,
                memory_total=40 * GIB,
                memory_used=14 * GIB,
                temperature=71,
                power_mw=312_500,
                power_limit_mw=400_000,
                clock_sm_mhz=1410,
                clock_mem_mhz=1215,
                ecc_corrected=3,
                ecc_uncorrected=1,
                processes=[
                    Process(alice[0], 8 * GIB, sm_util=60),
                    Process(alice[1], 2 * GIB, sm_util=25),
                    Process(bob[0], 4 * GIB, sm_util=0),
                ],
                xid_events=[XidEvent(1, 31), XidEvent(2, 31)],
            ),
            Gpu(
                uuid="GPU-11111111-1111-1111-1111-111111111111",
                name="NVIDIA A100-SXM4-40GB",
                utilization_gpu=40,
                memory_total=40 * GIB,
                memory_used=6 * GIB,
                temperature=83,
                clocks_event_reasons=0x20 | 0x4,  # sw_thermal + power_cap
                processes=[Process(carol[0], None, sm_util=40)],
            ),
        ],
    )


def start_class(sleeper, make_user) -> tuple[dict[str, list[int]], dict[str, str]]:
    """alice and bob are TLJH-style accounts (jupyter-<name>); carol is named by the hub env."""
    if os.geteuid() == 0:
        tag = uuid.uuid4().hex[:6]  # unique: other test runs may be creating accounts too
        names = {n: make_user(f"jupyter-{n}{tag}").pw_name for n in ("alice", "bob")}
        pids = {
            "alice": [sleeper(user=names["alice"]), sleeper(user=names["alice"])],
            "bob": [sleeper(user=names["bob"])],
        }
    else:
        pids = {"alice": [sleeper(hub_user="alice"), sleeper(hub_user="alice")]}
        pids["bob"] = [sleeper(hub_user="bob")]
    pids["carol"] = [sleeper(hub_user="carol")]
    hub_names = {"alice": "alice", "bob": "bob", "carol": "carol"}
    if os.geteuid() == 0:
        hub_names.update({n: account.removeprefix("jupyter-") for n, account in names.items()})
    return pids, hub_names


@pytest.fixture
def class_users(sleeper, request):
    make_user = request.getfixturevalue("make_linux_user") if os.geteuid() == 0 else None
    return start_class(sleeper, make_user)


def test_every_gpu_metric_matches_the_scenario(run_exporter, scenario_path, class_users):
    pids, names = class_users
    two_gpu_class(pids).write(scenario_path)
    exporter = run_exporter()
    samples = exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_gpu_xid_errors_total", gpu="0", xid="31") == 2
            and value(s, "dlcourse_collector_success", collector="processes") == 1
        ),
        what="XIDs and processes",
    )
    gpu0 = {"gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-000000000000"}
    gpu1 = {"gpu": "1", "uuid": "GPU-11111111-1111-1111-1111-111111111111"}
    info = value(
        samples,
        "dlcourse_gpu_info",
        **gpu0,
        name="NVIDIA A100-SXM4-40GB",
        driver_version="550.54.15",
        cuda_version="12.4",
    )
    assert info == 1
    assert value(samples, "dlcourse_gpu_up", **gpu0) == 1
    assert value(samples, "dlcourse_gpu_utilization_ratio", **gpu0) == pytest.approx(0.87)
    assert value(samples, "dlcourse_gpu_memory_used_bytes", **gpu0) == 14 * GIB
    assert value(samples, "dlcourse_gpu_memory_total_bytes", **gpu0) == 40 * GIB
    assert value(samples, "dlcourse_gpu_temperature_celsius", **gpu0) == 71
    assert value(samples, "dlcourse_gpu_power_watts", **gpu0) == pytest.approx(312.5)
    assert value(samples, "dlcourse_gpu_power_limit_watts", **gpu0) == 400
    assert value(samples, "dlcourse_gpu_clock_hertz", **gpu0, clock="sm") == 1410e6
    assert value(samples, "dlcourse_gpu_clock_hertz", **gpu0, clock="memory") == 1215e6
    assert value(samples, "dlcourse_gpu_ecc_errors_total", **gpu0, type="corrected") == 3
    assert value(samples, "dlcourse_gpu_ecc_errors_total", **gpu0, type="uncorrected") == 1
    assert value(samples, "dlcourse_gpu_clocks_event_active", **gpu0, reason="sw_thermal") == 0
    assert value(samples, "dlcourse_gpu_clocks_event_active", **gpu1, reason="sw_thermal") == 1
    assert value(samples, "dlcourse_gpu_clocks_event_active", **gpu1, reason="power_cap") == 1
    assert value(samples, "dlcourse_gpu_clocks_event_active", **gpu1, reason="hw_thermal") == 0

    alice, bob, carol = names["alice"], names["bob"], names["carol"]
    user_memory = "dlcourse_user_gpu_memory_used_bytes"
    assert value(samples, user_memory, user=alice, **gpu0) == 10 * GIB
    assert value(samples, user_memory, user=bob, **gpu0) == 4 * GIB
    assert value(samples, user_memory, user=carol, **gpu1) == 0  # NVML: not available
    assert value(samples, "dlcourse_user_gpu_processes", user=alice, **gpu0) == 2
    assert value(samples, "dlcourse_user_gpu_processes", user=carol, **gpu1) == 1
    utilization = "dlcourse_user_gpu_utilization_ratio"
    assert value(samples, utilization, user=alice, **gpu0) == pytest.approx(0.85)
    assert value(samples, utilization, user=bob, **gpu0) == 0
    assert value(samples, utilization, user=carol, **gpu1) == pytest.approx(0.40)
    assert value(samples, user_memory, user=alice, **gpu1) is None


def test_not_supported_fields_are_left_out(run_exporter, scenario_path):
    Scenario(
        gpus=[Gpu(not_supported={"temperature", "power", "ecc", "clocks_event_reasons"})]
    ).write(scenario_path)
    samples = run_exporter().wait_for(
        lambda s: value(s, "dlcourse_gpu_up", gpu="0") == 1, what="gpu up"
    )
    for name in (
        "dlcourse_gpu_temperature_celsius",
        "dlcourse_gpu_power_watts",
        "dlcourse_gpu_ecc_errors_total",
        "dlcourse_gpu_clocks_event_active",
    ):
        assert not [k for k in samples if k[0] == name], name
    assert value(samples, "dlcourse_gpu_power_limit_watts", gpu="0") == 400
    assert value(samples, "dlcourse_collector_success", collector="gpu") == 1


def test_lost_gpu_keeps_the_others_reporting(run_exporter, scenario_path):
    Scenario(gpus=[Gpu(utilization_gpu=10), Gpu(utilization_gpu=20)]).write(scenario_path)
    exporter = run_exporter()
    exporter.wait_for(lambda s: value(s, "dlcourse_gpu_up", gpu="1") == 1, what="gpu 1 up")
    uuid1 = next(
        dict(k[1])["uuid"]
        for k in exporter.scrape()
        if k[0] == "dlcourse_gpu_up" and dict(k[1])["gpu"] == "1"
    )

    # XID 79: the GPU fell off the bus; the event arrives as it is lost.
    lost = Gpu(utilization_gpu=20, lost=True, xid_events=[XidEvent(7, 79)])
    Scenario(gpus=[Gpu(utilization_gpu=10), lost]).write(scenario_path)
    samples = exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_gpu_up", gpu="1") == 0
            and value(s, "dlcourse_gpu_xid_errors_total", gpu="1", xid="79") == 1
        ),
        what="gpu 1 lost with its XID",
    )
    assert value(samples, "dlcourse_gpu_xid_errors_total", uuid=uuid1, xid="79") == 1
    assert value(samples, "dlcourse_gpu_up", gpu="1", uuid=uuid1) == 0  # keeps its identity
    assert value(samples, "dlcourse_gpu_utilization_ratio", gpu="1") is None
    assert value(samples, "dlcourse_gpu_up", gpu="0") == 1
    assert value(samples, "dlcourse_gpu_utilization_ratio", gpu="0") == pytest.approx(0.10)
    assert value(samples, "dlcourse_collector_success", collector="gpu") == 1


def test_driver_failure_degrades_gpu_collectors_and_recovers(run_exporter, scenario_path):
    Scenario(gpus=[Gpu()], init_error="DRIVER_NOT_LOADED").write(scenario_path)
    exporter = run_exporter()
    samples = exporter.scrape()
    assert value(samples, "dlcourse_collector_success", collector="gpu") == 0
    assert value(samples, "dlcourse_collector_success", collector="processes") == 0
    assert value(samples, "dlcourse_exporter_build_info") == 1
    assert not [k for k in samples if k[0] == "dlcourse_gpu_up"]

    Scenario(gpus=[Gpu()]).write(scenario_path)
    exporter.wait_for(
        lambda s: (
            value(s, "dlcourse_gpu_up", gpu="0") == 1
            and value(s, "dlcourse_collector_success", collector="processes") == 1
        ),
        timeout=20,
        what="recovery after the driver came back",
    )
    log = exporter.log()
    assert log.count("source nvml failed") == 1, log  # once per state change, not per cycle
    assert "source nvml recovered" in log


def test_missing_library_keeps_the_endpoint_up(run_exporter, tmp_path):
    exporter = run_exporter(nvml_dir=tmp_path / "empty")
    samples = exporter.scrape()
    assert value(samples, "dlcourse_collector_success", collector="gpu") == 0
    assert "NVML" in exporter.log()


def test_old_driver_without_v3_process_api(run_exporter, scenario_path, sleeper, tmp_path):
    old = build_library(
        tmp_path / "old",
        omit=[
            "nvmlDeviceGetComputeRunningProcesses_v3",
            "nvmlDeviceGetGraphicsRunningProcesses_v3",
        ],
    )
    pid = sleeper(hub_user="dave")
    Scenario(gpus=[Gpu(processes=[Process(pid, 3 * GIB, sm_util=10)])]).write(scenario_path)
    samples = run_exporter(nvml_dir=old).wait_for(
        lambda s: value(s, "dlcourse_user_gpu_processes", user="dave") == 1, what="dave via _v2"
    )
    assert value(samples, "dlcourse_user_gpu_memory_used_bytes", user="dave") == 3 * GIB


def test_vanished_process_is_skipped(run_exporter, scenario_path, sleeper):
    live = sleeper(hub_user="erin")
    Scenario(gpus=[Gpu(processes=[Process(live, GIB), Process(4_000_000, GIB)])]).write(
        scenario_path
    )
    samples = run_exporter().wait_for(
        lambda s: value(s, "dlcourse_user_gpu_processes", user="erin") == 1, what="erin"
    )
    assert value(samples, "dlcourse_collector_success", collector="processes") == 1
    assert len([k for k in samples if k[0] == "dlcourse_user_gpu_processes"]) == 1
    # Its memory is still NVML's: counted as unattributed, not dropped.
    assert value(samples, "dlcourse_gpu_unattributed_memory_bytes", gpu="0") == GIB
    assert value(samples, "dlcourse_gpu_unattributed_processes", gpu="0") == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_promtool_check_metrics_is_clean(run_exporter, scenario_path, class_users):
    pids, _ = class_users
    two_gpu_class(pids).write(scenario_path)
    exporter = run_exporter()
    exporter.wait_for(
        lambda s: value(s, "dlcourse_gpu_xid_errors_total", gpu="0", xid="31") == 2, what="xids"
    )
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exporter.scrape_text(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_openmetrics_when_asked(run_exporter, scenario_path):
    Scenario(gpus=[Gpu()]).write(scenario_path)
    exporter = run_exporter()
    text = exporter.scrape_text({"Accept": "application/openmetrics-text; version=1.0.0"})
    assert text.rstrip().endswith("# EOF") and text.count("# EOF") == 1


def test_gzip_when_asked(run_exporter, scenario_path):
    import gzip

    import httpx

    Scenario(gpus=[Gpu()]).write(scenario_path)
    exporter = run_exporter()
    url = f"{exporter.url}/metrics"
    with httpx.Client(headers=AUTH) as client:  # as Prometheus asks
        with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as zipped:
            compressed = b"".join(zipped.iter_raw())
        plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(compressed).startswith(b"# HELP dlcourse_exporter_build_info")
    assert plain.content.startswith(b"# HELP dlcourse_exporter_build_info")


def test_metrics_token(run_exporter, scenario_path, tmp_path):
    Scenario(gpus=[Gpu()]).write(scenario_path)
    token = tmp_path / "web-token"
    token.write_text("letmein\n")
    exporter = run_exporter(f"--web.token-file={token}")
    import httpx

    assert httpx.get(f"{exporter.url}/metrics").status_code == 401
    assert (
        httpx.get(f"{exporter.url}/metrics", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    ok = httpx.get(f"{exporter.url}/metrics", headers={"Authorization": "Bearer letmein"})
    assert ok.status_code == 200 and "dlcourse_gpu_up" in ok.text
    assert httpx.get(f"{exporter.url}/healthz").status_code == 200
    assert "letmein" not in exporter.log()


def test_bad_config_exits_before_starting(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcourse_exporter",
            "--hub.url=http://h/hub/api",
            f"--hub.token-file={tmp_path / 'missing'}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "hub token file" in result.stderr
