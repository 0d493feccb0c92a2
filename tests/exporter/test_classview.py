from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dlcourse_exporter.classview import class_status


def family(kind, name, labels, rows):
    metric = kind(name, "h", labels=labels)
    for values, value in rows:
        metric.add_metric(values, value)
    return metric


def test_class_status_joins_hub_gpu_and_kernel_series():
    families = [
        family(
            GaugeMetricFamily,
            "dlcourse_gpu_up",
            ["gpu", "uuid"],
            [(["0", "a"], 1), (["1", "b"], 0)],
        ),
        family(
            GaugeMetricFamily,
            "dlcourse_gpu_utilization_ratio",
            ["gpu", "uuid"],
            [(["0", "a"], 0.5)],
        ),
        family(
            GaugeMetricFamily,
            "dlcourse_hub_user_info",
            ["user", "admin"],
            [(["alice", "false"], 1)],
        ),
        family(
            GaugeMetricFamily,
            "dlcourse_hub_user_group_info",
            ["user", "group"],
            [(["alice", "mon"], 1)],
        ),
        family(
            GaugeMetricFamily,
            "dlcourse_hub_user_servers",
            ["user", "state"],
            [(["alice", "ready"], 1), (["alice", "pending"], 0)],
        ),
        family(
            GaugeMetricFamily,
            "dlcourse_user_gpu_memory_used_bytes",
            ["user", "gpu", "uuid"],
            [(["alice", "0", "a"], 100), (["bob", "0", "a"], 50), (["alice", "1", "b"], 10)],
        ),
        family(
            CounterMetricFamily,
            "dlcourse_user_kernel_crashes",
            ["user", "signal"],
            [(["bob", "SIGKILL"], 2), (["bob", "SIGSEGV"], 1)],
        ),
    ]
    status = class_status(families)
    assert [g["gpu"] for g in status["gpus"]] == ["0", "1"]
    assert status["gpus"][1]["up"] is False
    alice, bob = status["students"]
    assert alice["user"] == "alice" and alice["groups"] == ["mon"] and alice["server"] == "ready"
    assert alice["gpus"] == ["0", "1"] and alice["gpu_memory_bytes"] == 110
    assert bob["crashes"] == 3 and bob["server"] is None
