"""Records GET /users answers of a real JupyterHub into recorded/ beside this file.

Run from the repository root (as root, users are real accounts):

    .venv/bin/python tests/exporter/sources/record_responses.py   (or: make hub-record)

Users: an admin in two groups with a ready server, a student with a pending spawn, a
student who never started a server. Names are fixed so the replay tests can name them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import httpx

from dlcourse_testing.hub import LiveHub

HERE = Path(__file__).resolve().parent

OUT = HERE / "recorded"
PAGINATED = "application/jupyterhub-pagination+json"


def record(hub: LiveHub, name: str, service: str, query: str, accept: str | None) -> None:
    headers = {"Authorization": f"token {hub.tokens.get(service, 'not-a-token')}"}
    if accept:
        headers["Accept"] = accept
    response = httpx.get(f"{hub.api_url}/users{query}", headers=headers)
    entry = {
        "jupyterhub": httpx.get(f"{hub.api_url}/").json()["version"],
        "request": f"GET /users{query}" + (f" Accept: {accept}" if accept else ""),
        "token": service,
        "status": response.status_code,
        "body": response.text,
    }
    (OUT / f"{name}.json").write_text(json.dumps(entry, indent=1) + "\n")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    user_env = Path(os.environ.get("DLCOURSE_USERENV", "/opt/dlcourse-dev/user-env"))
    if not (user_env / "bin" / "jupyterhub-singleuser").exists():
        user_env = Path(sys.prefix)
    hub = LiveHub(Path(tempfile.mkdtemp(prefix="dlcourse-record-")), user_env)
    try:
        hub.start()
        hub.add_user("dlct-rec-ada", admin=True, groups=["section-a", "staff"])
        hub.add_user("dlct-rec-ben", groups=["section-a"])
        hub.add_user("dlct-rec-cy", groups=["section-b"])
        hub.start_server("dlct-rec-ada")
        hub.hold_spawn("dlct-rec-ben")
        record(hub, "users_page1", "dlcourse-exporter", "?offset=0&limit=2", PAGINATED)
        record(hub, "users_page2", "dlcourse-exporter", "?offset=2&limit=2", PAGINATED)
        record(hub, "users_plain", "dlcourse-exporter", "", None)
        record(hub, "users_no_groups_scope", "no-groups", "?offset=0&limit=200", PAGINATED)
        record(hub, "forbidden_no_list_scope", "no-list", "?offset=0&limit=200", PAGINATED)
        record(hub, "forbidden_bad_token", "wrong", "?offset=0&limit=200", PAGINATED)
    finally:
        hub.close()


if __name__ == "__main__":
    main()
