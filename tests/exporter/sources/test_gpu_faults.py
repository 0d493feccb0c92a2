"""One GPU's trouble stays that GPU's: NotSupported, failed calls, GPUs that vanish.

Issue 11, "Why" 5 (NotSupported from one GPU's process list failed the processes collector
for every GPU; a process whose uid has no account was dropped, its memory counted for no
one) and 6 (a GPU gone from the device count vanished from /metrics, so DLCourseGPULost
could never fire for it).
"""

from __future__ import annotations

import os
import subprocess

import pynvml
import pytest

from dlcourse_exporter import model
from dlcourse_exporter.sources.nvml import NvmlSession, short_name
from dlcourse_exporter.sources.nvml_gpus import SeenGpu, with_gone_gpus
from dlcourse_testing.exporter import value
from fakenvml import Gpu, Process, Scenario

GIB = 1024**3
GPU_ONLY = ("--no-collector.kernels", "--no-collector.host")


def test_not_supported_process_list_on_one_gpu_leaves_the_others(
    run_exporter, scenario_path, sleeper
):
    ada, bea = sleeper(hub_user="ada"), sleeper(hub_user="bea")
    Scenario(
        gpus=[
            Gpu(not_supported={"processes"}, processes=[Process(ada, GIB)]),
            Gpu(processes=[Process(bea, 2 * GIB)]),
        ]
    ).write(scenario_path)
    samples = run_exporter(*GPU_ONLY).wait_for(
        lambda s: value(s, "dlcourse_user_gpu_memory_used_bytes", user="bea") == 2 * GIB,
        what="bea on GPU 1",
    )
    # Before: the whole collector failed, for every GPU and every user.
    assert value(samples, "dlcourse_collector_success", collector="processes") == 1
    assert value(samples, "dlcourse_user_gpu_processes", user="ada") is None  # unknowable
    assert value(samples, "dlcourse_gpu_unattributed_processes", gpu="0") is None
    assert value(samples, "dlcourse_gpu_unattributed_processes", gpu="1") == 0
    assert value(samples, "dlcourse_gpu_up", gpu="0") == 1
    assert not [k for k in samples if k[0] == "dlcourse_gpu_nvml_errors_total"]  # no error


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as a bare uid")
def test_a_process_of_a_uid_without_account_is_unattributed(run_exporter, scenario_path):
    orphan = subprocess.Popen(["sleep", "600"], user=4_000_000 + os.getpid() % 1000)
    try:
        Scenario(gpus=[Gpu(processes=[Process(orphan.pid, 3 * GIB)])]).write(scenario_path)
        samples = run_exporter(*GPU_ONLY).wait_for(
            lambda s: value(s, "dlcourse_gpu_unattributed_processes", gpu="0") == 1,
            what="the orphan's process",
        )
    finally:
        orphan.kill()
        orphan.wait()
    # Before: dropped, its memory counted for no one.
    assert value(samples, "dlcourse_gpu_unattributed_memory_bytes", gpu="0") == 3 * GIB


def test_a_gpu_gone_from_the_count_stays_down_until_it_returns(run_exporter, scenario_path):
    two = Scenario(gpus=[Gpu(uuid="GPU-keep"), Gpu(uuid="GPU-gone")])
    two.write(scenario_path)
    exporter = run_exporter(*GPU_ONLY)
    exporter.wait_for(lambda s: value(s, "dlcourse_gpu_up", uuid="GPU-gone") == 1, what="2 GPUs")
    Scenario(gpus=[Gpu(uuid="GPU-keep")]).write(scenario_path)  # fell off the bus, unbound
    samples = exporter.wait_for(
        lambda s: value(s, "dlcourse_gpu_up", uuid="GPU-gone") == 0, what="GPU-gone down"
    )
    # Before: its series vanished and `dlcourse_gpu_up == 0` never matched.
    assert value(samples, "dlcourse_gpu_up", gpu="1", uuid="GPU-gone") == 0
    assert value(samples, "dlcourse_gpu_up", gpu="0", uuid="GPU-keep") == 1
    assert value(samples, "dlcourse_gpu_info", uuid="GPU-gone") is None
    two.write(scenario_path)
    exporter.wait_for(lambda s: value(s, "dlcourse_gpu_up", uuid="GPU-gone") == 1, what="back")


def test_gone_gpus_are_remembered_for_a_while():
    up = model.Gpu(0, "GPU-a", up=True)
    readings, seen = with_gone_gpus([up, model.Gpu(1, "GPU-b", up=True)], {}, 0.0, 100)
    assert seen == {"GPU-a": SeenGpu(0, 0.0), "GPU-b": SeenGpu(1, 0.0)}
    readings, seen = with_gone_gpus([up], seen, 50.0, 100)
    assert readings == [up, model.Gpu(1, "GPU-b", up=False)]
    readings, seen = with_gone_gpus([up], seen, 101.0, 100)  # forgotten after keep_for
    assert readings == [up] and "GPU-b" not in seen


def failing(code: int):
    def nvmlDeviceGetTemperature(*_):  # noqa: N802 - named as NVML's, for the call label
        raise pynvml.NVMLError(code)

    return nvmlDeviceGetTemperature


def test_a_failed_call_is_counted_for_its_gpu_and_not_supported_is_not():
    session = NvmlSession()
    assert short_name(pynvml.nvmlDeviceGetComputeRunningProcesses_v3) == (
        "GetComputeRunningProcesses"
    )
    for code in (pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_TIMEOUT):
        assert session.gpu_optional(1, "GPU-b", failing(code)) is None
    for code in (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND):
        assert session.gpu_optional(1, "GPU-b", failing(code)) is None
    with pytest.raises(pynvml.NVMLError_GpuIsLost):  # a lost GPU is up=0, not an error count
        session.gpu_optional(1, "GPU-b", failing(pynvml.NVML_ERROR_GPU_IS_LOST))
    assert session.error_counts() == {(1, "GPU-b", "GetTemperature"): 3}
