"""The Helm chart through real helm, Kubernetes' schemas, the Operator's models, the exporter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
from cloudcoil.models.prometheus_operator import v1 as monitoring
from helm_chart import (
    CHART,
    NAMESPACE,
    REPO,
    SHARING_VALUES,
    SINGLE_SERVER_JOBS,
    container,
    only,
)

from dlcourse_exporter.collectors import COLLECTORS
from dlcourse_exporter.docs import all_metrics

KUBERNETES_DOC = REPO / "docs" / "kubernetes.md"
# The chart's floor (Chart.yaml kubeVersion) and the newest schemas the package ships.
KUBERNETES_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
OPERATOR_MODELS = {
    "PrometheusRule": monitoring.PrometheusRule,
    "ServiceMonitor": monitoring.ServiceMonitor,
}
# Labels the Prometheus Operator and our relabelings put on every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "service", "pod", "container", "endpoint"}


@pytest.fixture(params=["default", "gpu-sharing"])
def objects(request, default_objects, sharing_objects) -> list[dict]:
    return default_objects if request.param == "default" else sharing_objects


@pytest.mark.parametrize(
    "values", [(), ("--values", str(SHARING_VALUES))], ids=["default", "gpu-sharing"]
)
def test_helm_lint_strict(helm, values):
    result = helm.run("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_the_kubernetes_schemas(objects, version):
    core = [o for o in objects if o["kind"] not in OPERATOR_MODELS]
    assert {o["kind"] for o in core} >= {
        "DaemonSet",
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
    }
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def missing_fields(given: object, parsed: object, where: str = "") -> list[str]:
    """Paths present in `given` but absent from `parsed`: fields the model did not know."""
    missing: list[str] = []
    if isinstance(given, dict):
        for key, value in given.items():
            if isinstance(parsed, dict) and key in parsed:
                missing += missing_fields(value, parsed[key], f"{where}.{key}")
            else:
                missing.append(f"{where}.{key}")
    elif isinstance(given, list):
        for i, item in enumerate(given):
            missing += missing_fields(item, parsed[i], f"{where}[{i}]")
    return missing


def test_monitoring_objects_match_the_prometheus_operator_models(objects):
    checked = 0
    for obj in objects:
        if obj["kind"] in OPERATOR_MODELS:
            model = OPERATOR_MODELS[obj["kind"]].model_validate(obj)
            parsed = model.model_dump(by_alias=True, exclude_none=True, mode="json")
            assert missing_fields(obj, parsed) == [], obj["metadata"]["name"]
            checked += 1
    assert checked == 4  # the PrometheusRule and three ServiceMonitors


def test_the_model_check_can_fail():
    """A misspelt field is not silently accepted: pydantic drops it, missing_fields finds it."""
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "relabellings": []}]},
    }
    parsed = monitoring.ServiceMonitor.model_validate(monitor).model_dump(
        by_alias=True, exclude_none=True
    )
    assert missing_fields(monitor, parsed) == [".spec.endpoints[0].relabellings"]


def test_with_default_job_names_the_dashboards_are_the_shipped_json(helm):
    maps = [o for o in helm.template(*SINGLE_SERVER_JOBS) if o["kind"] == "ConfigMap"]
    shipped = {
        p.name: p.read_text(encoding="utf-8")
        for p in (REPO / "grafana" / "dashboards").glob("*.json")
    }
    assert {name: text for m in maps for name, text in m["data"].items()} == shipped
    for dashboard in maps:
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_dashboards_select_the_chart_job_names(default_objects):
    hub_health = only(default_objects, "ConfigMap", "-hub-health")["data"]["hub-health.json"]
    assert 'job=\\"node-exporter\\"' in hub_health and "${job." not in hub_health
    assert 'job=\\"node\\"' not in hub_health


@pytest.mark.live
def test_generated_chart_files_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "helm" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ('jobs.node=node"} or vector(1) #', "/jobs/node"),
        ("gpuNode.enabled=false", "'gpuNode' not allowed"),
        ("hubCollector.interval=0", "/hubCollector/interval"),
        ("hubCollector.apiUrl=hub:8081", "/hubCollector/apiUrl"),
        ("gpuNodes.extraArgs[0]=oops", "/gpuNodes/extraArgs/0"),
    ],
)
def test_bad_values_are_refused_before_anything_is_rendered(helm, setting, complaint):
    result = helm.run("template", "dlcourse", str(CHART), "--set", setting)
    assert result.returncode != 0 and result.stdout == ""
    assert complaint in result.stderr


def exporter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlcourse_exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def runnable_here(args: list[str], tmp_path: Path) -> list[str]:
    """The pod's arguments with its mounted files and downward-API values made local."""
    local = []
    for arg in args:
        flag, _, value = arg.partition("=")
        if value.startswith(("/etc/dlcourse/", "/var/run/secrets/")):
            path = tmp_path / value.strip("/").replace("/", "_")
            path.write_text("not-a-real-token\n")
            value = str(path)
        local.append(f"{flag}={value.replace('$(NODE_NAME)', 'gpu-node-1')}" if value else flag)
    return local


