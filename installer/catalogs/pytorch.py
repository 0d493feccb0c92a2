"""Which CUDA build of PyTorch a server's driver and GPUs run, and the check that they do.

Sources, read 2026-12 (each index, download.pytorch.org/whl/cu<NNN>, serves the newest torch
built for it; the pins name what was installed):
- NVIDIA, CUDA Compatibility, "Minor Version Compatibility"
  (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html): an
  application built with CUDA 13.x runs on drivers >= 580, with 12.x on drivers >= 525, with
  11.x on >= 450, with a limited feature set (no PTX JIT for code newer than the driver).
- NVIDIA, CUDA Toolkit release notes, "CUDA Toolkit and Corresponding Driver Versions"
  (Linux x86_64, the full feature set): 13.0 GA >= 580.65.06, 12.8 GA >= 570.26,
  12.6 Update 3 >= 560.35.05, 12.4 GA >= 550.54.14, 12.1 GA >= 530.30.02,
  11.8 GA >= 520.61.05. 13.2's row could not be read here: cu132 is never a fallback.
- PyTorch, the Release Compatibility Matrix and CUDA Support Matrix of RELEASE.md, as its
  pull requests changed them (pytorch/pytorch): 2.14 is built for CUDA 12.6, 13.0 and 13.2,
  all stable (#194367, 2026-08-21; 13.2 the default, 12.6 kept as "Legacy" for the older
  GPUs, RFC #190355); 2.11 was the last with 12.8 (#175253, #182849). Architectures, x86_64
  wheels: 12.6 Maxwell(5.0) Pascal(6.0) Volta(7.0) Turing(7.5) Ampere(8.0, 8.6) Hopper(9.0);
  12.8 from 2.11 on Turing to Blackwell(10.0, 12.0), Volta dropped (#175253, #172352);
  13.0 and 13.2 Turing(7.5) to Blackwell(10.0, 12.0+PTX) (#182849): CUDA 13 builds nothing
  below Turing (RFC #190385). The older builds' architectures were not read here.
- PyTorch 2.15 (GA 2026-10-28) dropped Python 3.10 (pytorch/pytorch#197242); PyPI's torch
  2.15.0 has no wheel for 3.10 (`pip index versions torch --python-version 3.10` ends at
  2.14.1, checked 2026-12-05). TLJH 2.0.0's users' environment is Python 3.12: unaffected.
  Its CUDA matrix is an open proposal (RFC #190385: 13.0 and 13.2 stay, 12.6 goes); were 12.6
  gone, the cu126 index keeps serving 2.14 for pre-Turing GPUs. Not verified here.
- Which GPUs a build runs on: torch's own check (torch/cuda/__init__.py, _check_capability and
  _check_cubins): none older than the build's oldest architecture, and one of the GPU's major
  version ("NVIDIA GPU compute architectures are backward compatible within major version").

So the choice needs both the driver and the GPUs: a 580 driver runs CUDA 13.2, but a Pascal
GPU (6.1) has no code in a CUDA 13 build; its newest build is cu126. Before the driver answers
(the dry run) the GPUs are unknown and only the driver decides. If the check on the real GPUs
still fails, the installer falls back to the newest build whose full-feature minimum the
driver meets and that has code for the GPUs, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

INDEX = "https://download.pytorch.org/whl/{tag}"

# PyTorch's own packages: installed from the index of the CUDA build the installer chose, and
# pinned to it (the builds below). Not torchaudio: it is in maintenance
# (pytorch/audio#3902) and no longer released with PyTorch; its newest, 2.11.1, requires
# torch>=2.11 and pins no build (PyPI's metadata, 2026-12-05), so it comes from PyPI like any
# course package and the import check as a student shows whether it works with the installed
# PyTorch.
PACKAGES = ("torch", "torchvision")
# The conda-forge names that would bring conda's own pytorch, which conda must never install
# over pip's (conda cannot see pip's packages): pinned in the users' environment and refused
# in the course packages' conda section.
CONDA_NAMES = {"torch": "pytorch", "torchvision": "torchvision", "torchaudio": "torchaudio"}

Capability = tuple[int, int]  # (8, 6) for compute capability 8.6


@dataclass(frozen=True)
class CudaBuild:
    tag: str  # cu130: the index and the local version (torch 2.14.1+cu130)
    cuda: str
    minor_compat_driver: int  # lowest driver branch under minor-version compatibility
    full_feature_driver: tuple[int, ...] | None  # None: not known here, never a fallback
    current: bool  # built for a current PyTorch release
    last_release: str = ""  # for a build no current release has: its last PyTorch
    # The architectures it has code for, as sm numbers (86 for 8.6); None: not known here.
    sms: tuple[int, ...] | None = None

    @property
    def index(self) -> str:
        return INDEX.format(tag=self.tag)

    def describe(self) -> str:
        release = f"PyTorch {self.last_release}" if self.last_release else "current PyTorch"
        return f"{self.tag} ({release}, CUDA {self.cuda})"

    def runs_on(self, caps: Sequence[Capability]) -> bool:
        """It has code for every one of these GPUs (torch's own rule, above); a build whose
        architectures are not known here is left to the check on the GPUs."""
        if self.sms is None:
            return True
        oldest = min(self.sms)
        return all(
            major * 10 + minor >= oldest and any(sm // 10 == major for sm in self.sms)
            for major, minor in caps
        )


TURING_TO_BLACKWELL = (75, 80, 86, 90, 100, 120)
BUILDS = [  # newest CUDA first
    CudaBuild("cu132", "13.2", 580, None, current=True, sms=TURING_TO_BLACKWELL),
    CudaBuild("cu130", "13.0", 580, (580, 65, 6), current=True, sms=TURING_TO_BLACKWELL),
    CudaBuild("cu128", "12.8", 525, (570, 26), current=False, last_release="2.11",
              sms=TURING_TO_BLACKWELL),
    CudaBuild("cu126", "12.6", 525, (560, 35, 5), current=True,
              sms=(50, 60, 70, 75, 80, 86, 90)),
    CudaBuild("cu124", "12.4", 525, (550, 54, 14), current=False, last_release="2.6"),
    CudaBuild("cu121", "12.1", 525, (530, 30, 2), current=False, last_release="2.5"),
    CudaBuild("cu118", "11.8", 450, (520, 61, 5), current=False, last_release="2.7"),
]  # fmt: skip
CPU = CudaBuild("cpu", "none", 0, (0,), current=True)


def index_of(pin: str) -> str | None:
    """The index a pinned build came from: ``torch==2.14.1+cu130`` -> .../whl/cu130."""
    label = pin.partition("+")[2]
    return INDEX.format(tag=label) if label else None


def parse_version(text: str) -> tuple[int, ...] | None:
    """``580.65.06`` or a branch ``580`` -> (580, 65, 6); None if it is not a version."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None


def first_choice(driver: str, caps: Sequence[Capability] = ()) -> CudaBuild | None:
    """The newest current build the driver runs (minor-version compatibility) that has code
    for the GPUs; failing that, the newest build it fully supports that has."""
    version = parse_version(driver)
    if version is None:
        return None
    for build in BUILDS:
        if build.current and version[0] >= build.minor_compat_driver and build.runs_on(caps):
            return build
    return fallback(driver, tried=(), caps=caps)


def fallback(
    driver: str, tried: tuple[str, ...], caps: Sequence[Capability] = ()
) -> CudaBuild | None:
    """The newest build not tried whose full-feature minimum driver this one meets and that
    has code for the GPUs."""
    version = parse_version(driver)
    if version is None or len(version) < 2:
        return None
    for build in BUILDS:
        full = build.full_feature_driver
        if build.tag not in tried and full and version >= full and build.runs_on(caps):
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
