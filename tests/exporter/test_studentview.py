"""One student's document and the class's idle kernels, from a snapshot made by hand and the
processes collector's real families; and the students collector's series, zeros included."""

from __future__ import annotations

from dlcourse_exporter.collectors.processes import (
    Assignment,
    ProcessesCollector,
    ProcessesView,
    UserGpuUse,
)
from dlcourse_exporter.collectors.students import StudentsCollector
from dlcourse_exporter.model import (
    DEATH_REASONS,
    GpuTime,
    KernelDeath,
    KernelGpuUse,
    OtherGpuProcess,
    StudentsSnapshot,
)
from dlcourse_exporter.studentview import MAX_KERNELS, idle_kernels, student_status

GIB = 1 << 30


def kernel(user: str, name: str, idle: float | None, memory: int = GIB) -> KernelGpuUse:
    gpus = ("GPU-a",) if memory else ()
    return KernelGpuUse(user, name, 100, 5.0, memory, 0.0, idle, gpus, f"{name}.ipynb")


SNAPSHOT = StudentsSnapshot(
    generated_at=1234.5,
    users=frozenset({"ada", "bob", "carol"}),
    kernel_users=frozenset({"ada", "bob"}),
    gpu_time=(GpuTime("ada", 0, "GPU-a", 30.0, 9e9), GpuTime("bob", 0, "GPU-a", 1.0, 1.0)),
    kernels=(
        kernel("ada", "k1", 50.0),
        kernel("ada", "k2", None),
        kernel("bob", "k3", 40.0),
        kernel("bob", "k4", None, memory=0),
    ),
    other_processes=(OtherGpuProcess("ada", 7, "python train.py", GIB, None, ("GPU-a",)),),
    deaths=(KernelDeath("ada", "k0", 1000.0, "cuda_oom", "CUDA out of memory.", "k0.ipynb"),),
    death_counts={("ada", "cuda_oom"): 1},
    idle_culls={"bob": 2},
)
PROCESSES = list(
    ProcessesCollector().render(
        ProcessesView(
            users=(UserGpuUse("ada", 0, "GPU-a", 2 * GIB, 0.25, 2),),
            unattributed=(),
            assigned=(Assignment("ada", 1, "GPU-b"), Assignment("bob", 0, "GPU-a")),
        )
    )
)


def test_a_student_gets_their_own_data_and_nothing_of_anyone_else():
    doc = student_status("ada", SNAPSHOT, PROCESSES)
    assert doc == {
        "user": "ada",
        "generated_at": 1234.5,
        "gpus": [
            {
                "gpu": "0",
                "uuid": "GPU-a",
                "assigned": False,
                "memory_used_bytes": 2 * GIB,
                "utilization_ratio": 0.25,
            },
            {
                "gpu": "1",
                "uuid": "GPU-b",
                "assigned": True,
                "memory_used_bytes": 0,
                "utilization_ratio": 0.0,
            },
        ],
        "gpu_seconds_total": {"GPU-a": 30.0},
        "gpu_memory_byte_seconds_total": {"GPU-a": 9e9},
        "kernels": [
            {
                "kernel_id": "k1",
                "notebook": "k1.ipynb",
                "started": 5.0,
                "gpu_memory_bytes": GIB,
                "gpu_utilization_ratio": 0.0,
                "gpu_idle_since": 50.0,
                "gpus": ["GPU-a"],
            },
            {
                "kernel_id": "k2",
                "notebook": "k2.ipynb",
                "started": 5.0,
                "gpu_memory_bytes": GIB,
                "gpu_utilization_ratio": 0.0,
                "gpu_idle_since": None,
                "gpus": ["GPU-a"],
            },
        ],
        "other_gpu_processes": [
            {
                "pid": 7,
                "command": "python train.py",
                "gpu_memory_bytes": GIB,
                "gpu_idle_since": None,
            }
        ],
        "deaths": [
            {
                "kernel_id": "k0",
                "notebook": "k0.ipynb",
                "at": 1000.0,
                "reason": "cuda_oom",
                "detail": "CUDA out of memory.",
            }
        ],
        "idle_culls": 0,
    }
    carol = student_status("carol", SNAPSHOT, PROCESSES)
    assert carol["gpus"] == carol["kernels"] == carol["deaths"] == [] and carol["idle_culls"] == 0
    assert student_status("mallory", SNAPSHOT, PROCESSES) is None


def test_a_students_lists_are_bounded():
    many = StudentsSnapshot(
        1.0,
        frozenset({"ada"}),
        frozenset({"ada"}),
        kernels=tuple(kernel("ada", f"k{i}", None) for i in range(3 * MAX_KERNELS)),
    )
    assert len(student_status("ada", many, [])["kernels"]) == MAX_KERNELS


def test_idle_kernels_are_those_holding_memory_with_a_clock_the_longest_idle_first():
    assert idle_kernels(SNAPSHOT) == [
        {
            "user": "bob",
            "kernel_id": "k3",
            "gpu_memory_bytes": GIB,
            "gpu_idle_since": 40.0,
            "gpus": ["GPU-a"],
        },
        {
            "user": "ada",
            "kernel_id": "k1",
            "gpu_memory_bytes": GIB,
            "gpu_idle_since": 50.0,
            "gpus": ["GPU-a"],
        },
    ]


def test_the_collector_counts_gpu_time_deaths_by_reason_and_culls_with_zeros():
    collector = StudentsCollector()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.render(collector.view(SNAPSHOT))
        for sample in family.samples
    }
    gpu = (("gpu", "0"), ("user", "ada"), ("uuid", "GPU-a"))
    assert samples[("dlcourse_user_gpu_seconds_total", gpu)] == 30.0
    assert samples[("dlcourse_user_gpu_memory_byte_seconds_total", gpu)] == 9e9
    deaths = {
        (dict(labels)["user"], dict(labels)["reason"]): value
        for (name, labels), value in samples.items()
        if name == "dlcourse_user_kernel_deaths_total"
    }
    assert deaths == {
        (user, reason): 1.0 if (user, reason) == ("ada", "cuda_oom") else 0.0
        for user in ("ada", "bob")
        for reason in DEATH_REASONS
    }
    culls = {
        dict(labels)["user"]: value
        for (name, labels), value in samples.items()
        if name == "dlcourse_user_gpu_idle_culls_total"
    }
    assert culls == {"ada": 0.0, "bob": 2.0, "carol": 0.0}  # zeros for every hub user
    assert list(collector.render(None)) == []
