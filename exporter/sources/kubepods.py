"""What a cgroup line and the Kubernetes API say about students' pods (pure parsing).

**The pod of a process.** The kubelet puts every container of pod U in a cgroup under
``pod<U>``: with the cgroupfs driver ``/kubepods/burstable/pod<U>/<container id>``; with the
systemd driver ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<U'>.slice/
cri-containerd-<id>.scope`` (``crio-<id>.scope``, ``docker-<id>.scope``), where U' is U with
its dashes made underscores, since systemd reads "-" as a step in the slice hierarchy
(kubernetes/kubernetes ``pkg/kubelet/cm/cgroup_manager_linux.go``,
``ConvertCgroupNameToSystemd``; the "pod" prefix:
``pkg/kubelet/cm/pod_container_manager_linux.go``).
Guaranteed pods sit right under ``kubepods``. cgroup v1 has a line per hierarchy, v2 one
``0::`` line, and inside a cgroup namespace (the exporter's own container) the path is
relative to the reader's root: ``0::/../../pod<U>/<id>``. So ``pod_uid`` looks for the
pod-UID component on every line, whatever comes around it, and takes the outermost one
of each line: a cgroup nested inside a pod's (which only that pod could create) cannot
name another pod. Lines that name different pods name none.

**The student of a pod.** KubeSpawner (jupyterhub/kubespawner 7.1.0, ``kubespawner/
spawner.py``: ``_build_pod_labels`` sets ``component`` to ``component_label``, default
``singleuser-server``; ``_build_common_annotations`` sets ``hub.jupyter.org/username`` to
the raw ``user.name``; the label of that name is an escaped slug) labels and annotates the
pods it makes. Only such pods name a student; everything else on the node is nobody's.
Anyone who may create pods can write those labels, so only pods where the hub makes them
count (``hub_namespace``): the hub's namespace, or with KubeSpawner's
``enable_user_namespaces`` the namespaces its ``user_namespace_template`` (default
``{hubnamespace}-{username}``, same file) names.

**The API's shapes** (kubernetes/website ``content/en/docs/reference/using-api/
api-concepts.md``, "Efficient detection of changes" and "Retrieving large results sets in
chunks"): a list is ``{"metadata": {"resourceVersion", "continue"}, "items": [...]}``; a
watch is newline-delimited ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object"}``;
an expired resourceVersion is ``410 Gone``, as an HTTP status or as an ERROR event whose
object is a Status with ``code: 410``, and the client must list again.

Nothing here is trusted: malformed JSON or a missing field is ``KubernetesResponseError``,
names are cleaned label values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..model import StudentPods
from ..untrusted import label_value

COMPONENT_LABEL = "component"
SINGLEUSER_COMPONENT = "singleuser-server"
USERNAME_ANNOTATION = "hub.jupyter.org/username"
LABEL_SELECTOR = f"{COMPONENT_LABEL}={SINGLEUSER_COMPONENT}"

_HEX = "[0-9a-f]"
_UID = rf"{_HEX}{{8}}[-_]{_HEX}{{4}}[-_]{_HEX}{{4}}[-_]{_HEX}{{4}}[-_]{_HEX}{{12}}"
# "pod<uid>" as a whole path component, or as the last step of a systemd slice name
# ("kubepods-burstable-pod<u_i_d>.slice").
_POD = re.compile(rf"(?:^|/)(?:[a-z]+-)*pod({_UID})(?:\.slice)?(?=/|$)")


class KubernetesError(Exception):
    """The API could not be read; str() is one stable line."""


class KubernetesResponseError(KubernetesError):
    """An answer that is not what the API documents."""


class ResourceVersionGone(KubernetesError):
    """410 Gone: the resourceVersion is too old; list again."""


def pod_uid(cgroup_lines: Iterable[str]) -> str | None:
    """The UID of the pod a process is in, from its /proc/<pid>/cgroup lines; None when no
    line names one, or the lines disagree."""
    found = set()
    for line in cgroup_lines:
        path = line.split(":", 2)[-1]
        match = _POD.search(path.lower())
        if match:
            found.add(match.group(1).replace("_", "-"))
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class Pod:
    uid: str
    student: str | None  # None: not a student's server pod
    namespace: str = ""


def hub_namespace(namespace: str, hub: str, user_namespaces: bool) -> bool:
    """Whether KubeSpawner of the hub in namespace `hub` makes pods in `namespace`."""
    return namespace == hub or (user_namespaces and namespace.startswith(hub + "-"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_pod(obj: Any) -> Pod:
    """A Pod object: its UID and, if KubeSpawner made it for a student, the student."""
    metadata = _mapping(obj.get("metadata")) if isinstance(obj, Mapping) else {}
    uid = metadata.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(_UID, uid.lower()):
        raise KubernetesResponseError("a pod without a valid metadata.uid")
    labels, annotations = _mapping(metadata.get("labels")), _mapping(metadata.get("annotations"))
    user, namespace = annotations.get(USERNAME_ANNOTATION), metadata.get("namespace")
    namespace = namespace if isinstance(namespace, str) else ""
    if labels.get(COMPONENT_LABEL) != SINGLEUSER_COMPONENT or not isinstance(user, str):
        return Pod(uid.lower(), None, namespace)
    return Pod(uid.lower(), label_value(user) if user.strip() else None, namespace)


def resource_version(obj: Any) -> str:
    version = _mapping(_mapping(obj).get("metadata")).get("resourceVersion")
    if not isinstance(version, str) or not version or len(version) > 64:
        raise KubernetesResponseError("an answer without a valid metadata.resourceVersion")
    return version


def parse_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[...]]]] nested deep
        raise KubernetesResponseError(f"the API answered malformed JSON to {what}") from exc


@dataclass(frozen=True)
class PodPage:
    pods: tuple[Pod, ...]
    resource_version: str
    continue_token: str  # "": the last page


def parse_pod_list(body: bytes) -> PodPage:
    data = parse_json(body, "the pod list")
    items = _mapping(data).get("items")
    if not isinstance(items, list):
        raise KubernetesResponseError("the pod list has no items")
    token = _mapping(_mapping(data).get("metadata")).get("continue") or ""
    if not isinstance(token, str):
        raise KubernetesResponseError("the pod list has a bad metadata.continue")
    return PodPage(tuple(map(parse_pod, items)), resource_version(data), token)


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    pod: Pod | None  # None for a BOOKMARK
    resource_version: str


def parse_event(line: bytes) -> WatchEvent:
    """One line of a watch stream; raises ResourceVersionGone for a 410 ERROR event."""
    data = _mapping(parse_json(line, "the pod watch"))
    kind, obj = data.get("type"), data.get("object")
    if kind == "ERROR":
        code = _mapping(obj).get("code")
        if code == 410:
            raise ResourceVersionGone("the pod watch's resourceVersion expired (410 Gone)")
        raise KubernetesResponseError(f"the pod watch sent an ERROR event (code {code!r:.10})")
    if kind == "BOOKMARK":
        return WatchEvent(kind, None, resource_version(obj))
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        raise KubernetesResponseError("the pod watch sent an event of unknown type")
    return WatchEvent(kind, parse_pod(obj), resource_version(obj))


class PodDirectory:
    """The latest ``StudentPods``, swapped whole (the /proc walk reads it from its thread);
    None while the API has not been listed, or is unreachable: then nobody is a student."""

    def __init__(self) -> None:
        self.current: StudentPods | None = None

    def student(self, uid: str | None) -> str | None:
        pods = self.current
        return pods.students.get(uid) if pods is not None and uid is not None else None
