"""The GPU hook's parts: the policies, what it reads from the exporter and the driver, and
that no failure stops a spawn. The hook in a real hub: tests/tljh_conformance/
test_gpu_assignment.py."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.core import GaugeMetricFamily

from dlcourse_exporter.classview import class_status
from dlcourse_installer.hub.gpu_hook import (
    Settings,
    UnitPropertyValues,
    settings_from_tljh,
    strict_unit_properties,
)
from dlcourse_installer.hub.gpu_load import (
    ClassGpus,
    ExporterUnavailable,
    parse_class_gpus,
    read_class_gpus,
)
from dlcourse_installer.hub.gpu_policy import GpuLoad, choose
from dlcourse_installer.hub.nvidia_devices import DriverGpu, driver_gpus, parse_information
from dlcourse_installer.inputs import roster
from dlcourse_installer.inputs.options import Options, validate

from .hook_parts import Group, User, assigner, spawn, write_driver_proc

GIB = 1 << 30
GPUS = tuple(GpuLoad(i, f"GPU-{i}", 1 * GIB, 16 * GIB) for i in range(3))


def test_least_loaded_counts_servers_then_memory_and_skips_a_nearly_full_gpu():
    assert choose("least-loaded", "a", GPUS, {"b": "GPU-0"}, {}, 0).gpu.index == 1
    busy = (GPUS[0], GpuLoad(1, "GPU-1", 3 * GIB, 16 * GIB), GPUS[2])
    assert choose("least-loaded", "a", busy, {"b": "GPU-0"}, {}, 0).gpu.index == 2
    full = (GpuLoad(0, "GPU-0", 15 * GIB, 16 * GIB), *GPUS[1:])
    choice = choose("least-loaded", "a", full, {"b": "GPU-1", "c": "GPU-2"}, {}, 0)
    assert choice.gpu.index == 1 and "1 nearly full GPU(s) skipped" in choice.why
    all_full = tuple(GpuLoad(g.index, g.uuid, 15 * GIB, 16 * GIB) for g in GPUS)
    assert choose("least-loaded", "a", all_full, {}, {}, 0).gpu.index == 0  # still one


def test_round_robin_roster_and_all():
    assert [choose("round-robin", "a", GPUS, {}, {}, t).gpu.index for t in range(4)] == [0, 1, 2, 0]
    assert choose("roster", "a", GPUS, {}, {"a": 2}, 0).gpu.index == 2
    absent = choose("roster", "a", GPUS, {"b": "GPU-0"}, {"a": 7}, 0)
    assert absent.gpu.index == 1 and absent.why.startswith("the roster's GPU 7 is absent")
    assert choose("roster", "a", GPUS, {}, {}, 0).why.startswith("no roster gpu")
    assert choose("all", "a", GPUS, {}, {}, 0).gpu is None
    assert choose("least-loaded", "a", (), {}, {}, 0).gpu is None


def test_the_hook_reads_what_the_exporters_api_class_says():
    """The contract between the exporter's /api/class and the hub's hook."""

    def family(name, labels, rows):
        metric = GaugeMetricFamily(name, "h", labels=labels)
        for values, value in rows:
            metric.add_metric(values, value)
        return metric

    gpu = ["gpu", "uuid"]
    families = [
        family("dlcourse_gpu_up", gpu, [(["0", "GPU-a"], 1), (["1", "GPU-b"], 1),
                                        (["2", "GPU-c"], 0)]),
        family("dlcourse_gpu_memory_used_bytes", gpu, [(["0", "GPU-a"], 5 * GIB)]),
        family("dlcourse_gpu_memory_total_bytes", gpu, [(["0", "GPU-a"], 16 * GIB)]),
        family("dlcourse_user_gpu_assigned", ["user", "gpu", "uuid"], [(["ada", "1", "GPU-b"], 1)]),
    ]  # fmt: skip
    seen = parse_class_gpus(json.dumps(class_status(families)).encode())
    assert seen.gpus == (GpuLoad(0, "GPU-a", 5 * GIB, 16 * GIB), GpuLoad(1, "GPU-b", 0, 0))
    assert seen.assigned == {"ada": "GPU-b"}  # GPU 2 is down: not offered


@pytest.mark.parametrize("body", [b"", b"[]", b'{"gpus": [{"gpu": "x", "uuid": "u", "up": 1}]}'])
def test_an_answer_that_is_not_api_class_is_one_error(body):
    with pytest.raises(ExporterUnavailable, match="not an /api/class answer"):
        parse_class_gpus(body)


def test_an_exporter_that_does_not_answer_is_one_error(tmp_path):
    token = tmp_path / "token"
    token.write_text("t\n")
    with pytest.raises(ExporterUnavailable, match="ConnectionRefusedError"):
        read_class_gpus("http://127.0.0.1:1", str(token))  # nothing listens on port 1
    with pytest.raises(ExporterUnavailable, match="absent: No such file or directory"):
        read_class_gpus("http://127.0.0.1:1", str(tmp_path / "absent"))


def test_the_drivers_proc_files_list_the_gpus_in_pci_bus_order(tmp_path):
    info = "Model:  A100\nIRQ:  42\nGPU UUID:  GPU-8932f937\nDevice Minor:  3\n"
    assert parse_information(info) == ("GPU-8932f937", 3)
    assert parse_information("Model: A100\n") is None
    # Bus 0x9a sorts after 0x18 as a number; a folder without an information file is no GPU.
    for bus, uuid, minor in (("0000:9a:00.0", "GPU-b", 0), ("0000:18:00.0", "GPU-a", 3)):
        (tmp_path / "gpus" / bus).mkdir(parents=True)
        (tmp_path / "gpus" / bus / "information").write_text(
            f"GPU UUID: {uuid}\nDevice Minor: {minor}\n"
        )
    (tmp_path / "gpus" / "0000:3b:00.0").mkdir()
    assert driver_gpus(str(tmp_path)) == (DriverGpu(0, "GPU-a", 3), DriverGpu(1, "GPU-b", 0))
    assert driver_gpus(str(tmp_path / "none")) == ()


def test_strict_properties_survive_systemdspawners_expansion():
    """SystemdSpawner.start runs every value through str.format (systemdspawner 1.0.2);
    the DeviceAllow list must come out a list, one --property per device."""
    properties = strict_unit_properties(2)
    expanded = {k: v.format(USERNAME="ada", USERID=7) for k, v in properties.items()}
    assert expanded["DevicePolicy"] == "closed"
    assert isinstance(expanded["DeviceAllow"], list)
    assert expanded["DeviceAllow"][:2] == ["/dev/nvidia2 rw", "/dev/nvidiactl rw"]
    assert isinstance(UnitPropertyValues(["x"]).format(), UnitPropertyValues)


def test_bad_tljh_settings_are_one_line_each_and_keep_the_defaults():
    assert settings_from_tljh({}) == (Settings("least-loaded", False), [])
    good = {"dlcourse": {"gpu_policy": "roster", "gpu_strict": True}}
    assert settings_from_tljh(good) == (Settings("roster", True), [])
    settings, errors = settings_from_tljh({"dlcourse": {"gpu_policy": "random", "gpu_strict": 1}})
    assert settings == Settings() and len(errors) == 2
    assert errors[0].startswith("tljh-config dlcourse.gpu_policy 'random' is not one of")


# -- the hook, with a spawner as JupyterHub hands it over (hook_parts) ------------------------
def test_staff_get_every_gpu_and_students_one(tmp_path, caplog):
    hook = assigner(lambda: ClassGpus(GPUS, {}), write_driver_proc(tmp_path))
    caplog.set_level(logging.INFO, "test-hub")
    assert "CUDA_VISIBLE_DEVICES" not in spawn(hook, User("teacher", admin=True)).environment
    ta = User("tom", groups=[Group("instructors")])
    assert "CUDA_VISIBLE_DEVICES" not in spawn(hook, ta).environment
    assert spawn(hook, User("ada")).environment == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "GPU-0",
    }  # fmt: skip
    # The exporter does not list ada's server yet: the hook's own choice counts.
    assert spawn(hook, User("grace")).environment["CUDA_VISIBLE_DEVICES"] == "GPU-1"
    assert caplog.messages[-1].startswith("dlcourse GPU: grace gets GPU 1 (GPU-1): least-loaded")


def test_no_failure_stops_a_spawn_it_gives_every_gpu_and_says_why(tmp_path, caplog):
    caplog.set_level(logging.INFO, "test-hub")
    no_driver = assigner(lambda: ClassGpus(GPUS, {}), str(tmp_path / "no-driver"))
    assert "CUDA_VISIBLE_DEVICES" not in spawn(no_driver, User("ada")).environment
    assert caplog.messages == [
        f"dlcourse GPU: ada gets every GPU: the driver lists no GPU in {tmp_path / 'no-driver'}"
    ]

    def broken():
        raise RuntimeError("surprise")

    spawn(assigner(broken, write_driver_proc(tmp_path)), User("ada"))
    assert (
        caplog.messages[-1] == "dlcourse GPU: ada gets every GPU: failed (RuntimeError: surprise)"
    )


def test_the_roster_gpu_column_and_the_options():
    text = "username,section,gpu\nada,A,1\ngrace,A,\nalan,B,x\n"
    students, errors = roster.parse(text, "r.csv")
    assert [(s.username, s.gpu) for s in students] == [("ada", 1), ("grace", None)]
    assert errors == ["r.csv:4: gpu 'x' of 'alan': a GPU index as nvidia-smi shows it (0, 1, "
                      "...), or blank"]  # fmt: skip
    opts = Options(admins=("teacher",), roster=students, gpu_policy="roster")
    assert validate(opts) == [] and opts.roster_gpus == {"ada": 1}
    assert validate(Options(admins=("teacher",), gpu_policy="roster")) == [
        "--gpu-policy roster needs --roster with a gpu column"
    ]
    assert validate(Options(admins=("teacher",), gpu_policy="fair")) == [
        "--gpu-policy 'fair': one of least-loaded, round-robin, roster, all"
    ]


@pytest.mark.parametrize("minor", ["²", "٣", "3²"])
def test_a_device_minor_of_other_digits_than_0_to_9_is_no_gpu(tmp_path, minor):
    """str.isdigit() is true for '²' (which int() refuses: the hook's list raised) and for
    '٣' (which int() reads as 3)."""
    assert parse_information(f"GPU UUID: GPU-a\nDevice Minor: {minor}\n") is None
    (tmp_path / "gpus" / "0000:18:00.0").mkdir(parents=True)
    (tmp_path / "gpus" / "0000:18:00.0" / "information").write_text(
        f"GPU UUID: GPU-a\nDevice Minor: {minor}\n"
    )
    assert driver_gpus(str(tmp_path)) == ()
