"""Which CUDA build of PyTorch a driver runs, and the check that it really does.

Sources, read 2026-08:
- NVIDIA, CUDA Compatibility, "Minor Version Compatibility"
  (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html): an
  application built with CUDA 13.x runs on drivers >= 580, with 12.x on drivers >= 525, with
  11.x on >= 450, with a limited feature set (no PTX JIT for code newer than the driver).
- NVIDIA, CUDA Toolkit release notes, "CUDA Toolkit and Corresponding Driver Versions"
  (Linux x86_64, the full feature set): 13.0 GA >= 580.65.06, 12.8 GA >= 570.26,
  12.6 Update 3 >= 560.35.05, 12.4 GA >= 550.54.14, 12.1 GA >= 530.30.02,
  11.8 GA >= 520.61.05.
- PyTorch, RELEASE.md "Release Compatibility Matrix" (pytorch/pytorch): the current release,
  2.13 (2026-07-08), is built for CUDA 12.6 and 13.0 (13.2 experimental); 2.11 was the last
  with 12.8, 2.7 with 11.8, 2.6 with 12.4, 2.5 with 12.1. Each build has its own index,
  download.pytorch.org/whl/cu<NNN>, whose newest torch is the newest release built for it.

Checked again 2026-12-01, because the pins (/opt/tljh/user/pytorch-constraints.txt) name the
build this table chooses: PyPI's newest torch is 2.15.0 (`pip index versions torch`). The
pytorch/pytorch RELEASE.md that could be read here is older (its matrix ends before 2.4); a
third-party copy of the newer matrix lists 2.14 (2026-09-02) with CUDA 12.6, 13.0 and 13.2 as
stable, so cu126 was not dropped, and has no row for 2.15 (planned for 2026-10-28). Neither is
verified from PyTorch itself, so the table still describes 2.13. Were 2.14's cu132 confirmed,
a 580 server's first choice would become cu132 (13.x runs on >= 580). Each index serves the
newest torch built for its CUDA, whatever the release, and the pins name what was installed.

So a 535 or 550 server runs the current release's cu126 build (minor-version compatibility),
not the cu121/cu124 builds of PyTorch 2.5/2.6 that its full-feature minimum would pick. If the
check on the real GPUs fails (a GPU the build has no code for would need the PTX JIT that
minor-version compatibility lacks), the installer falls back to the newest build whose
full-feature minimum the driver meets, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

INDEX = "https://download.pytorch.org/whl/{tag}"


@dataclass(frozen=True)
class CudaBuild:
    tag: str  # cu130: the index and the local version (torch 2.13.0+cu130)
    cuda: str
    minor_compat_driver: int  # lowest driver branch under minor-version compatibility
    full_feature_driver: tuple[int, ...]
    current: bool  # built for the current PyTorch release
    last_release: str = ""  # for a build the current release lacks: its last PyTorch

    @property
    def index(self) -> str:
        return INDEX.format(tag=self.tag)

    def describe(self) -> str:
        release = f"PyTorch {self.last_release}" if self.last_release else "current PyTorch"
        return f"{self.tag} ({release}, CUDA {self.cuda})"


BUILDS = [  # newest CUDA first
    CudaBuild("cu130", "13.0", 580, (580, 65, 6), current=True),
    CudaBuild("cu128", "12.8", 525, (570, 26), current=False, last_release="2.11"),
    CudaBuild("cu126", "12.6", 525, (560, 35, 5), current=True),
    CudaBuild("cu124", "12.4", 525, (550, 54, 14), current=False, last_release="2.6"),
    CudaBuild("cu121", "12.1", 525, (530, 30, 2), current=False, last_release="2.5"),
    CudaBuild("cu118", "11.8", 450, (520, 61, 5), current=False, last_release="2.7"),
]
CPU = CudaBuild("cpu", "none", 0, (0,), current=True)


def index_of(pin: str) -> str | None:
    """The index a pinned build came from: ``torch==2.13.0+cu130`` -> .../whl/cu130."""
    label = pin.partition("+")[2]
    return INDEX.format(tag=label) if label else None


def parse_version(text: str) -> tuple[int, ...] | None:
    """``580.65.06`` or a branch ``580`` -> (580, 65, 6); None if it is not a version."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None


def first_choice(driver: str) -> CudaBuild | None:
    """The newest build of the current release the driver runs (minor-version compatibility);
    for a driver too old for any, the newest build it fully supports."""
    version = parse_version(driver)
    if version is None:
        return None
    for build in BUILDS:
        if build.current and version[0] >= build.minor_compat_driver:
            return build
    return fallback(driver, tried=())


def fallback(driver: str, tried: tuple[str, ...]) -> CudaBuild | None:
    """The newest build whose full-feature minimum driver this one meets."""
    version = parse_version(driver)
    if version is None or len(version) < 2:
        return None
    for build in BUILDS:
        if build.tag not in tried and version >= build.full_feature_driver:
            return build
    return None


# Run as a temporary unprivileged account, as a student's kernel runs: CUDA is there, and a
# small matrix product gives the right answer on every GPU.
CHECK = """\
import sys, torch
if not torch.cuda.is_available():
    sys.exit("torch.cuda.is_available() is False")
count = torch.cuda.device_count()
for i in range(count):
    a = torch.ones(64, 64, device=f"cuda:{i}")
    total = (a @ a).sum().item()
    if total != 64 ** 3:
        sys.exit(f"GPU {i}: a 64x64 matrix product gave {total}, not {64 ** 3}")
print(torch.__version__, count)
"""
VERSION = "import torch; print(torch.__version__)"
