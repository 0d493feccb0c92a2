"""The whole product at once: a real JupyterHub with three students whose kernels run on
stand-in GPUs, the exporter with every collector, and real Prometheus and Alertmanager.

One hub serves the module (starting servers is the slow part); tests run in file order and
the last one stops the exporter. What each asserts is what the instructor would see:
- per student: GPU memory and utilization, server state, kernels, CPU, memory, crashes by
  signal (issue: hub users, notebook kernels and crashes);
- alerts arriving at a webhook for GPU saturation, a crashing kernel and a dead exporter
  (issue: Prometheus configuration and alerts);
- every dashboard query returning data from that Prometheus (issue: Grafana dashboards).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from dlcourse_dashboards.queries import iter_queries

from dlcourse_exporter.sources.kernels import GRACE_SECONDS
from dlcourse_testing.alerting import AlertingStack, wait_until
from dlcourse_testing.exporter import RunningExporter, Samples, value
from dlcourse_testing.hub import DEFAULT_SERVICES, LiveHub
from fakenvml import Gpu, Process, Scenario, XidEvent, write_driver_proc
from fakenvml.scenario import default_uuid

GIB = 1024**3
TAG = uuid.uuid4().hex[:4]  # unique account names: other runs may share this machine
ADA, GRACE, ALAN, LOST = f"ada{TAG}", f"grace{TAG}", f"alan{TAG}", f"lost{TAG}"
SECTIONS = {ADA: "monday", GRACE: "monday", ALAN: "thursday"}
OVERRIDES = Path(__file__).with_name("alert-overrides.json")
CGROUPFS = Path("/sys/fs/cgroup")


@dataclass
class LiveClass:
    hub: LiveHub
    exporter: RunningExporter
    scenario_path: Path
    kernel_pids: dict[str, list[int]] = field(default_factory=dict)
    kernel_ids: dict[str, list[str]] = field(default_factory=dict)

    def start_kernel(self, user: str) -> tuple[str, int]:
        kernel_id = self.hub.start_kernel(user)
        pid = self.hub.kernel_pid(user, kernel_id)
        self.kernel_ids.setdefault(user, []).append(kernel_id)
        self.kernel_pids.setdefault(user, []).append(pid)
        return kernel_id, pid

    def write_gpus(self, gpu0_util: int = 90, gpu1_util: int = 0) -> None:
        """GPU 0: ada trains (6 GiB) and grace tinkers (4 GiB); GPU 1: alan idles on 10 GiB."""
        ada, grace, alan = (self.kernel_pids[u][0] for u in (ADA, GRACE, ALAN))
        Scenario(
            gpus=[
                Gpu(
                    utilization_gpu=gpu0_util,
                    memory_total=40 * GIB,
                    memory_used=11 * GIB,
                    processes=[Process(ada, 6 * GIB, sm_util=60), Process(grace, 4 * GIB, 30)],
                    xid_events=[XidEvent(1, 31)],  # a page fault in someone's CUDA code
                ),
                Gpu(
                    utilization_gpu=gpu1_util,
                    memory_total=40 * GIB,
                    clocks_event_reasons=0x20,  # sw_thermal: a warm machine room
                    memory_used=11 * GIB,
                    processes=[Process(alan, 10 * GIB, sm_util=gpu1_util)],
                ),
            ]
        ).write(self.scenario_path)


def memory_cgroup_root() -> tuple[Path, bool] | None:
    """The memory controller's hierarchy and whether it is cgroup v2; None if unusable."""
    if os.geteuid() != 0:
        return None
    v1 = CGROUPFS / "memory"
    if (v1 / "memory.limit_in_bytes").exists():
        return v1, False
    if "memory" in (CGROUPFS / "cgroup.controllers").read_text().split():
        return CGROUPFS, True
    return None


def server_pid(hub: LiveHub, user: str) -> int:
    """The pid of the user's single-user server (LocalProcessSpawner's state, admin-only)."""
    return hub.user_model(user)["servers"][""]["state"]["pid"]


