"""The ``kubernetes`` collector: whether the students' pods on this node are known.

With ``--attribution=kubernetes`` (and only then) a GPU process belongs to the student of
the pod its cgroup names; the ``kubernetes`` source learns those pods from the API server
(list, then watch, filtered to this node). This collector exports no metrics of its own,
only its health series, which say whether the API is followed: while it is not (down,
refusing the token, not listed yet), every GPU process counts as unattributed::

    dlcourse_collector_success{collector="kubernetes"} 0
    dlcourse_collector_last_success_timestamp_seconds{collector="kubernetes"} 1.764e+09

Its settings are those of the Helm chart's DaemonSet (docs/kubernetes.md): the node (from
the downward API), the namespace, and the API server with its token and CA, found the
standard in-cluster way unless given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.metrics_core import Metric

from ..options import Option, boolean
from .base import Collector

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster_api_url(environ: Mapping[str, str]) -> str | None:
    """The API server as every pod sees it: https://$KUBERNETES_SERVICE_HOST:$..._PORT."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "443").strip()
    if not host:
        return None
    return f"https://{f'[{host}]' if ':' in host else host}:{port}"


def api_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return text.rstrip("/")


# Node names are DNS subdomains, namespaces DNS labels (RFC 1123), as Kubernetes requires.
DNS_LABEL = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


def node_name(text: str) -> str:
    if len(text) > 253 or not re.fullmatch(rf"{DNS_LABEL}(\.{DNS_LABEL})*", text):
        raise ValueError("must be a Kubernetes node name (lower-case letters, digits, - and .)")
    return text


def namespace(text: str) -> str:
    if text and not re.fullmatch(DNS_LABEL, text):
        raise ValueError("must be a Kubernetes namespace name (lower-case letters, digits, -)")
    return text


class KubernetesCollector(Collector):
    name = "kubernetes"
    description = (
        "the students' pods on this node, from the Kubernetes API (with --attribution=kubernetes)"
    )
    sources = ("kubernetes",)
    metrics = ()
    on_by_default = False
    options = tuple(
        replace(option, only_with=("attribution", "kubernetes"))
        for option in (
            Option(
                "kubernetes.node-name",
                "the node this exporter runs on: only its pods are followed (required with "
                "--attribution=kubernetes; the chart passes the downward API's spec.nodeName)",
                parse=node_name,
                fallback_env=("NODE_NAME",),
            ),
            Option(
                "kubernetes.namespace",
                "the hub's namespace, where KubeSpawner makes the students' pods (required "
                "with --attribution=kubernetes): pods elsewhere name nobody",
                "",
                namespace,
            ),
            Option(
                "kubernetes.user-namespaces",
                "KubeSpawner's enable_user_namespaces: follow pods in every namespace (a "
                "ClusterRole) and believe those in the hub's namespace and in the ones "
                "its default user_namespace_template makes, <namespace>-<user>",
                False,
                boolean,
            ),
            Option(
                "kubernetes.api-url",
                "the Kubernetes API server",
                parse=api_url,
                env_default=in_cluster_api_url,
                env_default_text="`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`",
            ),
            Option(
                "kubernetes.token-file",
                "bearer token for the API, read again for every request (the kubelet rotates it)",
                str(SERVICE_ACCOUNT / "token"),
                Path,
            ),
            Option(
                "kubernetes.ca-file",
                "CA bundle that verifies an https API server",
                str(SERVICE_ACCOUNT / "ca.crt"),
                Path,
            ),
        )
    )

    def enabled_by_default(self, values: Mapping[str, Any]) -> bool:
        return values["attribution"] == "kubernetes"

    def problems(self, values: Mapping[str, Any], enabled: bool, explicit: bool) -> list[str]:
        on_kubernetes = values["attribution"] == "kubernetes"
        if enabled != on_kubernetes:
            return [
                "the kubernetes collector and --attribution=kubernetes go together: the "
                "collector learns the pods that attribution needs"
            ]
        if not enabled:
            return []
        found = []
        if not values["kubernetes.node-name"]:
            found.append("--attribution=kubernetes needs --kubernetes.node-name (or NODE_NAME)")
        if not values["kubernetes.namespace"]:
            found.append("--attribution=kubernetes needs --kubernetes.namespace (the hub's)")
        url = values["kubernetes.api-url"]
        if not url:
            found.append(
                "--attribution=kubernetes needs --kubernetes.api-url outside a pod "
                "(KUBERNETES_SERVICE_HOST is not set)"
            )
        if not values["kubernetes.token-file"].is_file():
            found.append(f"--kubernetes.token-file {values['kubernetes.token-file']} is no file")
        if url and url.startswith("https:") and not values["kubernetes.ca-file"].is_file():
            found.append(f"--kubernetes.ca-file {values['kubernetes.ca-file']} is no file")
        return found

    def render(self, view: Any | None) -> Iterator[Metric]:
        return iter(())  # its health series are the exposition's (exposition.py)
