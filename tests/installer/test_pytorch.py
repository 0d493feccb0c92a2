"""PyTorch's CUDA build: the newest the driver runs with code for the GPUs, proven on every GPU,
with a fallback."""

import pytest

from dlcourse_installer.catalogs import pytorch
from dlcourse_installer.checklist import runner

from .conftest import install
from .fakehost import FakeHost

ARGV = ["--admin", "teacher", "--yes"]


@pytest.mark.parametrize(
    ("driver", "tag"),
    [
        ("580.65.06", "cu132"),  # CUDA 13 needs 580; 2.14 is built for 13.2
        ("575.57.08", "cu126"),
        # The common 535/550 servers get the current release's CUDA 12.6 build under minor-
        # version compatibility; the old full-feature table gave them cu121/cu124 (2.5/2.6).
        ("550.163.01", "cu126"),
        ("535.247.01", "cu126"),
        ("525.60.13", "cu126"),
        ("520.61.05", "cu118"),  # no current build: the newest it fully supports
        ("470.256.02", None),
        ("580", "cu132"),  # a branch, before the driver is installed (the dry run)
        ("garbage", None),
    ],
)
def test_first_choice_is_the_newest_build_of_the_current_release_the_driver_runs(driver, tag):
    build = pytorch.first_choice(driver)
    assert (build.tag if build else None) == tag


@pytest.mark.parametrize(
    ("driver", "failed", "tag"),
    [("550.163.01", "cu126", "cu124"), ("535.247.01", "cu126", "cu121"),
     ("580.65.06", "cu132", "cu130"), ("525.60.13", "cu126", "cu118"),
     ("520.61.05", "cu118", None)],
)  # fmt: skip
def test_fallback_is_the_newest_build_the_driver_fully_supports(driver, failed, tag):
    build = pytorch.fallback(driver, tried=(failed,))
    assert (build.tag if build else None) == tag


def test_every_build_has_an_index_and_the_current_ones_lead():
    """PyTorch 2.14 is built for CUDA 12.6, 13.0 and 13.2 (pytorch/pytorch#194367)."""
    assert [b.tag for b in pytorch.BUILDS if b.current] == ["cu132", "cu130", "cu126"]
    assert pytorch.BUILDS[0].index == "https://download.pytorch.org/whl/cu132"


@pytest.mark.parametrize(
    ("driver", "caps", "tag"),
    [
        ("580.65.06", [(6, 1)], "cu126"),  # Pascal: CUDA 13 builds start at Turing
        ("580.65.06", [(7, 0), (8, 6)], "cu126"),  # Volta: cu128 dropped it in 2.11 too
        ("580.65.06", [(5, 2)], "cu126"),  # Maxwell
        ("580.65.06", [(7, 5), (12, 0)], "cu132"),
        ("575.57.08", [(12, 0)], "cu128"),  # Blackwell on 575: no 12.6 code, 12.8 full feature
        ("535.247.01", [(9, 0)], "cu126"),
        # Kepler: no current build; the old ones' architectures were not read, the check decides
        ("580.65.06", [(3, 7)], "cu124"),
    ],
)
def test_the_gpus_compute_capability_rules_out_builds_without_code_for_them(driver, caps, tag):
    build = pytorch.first_choice(driver, caps)
    assert (build.tag if build else None) == tag


def test_a_fallback_needs_code_for_the_gpus_too():
    # Pascal: not cu130 nor cu128 (no code for it), but cu124, whose architectures are left
    # to the check on the GPUs.
    assert pytorch.fallback("580.65.06", tried=("cu126",), caps=[(6, 1)]).tag == "cu124"
    assert pytorch.fallback("580.65.06", tried=("cu132",), caps=[(8, 0)]).tag == "cu130"


def _install(host, argv=ARGV):
    rc, out = install(host, argv)
    assert rc == runner.EXIT_OK, out
    return out


def test_the_build_is_checked_on_the_gpus_as_a_temporary_unprivileged_account(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False, gpus=2)
    out = _install(host, [*ARGV, "--driver", "550-server"])
    assert host.torch == "2.14.1+cu126"
    (account,) = host.checked_as
    assert account.startswith("dlcourse-check-") and account not in host.users  # removed
    assert (
        "PyTorch cu126 (current PyTorch, CUDA 12.6), the newest build that driver 550.163.01 "
        "runs on GPUs of compute capability 8.6" in out
    )
    assert "PyTorch cu126 checked on every GPU as an unprivileged account" in out


def test_a_build_that_fails_on_the_gpus_falls_back_and_says_so(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    host.torch_runs = {"cu124"}
    out = _install(host, [*ARGV, "--driver", "550-server"])
    assert host.torch == "2.6.0+cu124"
    assert "PyTorch cu126 failed on this server (RuntimeError: CUDA error: no kernel image" in out
    assert "falling back to cu124 (PyTorch 2.6, CUDA 12.4), whose full feature set needs " in out
    assert "driver 550.54.14, which 550.163.01 meets" in out
    # A recheck keeps the fallback instead of trying the failing build again.
    host.actions.clear()
    _install(host, [*ARGV, "--driver", "550-server", "--recheck"])
    assert not any("pip install" in a for a in host.actions)


def test_no_build_that_runs_stops_the_install(tmp_path):
    host = FakeHost(tmp_path, driver_needs_reboot=False)
    host.torch_runs = set()
    rc, out = install(host, ARGV)
    assert rc == runner.EXIT_FAILED
    assert "PyTorch cu130 does not run on this server's GPUs either" in out


def test_pre_turing_gpus_on_a_580_driver_get_the_cuda_12_6_build_first(tmp_path):
    """Before: cu130 by the driver alone, then cu128 (no code for Pascal either), and the
    install stopped without trying cu126."""
    host = FakeHost(tmp_path, driver_needs_reboot=False, gpus=2, compute_cap=(6, 1))
    out = _install(host)
    assert host.torch == "2.14.1+cu126"
    assert "the newest build that driver 580.65.06 runs on GPUs of compute capability 6.1" in out
    assert not any("cu13" in a or "cu128" in a for a in host.actions)


def test_no_gpu_installs_the_cpu_build_and_says_the_check_is_skipped(tmp_path):
    host = FakeHost(tmp_path, gpu=False)
    out = _install(host, [*ARGV, "--no-gpu"])
    assert host.torch == "2.14.1+cpu" and host.checked_as == []
    assert "no GPU check: --no-gpu (the CPU build of PyTorch)" in out
