"""The culler's one hub scope, access:servers, is enough to shut a student's kernel down
through their own server's API, and less is not (a real JupyterHub 5, real servers)."""

from __future__ import annotations

import os

import httpx

from dlcourse_installer.rendered.students import CULLER_SCOPES


def delete_kernel(hub, token: str, user: str, kernel_id: str) -> int:
    url = f"{hub.public_url}/user/{user}/api/kernels/{kernel_id}"
    answer = httpx.delete(url, headers={"Authorization": f"token {token}"}, timeout=60)
    return answer.status_code


def test_access_servers_alone_shuts_a_kernel_down_and_less_does_not(make_live_hub):
    hub = make_live_hub(services={"culler": CULLER_SCOPES, "read-only": ("read:servers",)})
    student = hub.add_user()
    hub.start_server(student)
    kernel = hub.start_kernel(student)
    pid = hub.kernel_pid(student, kernel)
    assert delete_kernel(hub, hub.tokens["read-only"], student, kernel) == 403
    assert kernel in {k["id"] for k in hub.kernels(student)}
    assert delete_kernel(hub, hub.tokens["culler"], student, kernel) == 204
    assert kernel not in {k["id"] for k in hub.kernels(student)}
    # A clean shutdown: the kernel process is gone, the server still runs.
    assert hub.user_model(student)["servers"][""]["ready"]
    assert not os.path.exists(f"/proc/{pid}")
