"""The Python side: scenario validation, the file format, the example and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fakenvml import BuildError, Gpu, Process, Scenario, ScenarioError, XidEvent, build_library
from fakenvml.build import exported_functions
from fakenvml.example import example_scenario


def test_text_format():
    scenario = Scenario(
        gpus=[
            Gpu(
                uuid="GPU-1",
                name="Tesla T4",
                not_supported={"power", "ecc"},
                processes=[Process(pid=5, used_memory=None, sm_util=3, kind="graphics")],
                xid_events=[XidEvent(id=9, xid=79)],
                lost=True,
            )
        ],
        init_error="GPU_IS_LOST",
    )
    text = scenario.to_text()
    assert text.startswith("fakenvml-scenario 1\ndriver_version 550.54.15\ncuda_version 12040\n")
    assert "init_error 15\n" in text
    assert "\ngpu\nuuid GPU-1\nname Tesla T4\n" in text
    assert "\nnot_supported ecc power\n" in text
    assert "\nprocess 5 na 3 0 graphics\n" in text
    assert "\nxid 9 79\n" in text
    assert "\nlost 1\n" in text


def test_every_problem_reported_at_once():
    scenario = Scenario(
        cuda_version=12,
        init_error="NOT_A_CODE",
        gpus=[
            Gpu(uuid="GPU-x", utilization_gpu=101, memory_total=10, memory_used=11),
            Gpu(
                uuid="GPU-x",
                name="two\nlines",
                not_supported={"fan"},
                processes=[Process(pid=1, kind="mps"), Process(pid=1, sm_util=-1)],
                xid_events=[XidEvent(1, 79), XidEvent(1, 48)],
            ),
        ],
    )
    with pytest.raises(ScenarioError) as raised:
        scenario.to_text()
    message = str(raised.value)
    for expected in (
        "cuda_version must be an int",
        "init_error 'NOT_A_CODE' is not an NVML_ERROR_* name",
        "gpus[0].utilization_gpu must be an int in [0, 100], got 101",
        "gpus[0].memory_used exceeds memory_total",
        "gpus[1].uuid 'GPU-x' is not unique",
        "gpus[1].name must be a one-line string",
        "gpus[1].not_supported has unknown ['fan']",
        "gpus[1].processes[0].kind must be one of",
        "gpus[1].processes[1].pid 1 appears twice",
        "gpus[1].processes[1].sm_util must be an int in [0, 100], got -1",
        "gpus[1].xid_events[1].id 1 is not unique",
    ):
        assert expected in message
    assert "\n" not in message


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "gpus.scn"
    Scenario(gpus=[Gpu()]).write(path)
    first_inode = path.stat().st_ino
    Scenario(gpus=[Gpu(), Gpu()]).write(path)
    assert path.read_text().count("\ngpu\n") == 2
    assert path.stat().st_ino != first_inode  # replaced, so readers never see a half file
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(ScenarioError):
        Scenario(gpus=[Gpu(temperature=-1)]).write(path)
    assert path.read_text().count("\ngpu\n") == 2  # a bad scenario loses nothing
    assert os.listdir(tmp_path) == ["gpus.scn"]


def test_example_spreads_processes_over_users_gpus():
    scenario = example_scenario(gpus=8, processes=200, users=40)
    assert len(scenario.gpus) == 8
    assert sum(len(g.processes) for g in scenario.gpus) == 200
    for gpu in scenario.gpus:
        assert len(gpu.processes) == 25  # 40 users, 5 per GPU, 5 processes each
        assert gpu.memory_used == sum(p.used_memory for p in gpu.processes)
        assert any(p.sm_util == 0 for p in gpu.processes)  # some notebooks idle
    scenario.to_text()  # valid
    assert example_scenario(2, 3, 1, pids=[7, 8, 9]).gpus[0].processes[2].pid == 9
    with pytest.raises(ValueError, match="3 processes need as many pids, got 1"):
        example_scenario(2, 3, 1, pids=[7])


@pytest.mark.live
def test_build_is_cached_and_rejects_unknown_names(tmp_path):
    lib = build_library(tmp_path) / "libnvidia-ml.so.1"
    built = lib.stat().st_mtime_ns
    assert build_library(tmp_path) / "libnvidia-ml.so.1" == lib
    assert lib.stat().st_mtime_ns == built
    with pytest.raises(BuildError, match=r"cannot omit \['nvmlMadeUp'\]"):
        build_library(tmp_path, omit=["nvmlMadeUp"])
    # exported_functions(), which vets omit names, reads the source; the loader's view:
    symbols = subprocess.run(
        ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(exported_functions()) == sorted(s for s in symbols if s.startswith("nvml"))


@pytest.mark.live
def test_build_reports_a_missing_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(BuildError, match="cannot run the C compiler '/nonexistent/cc'"):
        build_library(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fakenvml", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.live
def test_cli_example_and_build(tmp_path):
    out = tmp_path / "class.scn"
    result = run_cli(
        "example", "--gpus", "2", "--processes", "6", "--users", "3", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().count("\nprocess ") == 6
    omit = "nvmlDeviceGetProcessUtilization"
    result = run_cli("build", "--out", str(tmp_path / "lib"), "--omit", omit)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/libnvidia-ml.so.1")


@pytest.mark.live
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    result = run_cli("example", "--gpus", "0", "--out", str(tmp_path / "x.scn"))
    assert result.returncode == 1
    assert result.stderr == "fakenvml: error: need gpus >= 1, processes >= 0 and users >= 1\n"
    result = run_cli("build", "--out", str(tmp_path), "--omit", "nvmlNope")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "x.scn").exists()
