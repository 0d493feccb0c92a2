"""The NVIDIA driver's /proc files for the stand-in GPUs.

The GPU hook lists the GPUs from ``/proc/driver/nvidia/gpus/<bus>/information`` (``GPU UUID``
and ``Device Minor`` lines; NVIDIA driver README, "Using the /proc File System Interface"), not
from NVML: tests and the live class write these files beside a scenario and point the hook at
their folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_driver_proc(
    folder: Path, uuids: Sequence[str], minors: Sequence[int] | None = None
) -> str:
    """One ``gpus/<bus>/information`` file per uuid, in PCI bus order; device minors in
    reverse order unless given (they differ from NVML's indices on real servers)."""
    minors = minors if minors is not None else list(reversed(range(len(uuids))))
    for index, (uuid, minor) in enumerate(zip(uuids, minors, strict=True)):
        info = folder / "gpus" / f"0000:{0x18 + index:02x}:00.0" / "information"
        info.parent.mkdir(parents=True)
        info.write_text(f"Model:  Stand-in\nGPU UUID:  {uuid}\nDevice Minor:  {minor}\n")
    return str(folder)
