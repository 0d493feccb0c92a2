"""The hub listens below 1024 (issue 21): TLJH's own jupyterhub_config.py sets 15001, which
any student could take while the hub restarts; dlcourse's rendered dlcourse-hub-port.py
moves it, and everything that reaches the hub follows: the proxy's route to it, each
server's JUPYTERHUB_API_URL, the services the hub starts."""

from __future__ import annotations

import httpx

from dlcourse_testing.ports import free_privileged_port

HUB_PORT_FILE = "/opt/tljh/config/jupyterhub_config.d/dlcourse-hub-port.py"


def test_the_hub_listens_below_1024_and_everything_that_reaches_it_follows(make_tljh_hub):
    port = free_privileged_port()
    hub = make_tljh_hub(hub_port=port)
    assert f"c.JupyterHub.hub_port = {port}\n" in hub.site.read(HUB_PORT_FILE)
    # The hub's own API on that port, and the proxy routes the public URL there.
    assert httpx.get(f"http://127.0.0.1:{port}/hub/api", timeout=10).status_code == 200
    assert httpx.get(f"{hub.public_url}/hub/api", timeout=10).status_code == 200
    # A student's server and the class-status page (a service the hub starts) call it there:
    # children() finds processes by JUPYTERHUB_API_URL=http://127.0.0.1:<port>/hub/api.
    name = hub.add_user()
    hub.start_server(name)
    assert hub.children(f"JUPYTERHUB_USER={name}")
    assert hub.children("JUPYTERHUB_SERVICE_NAME=dlcourse-status")