def limit_memory_like_tljh(pid: int, user: str, made: list[Path]) -> None:
    """Moves pid into a memory-limited cgroup where a systemd unit for the user would be:
    /system.slice/<user>.service (the exporter runs with the hub's --user.prefix=)."""
    root, v2 = memory_cgroup_root()
    unit = root / "system.slice" / f"{user}.service"
    if v2:
        (root / "cgroup.subtree_control").write_text("+memory")
    if not unit.parent.is_dir():  # no systemd here: make the slice, and remove it after
        unit.parent.mkdir(exist_ok=True)
        made.append(unit.parent)
    if v2:
        (unit.parent / "cgroup.subtree_control").write_text("+memory")
    unit.mkdir()
    made.append(unit)
    (unit / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(2 * GIB))
    (unit / "cgroup.procs").write_text(str(pid))


GPU_HOOK = """
from dlcourse_installer.hub.gpu_hook import GpuAssigner, Settings
from dlcourse_installer.hub.gpu_load import ClassGpus
from dlcourse_installer.hub.gpu_policy import GpuLoad
from fakenvml.scenario import default_uuid

GPUS = ClassGpus((GpuLoad(0, default_uuid(0)), GpuLoad(1, default_uuid(1))), {})
assign_gpu = GpuAssigner(
    Settings("round-robin"), staff_group="instructors", roster_gpus={}, read_gpus=lambda: GPUS,
    driver_proc=DRIVER_PROC,
)
hold_spawn = c.Spawner.pre_spawn_hook  # LiveHub's, which test_pending_spawn uses


async def hold_then_assign_gpu(spawner):
    await hold_spawn(spawner)
    await assign_gpu(spawner)


c.Spawner.pre_spawn_hook = hold_then_assign_gpu
"""


@pytest.fixture(scope="module")
def live_class(tmp_path_factory, user_env, fake_nvml_dir):
    work = tmp_path_factory.mktemp("class")
    work.chmod(0o755)
    services = {**DEFAULT_SERVICES, "prometheus": ("read:metrics",)}
    # The hub checks servers every 2 s, so a killed server is "found stopped" quickly. The
    # GPU hook gives each server one of the stand-in GPUs in turn (the exporter starts after
    # the servers, so the hook is told the GPUs rather than asking the exporter).
    # The hook lists the GPUs from the driver's /proc files, which the stand-in GPUs get here.
    driver_proc = write_driver_proc(work / "driver-proc", [default_uuid(0), default_uuid(1)])
    hook = GPU_HOOK.replace("DRIVER_PROC", repr(driver_proc))
    hub = LiveHub(
        work / "hub", user_env, services=services,
        extra_config="c.Spawner.poll_interval = 2\n" + hook,
    )  # fmt: skip
    exporter = None
    cgroups: list[Path] = []
    try:
        hub.start()
        for name, section in SECTIONS.items():
            hub.add_user(name, groups=[section])
            hub.start_server(name)
        if memory_cgroup_root() is not None:
            # Grace's server (and so her kernels) under a 2 GiB limit, as TLJH's units have.
            limit_memory_like_tljh(server_pid(hub, GRACE), GRACE, cgroups)
        # A student whose server dies under her: the hub finds it stopped.
        hub.add_user(LOST, groups=["thursday"])
        hub.start_server(LOST)
        os.kill(server_pid(hub, LOST), signal.SIGKILL)
        hub.wait_server(LOST, ready=None)
        scenario_path = work / "gpus.scn"
        # The GPUs exist before any student's kernel runs on them.
        Scenario(gpus=[Gpu(memory_total=40 * GIB), Gpu(memory_total=40 * GIB)]).write(scenario_path)
        exporter = RunningExporter(
            [
                "--collection.interval=0.5",
                f"--hub.url={hub.api_url}",
                f"--hub.token-file={hub.token_file()}",
                "--hub.interval=1",
                *hub.attribution_args(),
            ],
            nvml_dir=fake_nvml_dir,
            scenario=scenario_path,
            log_path=work / "exporter.log",
        )
        live = LiveClass(hub, exporter, scenario_path)
        for name in SECTIONS:
            live.start_kernel(name)
        live.write_gpus()
        yield live
    finally:
        if exporter is not None:
            exporter.stop()
        hub.close()
        for path in reversed(cgroups):
            for _ in range(50):  # processes may still be leaving it
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def everyone_visible(samples: Samples) -> bool:
    return (
        all(
            value(samples, "dlcourse_user_kernels", user=name) == 1
            and value(samples, "dlcourse_hub_user_servers", user=name, state="ready") == 1
            for name in SECTIONS
        )
        and value(samples, "dlcourse_user_gpu_processes", user=ALAN) == 1
        and all(
            value(samples, "dlcourse_collector_success", collector=name) == 1
            for name in ("gpu", "processes", "hub", "kernels", "host")
        )
    )


