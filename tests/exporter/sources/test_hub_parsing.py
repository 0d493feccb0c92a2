"""Pure parsing of the hub API, fed with answers recorded from a real JupyterHub.

recorded/ comes from record_responses.py beside this file (JupyterHub 6.1.1): an admin
with a ready server (dlct-rec-ada), a student with a pending spawn (dlct-rec-ben), one who
never started a server (dlct-rec-cy).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from dlcourse_exporter.sources.hub import (
    HubAuthError,
    HubClient,
    HubResponseError,
    forbidden_text,
    parse_page,
    parse_timestamp,
    parse_user,
    parse_users,
)

RECORDED = Path(__file__).resolve().parent / "recorded"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / f"{name}.json").read_text())


def recorded_body(name: str) -> Any:
    return json.loads(recorded(name)["body"])


def iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_timestamps_are_utc_unix_times():
    assert parse_timestamp("2024-05-01T12:00:00.500000Z") == pytest.approx(
        datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=timezone.utc).timestamp()
    )
    # Without an offset the hub means UTC, never the exporter's local zone.
    assert parse_timestamp("2024-05-01T12:00:00") == parse_timestamp("2024-05-01T12:00:00Z")
    assert parse_timestamp(None) is None
    with pytest.raises(HubResponseError, match="not ISO 8601"):
        parse_timestamp("yesterday")
    with pytest.raises(HubResponseError, match="not a string"):
        parse_timestamp(1714564800)


def test_recorded_page_parses_to_users_with_their_servers():
    body = recorded_body("users_page1")
    page = parse_page(body)
    assert (page.limit, page.total) == (2, 3)
    ada, ben = (parse_user(item) for item in page.items)
    raw_ada = body["items"][0]

    assert ada.name == "dlct-rec-ada"
    assert ada.admin is True
    assert ada.groups == ("section-a", "staff")
    assert ada.last_activity == pytest.approx(iso(raw_ada["last_activity"]))
    (server,) = ada.servers
    assert (server.name, server.ready, server.pending) == ("", True, None)
    assert server.started == pytest.approx(iso(raw_ada["servers"][""]["started"]))

    assert (ben.admin, ben.groups) == (False, ("section-a",))
    (pending,) = ben.servers
    assert (pending.ready, pending.pending) == (False, "spawn")


def test_second_page_has_the_user_who_never_started_a_server():
    page = parse_page(recorded_body("users_page2"))
    (cy,) = (parse_user(item) for item in page.items)
    assert cy.name == "dlct-rec-cy"
    assert cy.last_activity is None
    assert cy.servers == ()


def test_plain_list_answer_is_taken_whole():
    page = parse_page(recorded_body("users_plain"))
    assert page.limit is None
    assert [u.name for u in parse_users(page.items).users] == [
        "dlct-rec-ada",
        "dlct-rec-ben",
        "dlct-rec-cy",
    ]


def test_user_model_without_groups_names_the_missing_scope():
    # Recorded with a token lacking read:users:groups: the hub leaves the field out.
    (first, *_) = parse_page(recorded_body("users_no_groups_scope")).items
    assert "groups" not in first
    with pytest.raises(HubResponseError, match="needs scope read:users:groups"):
        parse_user(first)


@pytest.mark.parametrize(
    ("field", "scope"),
    [("servers", "read:servers"), ("last_activity", "read:users:activity")],
)
def test_every_missing_field_names_its_scope(field, scope):
    model = dict(recorded_body("users_page1")["items"][0])
    del model[field]
    with pytest.raises(HubResponseError, match=f"lacks '{field}': the token needs scope {scope}"):
        parse_user(model)


@pytest.mark.parametrize(
    "body",
    [{"items": "nope"}, {"users": []}, "text", {"items": [], "_pagination": {"limit": 0}}],
)
def test_page_that_is_not_the_documented_shape_is_an_error(body):
    with pytest.raises(HubResponseError):
        parse_page(body)


def test_broken_server_model_is_an_error():
    model = dict(recorded_body("users_page1")["items"][0])
    model["servers"] = {"": {"name": "", "url": "/user/x/"}}
    with pytest.raises(HubResponseError, match="lacks 'ready'"):
        parse_user(model)


def test_forbidden_texts_name_the_scope_or_the_token():
    no_list = recorded("forbidden_no_list_scope")
    assert forbidden_text(no_list["status"], no_list["body"]) == (
        "hub API refused GET /users (403): the token lacks scope list:users"
    )
    bad = recorded("forbidden_bad_token")
    assert forbidden_text(bad["status"], bad["body"]) == (
        "hub API rejected the token (403: Missing or invalid credentials.): check --hub.token-file"
    )
    assert "rejected the token (401)" in forbidden_text(401, "<html>")


def replay(handler: Any) -> HubClient:
    return HubClient(
        "http://hub.test/hub/api", "t0k", timeout=2, transport=httpx.MockTransport(handler)
    )


def test_client_follows_pagination_with_the_pagination_media_type():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        name = "users_page1" if request.url.params["offset"] == "0" else "users_page2"
        return httpx.Response(200, text=recorded(name)["body"])

    snapshot = asyncio.run(replay(handler).fetch_users())
    assert [u.name for u in snapshot.users] == ["dlct-rec-ada", "dlct-rec-ben", "dlct-rec-cy"]
    assert [(r.url.params["offset"], r.url.params["limit"]) for r in seen] == [
        ("0", "200"),
        ("2", "2"),  # the page size the hub announced, not ours
    ]
    assert all(r.url.path == "/hub/api/users" for r in seen)
    assert seen[0].headers["Accept"].startswith("application/jupyterhub-pagination+json")
    assert seen[0].headers["Authorization"] == "token t0k"


def test_pages_are_fetched_a_few_at_a_time():
    template = recorded_body("users_page2")["items"][0]
    total, in_flight, most = 12, 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        offset = int(request.url.params["offset"])
        body = {
            "items": [dict(template, name=f"u{offset:02d}")],
            "_pagination": {"offset": offset, "limit": 1, "total": total, "next": None},
        }
        return httpx.Response(200, json=body)

    client = replay(handler)
    client.concurrency = 3
    snapshot = asyncio.run(client.fetch_users())
    assert [u.name for u in snapshot.users] == [f"u{i:02d}" for i in range(total)]
    assert most == 3


def test_a_user_moving_between_pages_counts_once():
    page = recorded_body("users_page1")

    def handler(request: httpx.Request) -> httpx.Response:
        # The second page repeats ben: a user was deleted between the two requests.
        if request.url.params["offset"] == "0":
            return httpx.Response(200, json=page)
        moved = {"items": page["items"][1:], "_pagination": page["_pagination"]}
        return httpx.Response(200, json=moved)

    snapshot = asyncio.run(replay(handler).fetch_users())
    assert [u.name for u in snapshot.users] == ["dlct-rec-ada", "dlct-rec-ben"]


def test_recorded_403_raises_an_auth_error_naming_the_scope():
    entry = recorded("forbidden_no_list_scope")
    client = replay(lambda request: httpx.Response(entry["status"], text=entry["body"]))
    with pytest.raises(HubAuthError, match="lacks scope list:users"):
        asyncio.run(client.fetch_users())
