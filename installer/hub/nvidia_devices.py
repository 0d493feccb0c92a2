"""The GPUs the NVIDIA driver lists, from its /proc files: the hook's list of GPUs.

Each GPU has ``/proc/driver/nvidia/gpus/<domain:bus:device.function>/information`` with the
lines ``GPU UUID: GPU-...`` and ``Device Minor: N`` (NVIDIA driver README, "Using the /proc
File System Interface"; NVIDIA/nvidia-container-toolkit v1.17.6 internal/info/proc reads the
same fields from the same files). The hub can read them: TLJH's unit has
``PrivateDevices=yes``, which hides /dev only, and ``ProtectKernelTunables=yes``, which makes
/proc/sys and a few others read-only and leaves /proc/driver alone (systemd.exec(5),
systemd 252; tljh/systemd-units/jupyterhub.service, TLJH 2.0.0).

Only root (the kernel module) writes there, so a student cannot add or hide a GPU; what the
exporter says about GPUs is load, never the list (gpu_hook.py).

- N, the device minor, names /dev/nvidiaN for strict mode; it is not nvidia-smi's index:
  the driver numbers GPUs as it probes them.
- The index is the GPU's place in PCI bus order: the order the hub's
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` gives CUDA (tljh_plugin.py) and nvidia-smi's numbering on
  the servers we know (NVML itself promises no order: nvmlDeviceGetIndex). The roster's gpu
  column and the hub's log count by it, never by what the exporter says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DRIVER_PROC = "/proc/driver/nvidia"
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class DriverGpu:
    index: int  # place in PCI bus order
    uuid: str
    minor: int  # /dev/nvidiaN


def parse_information(text: str) -> tuple[str, int] | None:
    """(uuid, minor) from one GPU's information file; None if either is missing."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    uuid, minor = fields.get("GPU UUID", ""), fields.get("Device Minor", "")
    # 0-9 only: str.isdigit() is also true for '²' (int() refuses it) and '٣' (int() reads 3).
    digits = minor.isascii() and minor.isdigit()
    return (uuid, int(minor)) if uuid and digits else None


def bus_order(folder: Path) -> tuple[float, ...]:
    """The PCI address ``0000:18:00.0`` as numbers (domain, bus, device, function)."""
    try:
        return tuple(int(part, 16) for part in folder.name.replace(".", ":").split(":"))
    except ValueError:
        return (float("inf"),)


def driver_gpus(driver_proc: str = DRIVER_PROC) -> tuple[DriverGpu, ...]:
    """Every GPU the driver lists, in PCI bus order (none without a driver)."""
    found = []
    for folder in sorted(Path(driver_proc).glob("gpus/*"), key=bus_order):
        try:
            with (folder / "information").open(errors="replace") as f:
                parsed = parse_information(f.read(MAX_FILE_BYTES))
        except OSError:
            continue
        if parsed:
            found.append(parsed)
    return tuple(DriverGpu(index, uuid, minor) for index, (uuid, minor) in enumerate(found))
