"""What the fake GPUs report: dataclasses, validated and written as the file the library reads.

The file is line based, one ``key value...`` record per line, so the C side needs no JSON
parser. A ``gpu`` line starts the next GPU; the lines after it describe that GPU (the
``# ...`` notes below explain the example and are not part of the format)::

    fakenvml-scenario 1
    driver_version 550.54.15
    cuda_version 12040
    init_error 0
    gpu
    uuid GPU-8a1f6c2e-0000-4000-8000-000000000000
    name NVIDIA A100-SXM4-80GB
    utilization 35 12                 # gpu% memory%
    memory 85899345920 2147483648     # total used (bytes)
    temperature 41
    power 98000 400000                # usage limit (mW)
    clocks 1410 1593                  # sm mem (MHz)
    clocks_event_reasons 0
    ecc 0 0                           # corrected uncorrected
    lost 0
    not_supported temperature ecc
    process 4242 1073741824 30 5 compute   # pid used_memory|na sm% mem% kind
    xid 1 79                          # event id, xid
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pynvml

GIB = 1024**3

# Getter groups that Gpu.not_supported may name; the C side keeps the same list.
NOT_SUPPORTED_FIELDS = frozenset(
    {
        "utilization",
        "memory",
        "temperature",
        "power",
        "power_limit",
        "clocks",
        "clocks_event_reasons",
        "ecc",
        "processes",
        "process_utilization",
        "events",
        "pci",
    }
)
PROCESS_KINDS = ("compute", "graphics")
_UINT_MAX = 2**32 - 1
_ULL_MAX = 2**64 - 2  # 2**64 - 1 is NVML's "not available"


class ScenarioError(ValueError):
    """A scenario that the library could not honestly report."""


@dataclass
class Process:
    pid: int
    used_memory: int | None = 0  # bytes; None is NVML's "not available" (pynvml gives None)
    sm_util: int = 0  # percent; with mem_util 0 too, NVML has no utilization sample for it
    mem_util: int = 0  # percent
    kind: str = "compute"  # or "graphics"


@dataclass
class XidEvent:
    id: int  # unique in the scenario: each id is delivered once per process
    xid: int


@dataclass
class Gpu:
    uuid: str | None = None  # None: derived from the GPU's index
    name: str = "NVIDIA A100-SXM4-80GB"
    utilization_gpu: int = 0
    utilization_memory: int = 0
    memory_total: int = 80 * GIB
    memory_used: int = 0
    temperature: int = 35
    power_mw: int = 60_000
    power_limit_mw: int = 400_000
    clock_sm_mhz: int = 1410
    clock_mem_mhz: int = 1593
    clocks_event_reasons: int = 0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    processes: list[Process] = field(default_factory=list)
    xid_events: list[XidEvent] = field(default_factory=list)
    not_supported: Iterable[str] = field(default_factory=set)
    lost: bool = False


def default_uuid(index: int) -> str:
    return f"GPU-fa4e0000-0000-4000-8000-{index:012d}"


@dataclass
class Scenario:
    driver_version: str = "550.54.15"
    cuda_version: int = 12040
    gpus: list[Gpu] = field(default_factory=list)
    init_error: str | None = None  # e.g. "DRIVER_NOT_LOADED": what nvmlInit returns

    def to_text(self) -> str:
        """The file's content; raises ScenarioError listing every problem found."""
        problems = _problems(self)
        if problems:
            raise ScenarioError("invalid scenario: " + "; ".join(problems))
        lines = [
            "fakenvml-scenario 1",
            f"driver_version {self.driver_version}",
            f"cuda_version {self.cuda_version}",
            f"init_error {_init_error_code(self.init_error)}",
        ]
        for index, gpu in enumerate(self.gpus):
            lines += _gpu_lines(index, gpu)
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Writes atomically (temp file + os.replace): the library never sees half a file."""
        path = Path(path)
        text = self.to_text()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # the programs under test may run as other accounts
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _gpu_lines(index: int, gpu: Gpu) -> list[str]:
    lines = [
        "gpu",
        f"uuid {gpu.uuid or default_uuid(index)}",
        f"name {gpu.name}",
        f"utilization {gpu.utilization_gpu} {gpu.utilization_memory}",
        f"memory {gpu.memory_total} {gpu.memory_used}",
        f"temperature {gpu.temperature}",
        f"power {gpu.power_mw} {gpu.power_limit_mw}",
        f"clocks {gpu.clock_sm_mhz} {gpu.clock_mem_mhz}",
        f"clocks_event_reasons {gpu.clocks_event_reasons}",
        f"ecc {gpu.ecc_corrected} {gpu.ecc_uncorrected}",
        f"lost {int(gpu.lost)}",
    ]
    if gpu.not_supported:
        lines.append("not_supported " + " ".join(sorted(gpu.not_supported)))
    for p in gpu.processes:
        memory = "na" if p.used_memory is None else p.used_memory
        lines.append(f"process {p.pid} {memory} {p.sm_util} {p.mem_util} {p.kind}")
    lines += [f"xid {e.id} {e.xid}" for e in gpu.xid_events]
    return lines


def _init_error_code(name: str | None) -> int:
    if name is None:
        return pynvml.NVML_SUCCESS
    return getattr(pynvml, f"NVML_ERROR_{name}")


def _problems(s: Scenario) -> list[str]:
    problems = []

    def check_int(where: str, value: object, low: int, high: int) -> None:
        if type(value) is not int or not low <= value <= high:
            problems.append(f"{where} must be an int in [{low}, {high}], got {value!r}")

    def check_text(where: str, value: object) -> None:
        if not isinstance(value, str) or not value or "\n" in value or len(value) > 79:
            problems.append(f"{where} must be a one-line string of 1-79 characters")

    check_text("driver_version", s.driver_version)
    check_int("cuda_version", s.cuda_version, 1000, 99_999)
    if s.init_error is not None and not isinstance(
        getattr(pynvml, f"NVML_ERROR_{s.init_error}", None), int
    ):
        problems.append(f"init_error {s.init_error!r} is not an NVML_ERROR_* name")
    if len(s.gpus) > 64:
        problems.append(f"at most 64 GPUs, got {len(s.gpus)}")
    uuids, event_ids = set(), set()
    for i, g in enumerate(s.gpus):
        at = f"gpus[{i}]"
        uuid = g.uuid or default_uuid(i)
        check_text(f"{at}.uuid", uuid)
        check_text(f"{at}.name", g.name)
        if uuid in uuids:
            problems.append(f"{at}.uuid {uuid!r} is not unique")
        uuids.add(uuid)
        for name in ("utilization_gpu", "utilization_memory"):
            check_int(f"{at}.{name}", getattr(g, name), 0, 100)
        for name in ("memory_total", "memory_used", "clocks_event_reasons"):
            check_int(f"{at}.{name}", getattr(g, name), 0, _ULL_MAX)
        for name in ("ecc_corrected", "ecc_uncorrected"):
            check_int(f"{at}.{name}", getattr(g, name), 0, _ULL_MAX)
        for name in ("temperature", "power_mw", "power_limit_mw", "clock_sm_mhz", "clock_mem_mhz"):
            check_int(f"{at}.{name}", getattr(g, name), 0, _UINT_MAX)
        sizes = (g.memory_used, g.memory_total)
        if all(isinstance(v, int) for v in sizes) and g.memory_used > g.memory_total:
            problems.append(f"{at}.memory_used exceeds memory_total")
        unknown = set(g.not_supported) - NOT_SUPPORTED_FIELDS
        if unknown:
            problems.append(
                f"{at}.not_supported has unknown {sorted(unknown)}; "
                f"known: {sorted(NOT_SUPPORTED_FIELDS)}"
            )
        pids = set()
        for k, p in enumerate(g.processes):
            where = f"{at}.processes[{k}]"
            check_int(f"{where}.pid", p.pid, 1, _UINT_MAX)
            if p.used_memory is not None:
                check_int(f"{where}.used_memory", p.used_memory, 0, _ULL_MAX)
            check_int(f"{where}.sm_util", p.sm_util, 0, 100)
            check_int(f"{where}.mem_util", p.mem_util, 0, 100)
            if p.kind not in PROCESS_KINDS:
                problems.append(f"{where}.kind must be one of {PROCESS_KINDS}, got {p.kind!r}")
            if p.pid in pids:
                problems.append(f"{where}.pid {p.pid} appears twice on this GPU")
            pids.add(p.pid)
        for k, e in enumerate(g.xid_events):
            check_int(f"{at}.xid_events[{k}].id", e.id, 0, _ULL_MAX)
            check_int(f"{at}.xid_events[{k}].xid", e.xid, 0, _ULL_MAX)
            if e.id in event_ids:
                problems.append(f"{at}.xid_events[{k}].id {e.id} is not unique")
            event_ids.add(e.id)
    return problems
