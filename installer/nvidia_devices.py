"""Which /dev/nvidiaN is which GPU, from the driver's /proc files, for strict mode.

N is the device minor number, which is not NVML's (nvidia-smi's) index: the driver numbers
GPUs as it probes them, NVML by PCI bus. Each GPU's
``/proc/driver/nvidia/gpus/<domain:bus:device.function>/information`` has lines
``GPU UUID: GPU-...`` and ``Device Minor: N`` (NVIDIA driver README, "Using the /proc File
System Interface"). /proc stays readable in the hub's unit (``PrivateDevices=yes`` hides
/dev only).
"""

from __future__ import annotations

from pathlib import Path

DRIVER_PROC = "/proc/driver/nvidia"
MAX_FILE_BYTES = 64 * 1024


def parse_information(text: str) -> tuple[str, int] | None:
    """(uuid, minor) from one GPU's information file; None if either is missing."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    uuid, minor = fields.get("GPU UUID", ""), fields.get("Device Minor", "")
    return (uuid, int(minor)) if uuid and minor.isdigit() else None


def device_minors(driver_proc: str = DRIVER_PROC) -> dict[str, int]:
    """GPU uuid -> device minor of every GPU the driver lists (empty without a driver)."""
    minors = {}
    for info in sorted(Path(driver_proc).glob("gpus/*/information")):
        try:
            with info.open(errors="replace") as f:
                found = parse_information(f.read(MAX_FILE_BYTES))
        except OSError:
            continue
        if found:
            minors[found[0]] = found[1]
    return minors