def test_each_student_is_seen_whole(live_class):
    samples = live_class.exporter.wait_for(everyone_visible, what="the class")
    gpu_memory, gpu_util = (
        "dlcourse_user_gpu_memory_used_bytes",
        "dlcourse_user_gpu_utilization_ratio",
    )
    assert value(samples, gpu_memory, user=ADA, gpu="0") == 6 * GIB
    assert value(samples, gpu_memory, user=GRACE, gpu="0") == 4 * GIB
    assert value(samples, gpu_memory, user=ALAN, gpu="1") == 10 * GIB
    assert value(samples, gpu_util, user=ADA, gpu="0") == pytest.approx(0.6)
    assert value(samples, gpu_util, user=GRACE, gpu="0") == pytest.approx(0.3)
    assert value(samples, gpu_util, user=ALAN, gpu="1") == 0
    for name, section in SECTIONS.items():
        assert value(samples, "dlcourse_hub_user_info", user=name, admin="false") == 1
        assert value(samples, "dlcourse_hub_user_group_info", user=name, group=section) == 1
        assert value(samples, "dlcourse_hub_user_servers", user=name, state="pending") == 0
        assert value(samples, "dlcourse_hub_user_server_started_timestamp_seconds", user=name) > 0
        assert value(samples, "dlcourse_hub_user_last_activity_timestamp_seconds", user=name) > 0
        assert value(samples, "dlcourse_user_cpu_seconds_total", user=name) > 0
        assert value(samples, "dlcourse_user_memory_used_bytes", user=name) > 10 * 2**20
        for sig in ("SIGKILL", "SIGSEGV", "exit"):
            assert value(samples, "dlcourse_user_kernel_crashes_total", user=name, signal=sig) == 0
        assert value(samples, "dlcourse_user_oom_kills_total", user=name) == 0
    for collector in ("gpu", "processes", "hub", "kernels", "host"):
        assert value(samples, "dlcourse_collector_success", collector=collector) == 1, collector


def test_crashes_counted_by_signal_through_the_hub(live_class):
    """Kernels started through the hub: two die by signal, one is shut down, one restarted."""
    hub = live_class.hub
    kernels = {what: hub.start_kernel(GRACE) for what in ("segv", "kill", "shutdown", "restart")}
    pids = {what: hub.kernel_pid(GRACE, kernel_id) for what, kernel_id in kernels.items()}
    live_class.exporter.wait_for(
        lambda s: value(s, "dlcourse_user_kernels", user=GRACE) == 5, what="grace's 5 kernels"
    )
    os.kill(pids["segv"], signal.SIGSEGV)
    os.kill(pids["kill"], signal.SIGKILL)
    hub.shutdown_kernel(GRACE, kernels["shutdown"])
    hub.restart_kernel(GRACE, kernels["restart"])

    crashes = "dlcourse_user_kernel_crashes_total"
    samples = live_class.exporter.wait_for(
        lambda s: (
            value(s, crashes, user=GRACE, signal="SIGSEGV") == 1
            and value(s, crashes, user=GRACE, signal="SIGKILL") == 1
            # The restarted kernel lives on (new process), next to the class's first one.
            and value(s, "dlcourse_user_kernels", user=GRACE) == 2
        ),
        what="grace's two crashes and two kernels",
    )
    # Every exit above has been seen; a poll that begins a grace period later has judged
    # them all, so the shutdown and the restart had their chance to count (wrongly).
    samples = live_class.exporter.wait_poll_after("kernels", GRACE_SECONDS)
    assert value(samples, crashes, user=GRACE, signal="SIGSEGV") == 1
    assert value(samples, crashes, user=GRACE, signal="SIGKILL") == 1
    assert value(samples, crashes, user=GRACE, signal="SIGTERM") == 0
    assert value(samples, crashes, user=GRACE, signal="exit") == 0
    assert value(samples, crashes, user=ADA, signal="SIGSEGV") == 0
    # The restarted kernel lives on (new process), next to the class's first one; under load
    # its new process may come after the scrape above.
    live_class.exporter.wait_for(
        lambda s: value(s, "dlcourse_user_kernels", user=GRACE) == 2,
        timeout=30,
        what="grace's restarted kernel and her first one",
    )