def test_hub_collector_arguments_pass_the_exporters_check(default_objects, tmp_path):
    args = container(only(default_objects, "Deployment", "-hub-collector"))["args"]
    result = exporter("--check-config", *runnable_here(args, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "collectors hub, hub http://hub:8081/hub/api" in result.stdout


def specified_flags() -> set[str]:
    """The flags docs/kubernetes.md specifies for the exporter's Kubernetes mode."""
    section = KUBERNETES_DOC.read_text().split("## What the chart asks of the exporter")[1]
    section = section.split("\n## ")[0]
    return set(re.findall(r"^\| `(--[\w.-]+)`", section, re.M))


def test_gpu_node_arguments_pass_the_exporters_check(default_objects, sharing_objects, tmp_path):
    known = set(re.findall(r"--[a-z][\w.-]*", exporter("--help").stdout))
    specified = specified_flags()
    assert "--attribution" in specified and specified <= known
    passed = set()
    in_a_pod = {**os.environ, "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    for objects in (default_objects, sharing_objects):
        args = container(only(objects, "DaemonSet"))["args"]
        passed |= {arg.split("=")[0] for arg in args}
        result = exporter("--check-config", *runnable_here(args, tmp_path), env=in_a_pod)
        assert result.returncode == 0, result.stderr
        assert "collectors gpu, kernels, kubernetes, processes," in result.stdout
    # The table names what the chart passes, no more (--kubernetes.api-url only when set).
    assert specified - passed <= {"--kubernetes.api-url"}


def test_gpu_node_pods(objects):
    daemonset = only(objects, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    exporter_container = container(daemonset)
    assert pod["hostPID"] is True
    assert not any("hostPath" in volume for volume in pod["volumes"])
    assert "resources" not in exporter_container or not any(
        "nvidia.com" in key
        for section in exporter_container["resources"].values()
        for key in section
    )  # it must not take a GPU away from the students
    env = {e["name"]: e for e in exporter_container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    security = exporter_container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    args = exporter_container["args"]
    assert "--no-collector.hub" in args and "--no-collector.host" in args
    exit_events = pod.get("hostNetwork", False)
    assert f"--kernels.exit-events={'auto' if exit_events else 'poll'}" in args


def test_the_default_and_the_example_differ_where_they_should(default_objects, sharing_objects):
    default_pod = only(default_objects, "DaemonSet")["spec"]["template"]["spec"]
    sharing_pod = only(sharing_objects, "DaemonSet")["spec"]["template"]["spec"]
    assert default_pod["runtimeClassName"] == "nvidia" and "runtimeClassName" not in sharing_pod
    assert "hostNetwork" not in default_pod and sharing_pod["hostNetwork"] is True
    assert "affinity" in default_pod and "affinity" not in sharing_pod
    assert sharing_pod["nodeSelector"] == {"nvidia.com/gpu.sharing-strategy": "time-slicing"}


def test_least_rbac(default_objects, sharing_objects):
    role = only(default_objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = only(default_objects, "RoleBinding")
    [subject] = binding["subjects"]
    assert (
        subject["name"].endswith("-gpu-node")
        and binding["roleRef"]["name"] == role["metadata"]["name"]
    )
    assert not [o for o in default_objects if o["kind"].startswith("Cluster")]
    # Students in namespaces of their own: the same rule, cluster-wide, under a qualified name.
    cluster_role = only(sharing_objects, "ClusterRole")
    assert cluster_role["rules"] == role["rules"]
    assert cluster_role["metadata"]["name"].startswith(f"{NAMESPACE}-")
    # Still only the hub's namespaces name students (issue 21: any namespace was believed).
    args = container(only(sharing_objects, "DaemonSet"))["args"]
    assert f"--kubernetes.namespace={NAMESPACE}" in args
    assert "--kubernetes.user-namespaces=true" in args
    default_args = container(only(default_objects, "DaemonSet"))["args"]
    assert not [a for a in default_args if a.startswith("--kubernetes.user-namespaces")]
    # The hub collector holds no Kubernetes credentials at all.
    hub_account = only(default_objects, "ServiceAccount", "-hub-collector")
    hub_pod = only(default_objects, "Deployment", "-hub-collector")["spec"]["template"]["spec"]
    assert hub_account["automountServiceAccountToken"] is False
    assert hub_pod["automountServiceAccountToken"] is False


def test_tokens_only_as_read_only_files(objects):
    for workload in (only(objects, "DaemonSet"), only(objects, "Deployment")):
        pod = workload["spec"]["template"]["spec"]
        exporter_container = container(workload)
        assert not any(
            "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
            for e in exporter_container.get("env", [])
        )
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        assert secrets and all(s["defaultMode"] in (0o400, 0o440) for s in secrets.values())
        mounts = [m for m in exporter_container["volumeMounts"] if m["name"] in secrets]
        assert mounts and all(m["readOnly"] for m in mounts)
        token_args = [a for a in exporter_container["args"] if "token" in a]
        assert all(a.split("=")[0].endswith("-file") for a in token_args), token_args


def test_hub_collector_is_one_pod_admitted_by_the_hubs_network_policy(default_objects):
    deployment = only(default_objects, "Deployment", "-hub-collector")
    assert (
        deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    args = container(deployment)["args"]
    # Every other collector is off, a new one included (each on by default would read the
    # pod's /proc, NVML or the host there).
    others = {f"--no-collector.{c.name}" for c in COLLECTORS if c.on_by_default and c.name != "hub"}
    assert "--collector.hub" in args and others <= set(args), others - set(args)


def test_service_monitors_find_the_exporters(objects):
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"]
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["authorization"]["type"] == "Bearer"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matched = [
            s for s in services.values() if wanted.items() <= s["metadata"]["labels"].items()
        ]
        if monitor["metadata"]["name"].endswith("-jupyterhub"):
            assert not matched and wanted == {"app": "jupyterhub", "component": "hub"}  # Z2JH's
            continue
        [service] = matched
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert service["spec"]["clusterIP"] == "None"
        assert {"targetLabel": "job", "replacement": "dlcourse"} in endpoint["relabelings"]
        assert {"action": "labeldrop", "regex": "pod"} in endpoint["relabelings"]


def test_no_metric_label_collides_with_a_target_label():
    """Else Prometheus renames ours to exported_pod, exported_namespace, ..."""
    collisions = {m.exposed_name: set(m.labels) & TARGET_LABELS for m in all_metrics()}
    assert {name: labels for name, labels in collisions.items() if labels} == {}