def test_pending_spawn_shows_as_pending(live_class):
    hub = live_class.hub
    late = hub.add_user(f"late{TAG}", groups=["thursday"])
    hub.hold_spawn(late)
    try:
        live_class.exporter.wait_for(
            lambda s: (
                value(s, "dlcourse_hub_user_servers", user=late, state="pending") == 1
                and value(s, "dlcourse_hub_user_servers", user=late, state="ready") == 0
            ),
            what="a pending spawn",
        )
    finally:
        hub.cancel_spawn(late)


@pytest.fixture(scope="module")
def stack(live_class, tmp_path_factory):
    """Prometheus scraping the exporter, the hub's /hub/metrics and node_exporter."""
    from dlcourse_testing.alerting import Process as StackProcess
    from dlcourse_testing.alerting import find_tool, free_port

    node_bin = find_tool("prometheus-node-exporter", "node_exporter")
    if node_bin is None or find_tool("prometheus") is None:
        pytest.skip("Debian's prometheus and prometheus-node-exporter are needed")
    work = tmp_path_factory.mktemp("stack")
    node_port = free_port()
    node = StackProcess("node", [node_bin, f"--web.listen-address=127.0.0.1:{node_port}"], work)
    targets = {
        "dlcourse": [live_class.exporter.url.removeprefix("http://")],
        "jupyterhub": [live_class.hub.public_url.removeprefix("http://")],
        "node": [f"127.0.0.1:{node_port}"],
    }
    with AlertingStack(
        work, targets, overrides=OVERRIDES, hub_token_file=live_class.hub.token_file("prometheus")
    ) as running:
        yield running
    node.stop()


def wait_query(stack: AlertingStack, promql: str, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = stack.query(promql)
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no data for {promql} after {timeout:g} s\n{stack.logs()}")


def test_every_dashboard_query_returns_data(live_class, stack):
    if memory_cgroup_root() is None:
        pytest.skip("needs root and a memory cgroup: the memory-limit panels need a limit")
    for job in ("dlcourse", "jupyterhub", "node"):
        wait_query(stack, f'up{{job="{job}"}} == 1')
    # Rates need a few samples; crashes happened above, so "crashes today" has data too.
    wait_query(stack, "count_over_time(dlcourse_gpu_up[1m]) > 5")
    values = {"user": GRACE, "group": "monday", "gpu": ".*", "instance": ".*"}
    empty = []
    for dashboard, panel, expr in iter_queries(values):
        if not stack.query(expr):
            empty.append(f"{dashboard} / {panel}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_alerts_reach_the_webhook(live_class, stack):
    webhook = stack.webhook
    # Both GPUs pegged: the class is saturated.
    live_class.write_gpus(gpu0_util=99, gpu1_util=99)
    saturated = webhook.wait_for("DLCourseGPUsSaturated", timeout=120)[0]
    assert saturated["labels"]["severity"] == "warning"
    assert {"summary", "description", "runbook_url"} <= set(saturated["annotations"])

    # A student's kernel segfaults: the info alert reaches Alertmanager, and with the test
    # threshold of one crash the per-student warning reaches the webhook naming her.
    _, pid = live_class.start_kernel(ADA)
    os.kill(pid, signal.SIGSEGV)
    # Only ada's: the exporter runs as root and sees kernels of other runs on this machine.
    crashing = "DLCourseStudentKernelsCrashing"
    wait_until(
        lambda: [a for a in webhook.alerts(crashing) if a["labels"]["user"] == ADA],
        120,
        lambda: f"{crashing} for {ADA}; received: {webhook.summary()}",
    )
    alerts = httpx.get(f"{stack.alertmanager_url}/api/v2/alerts", auth=stack.auth, timeout=5).json()
    assert any(
        a["labels"]["alertname"] == "DLCourseKernelCrashed" and a["labels"].get("user") == ADA
        for a in alerts
    ), [a["labels"] for a in alerts]

    # The exporter dies: Prometheus sees its target down.
    live_class.exporter.stop()
    down = webhook.wait_for("DLCourseExporterDown", timeout=120)[0]
    assert down["labels"]["severity"] == "critical"
