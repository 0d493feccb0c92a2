"""A hub that lies about its size, floods, drips or sends strings UTF-8 cannot encode.

Issue 11, "Why" 1 (a lying total exhausted memory, a 61 MB answer was accepted whole),
3 (a lone surrogate in a name broke /metrics and /api/class) and 8 (the hub's 403 message
and the URL's credentials went into the log verbatim, httpx logged every request).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dlcourse_exporter.sources.hub import (
    MAX_BODY_BYTES,
    MAX_PAGES,
    HubClient,
    HubResponseError,
    HubUnreachable,
)
from dlcourse_testing.exporter import AUTH, RunningExporter, log_lines, value, wait_value
from dlcourse_testing.hostile_hub import BOMB_BYTES, LYING_TOTAL, HostileHub, gzip_bomb, user_model

DURATION = "dlcourse_collector_duration_seconds"
HUB_ONLY = (
    *("--no-collector.gpu", "--no-collector.processes"),
    *("--no-collector.kernels", "--no-collector.host"),
)


@pytest.fixture
def hostile_hub() -> Iterator[HostileHub]:
    hub = HostileHub()
    yield hub
    hub.close()


def start_exporter(
    hub: HostileHub, tmp_path: Path, *args: str, url: str = "", interval: float = 1
) -> RunningExporter:
    token = tmp_path / "hub-token"
    token.write_text("t0ken\n")
    return RunningExporter(
        [
            *HUB_ONLY,
            f"--hub.url={url or hub.api_url}",
            f"--hub.token-file={token}",
            f"--hub.interval={interval}",
            "--hub.timeout=2",
            *args,
        ],
        log_path=tmp_path / "exporter.log",
    )


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(rest.split()[0])
    return found


def memory_after_another_poll(exporter: RunningExporter, hub: HostileHub) -> dict[str, int]:
    """memory_kib once one more poll has run, from its request to its end (when the poll's
    duration changes; during backoff no other poll of the hub runs)."""
    asked = hub.requests
    exporter.wait_for(lambda _: hub.requests > asked, 120, "another request")
    took = value(exporter.scrape(), DURATION, collector="hub")
    exporter.wait_for(lambda s: value(s, DURATION, collector="hub") != took, 120, "its end")
    return memory_kib(exporter.process.pid)


def test_a_lying_total_is_read_up_to_the_page_cap(hostile_hub: HostileHub):
    hostile_hub.mode = "lying-total"
    client = HubClient(hostile_hub.api_url, "t", timeout=2)
    # Before: one coroutine per claimed page, 3,000,000 at once (5 GB in 40 s).
    snapshot = asyncio.run(asyncio.wait_for(client.fetch_users(), 60))
    assert snapshot.truncated
    assert len(snapshot.users) == MAX_PAGES < LYING_TOTAL
    assert hostile_hub.requests == MAX_PAGES


@pytest.mark.live
def test_max_users_caps_a_truthful_hub_too(hostile_hub: HostileHub, tmp_path: Path):
    hostile_hub.users = [user_model(f"student-{i:03}") for i in range(450)]
    client = HubClient(hostile_hub.api_url, "t", max_users=300)
    snapshot = asyncio.run(client.fetch_users())
    assert snapshot.truncated and len(snapshot.users) == 300
    assert not asyncio.run(HubClient(hostile_hub.api_url, "t").fetch_users()).truncated

    exporter = start_exporter(hostile_hub, tmp_path, "--hub.max-users=100")
    try:
        samples = wait_value(exporter, "dlcourse_hub_users_truncated", 1)
        assert len([k for k in samples if k[0] == "dlcourse_hub_user_info"]) == 100
        asked = hostile_hub.requests
        exporter.wait_for(lambda _: hostile_hub.requests >= asked + 2, what="more polls")
        assert len(log_lines(exporter, "more users than --hub.max-users=100")) == 1
    finally:
        exporter.stop()


def test_a_huge_answer_is_refused_while_it_streams(hostile_hub: HostileHub):
    hostile_hub.mode = "huge"
    client = HubClient(hostile_hub.api_url, "t", timeout=30)
    with pytest.raises(HubResponseError, match=f"more than {MAX_BODY_BYTES} bytes"):
        asyncio.run(client.fetch_users())


def test_a_dripping_hub_is_given_up_on_in_time(hostile_hub: HostileHub):
    hostile_hub.mode = "drip"
    client = HubClient(hostile_hub.api_url, "t", timeout=1)
    started = time.monotonic()
    with pytest.raises(HubUnreachable, match="did not answer within 1 s"):
        asyncio.run(client.fetch_users())
    assert time.monotonic() - started < 5


def test_answers_are_asked_for_uncompressed_and_a_compressed_one_still_read(
    hostile_hub: HostileHub,
):
    """A proxy may compress anyway: read, in capped steps."""
    hostile_hub.mode = "gzip"
    hostile_hub.users = [user_model(f"student-{i:03}") for i in range(250)]
    snapshot = asyncio.run(HubClient(hostile_hub.api_url, "t", timeout=10).fetch_users())
    assert len(snapshot.users) == 250 and not snapshot.truncated
    # Before: "gzip, deflate" (and br or zstd where httpx has their decoders).
    assert set(hostile_hub.accept_encodings) == {"identity"}


@pytest.mark.live
def test_a_gzip_bomb_is_refused_at_the_cap_in_bounded_memory(
    hostile_hub: HostileHub, tmp_path: Path
):
    """Old behaviour: the 8 MiB cap counted what httpx had already inflated, one network
    read (up to 64 KiB of gzip, a thousandfold more inflated) at a time."""
    gzip_bomb()  # made before the exporter asks (seconds on a busy machine)
    hostile_hub.mode = "gzip-bomb"
    exporter = start_exporter(hostile_hub, tmp_path, interval=5)
    try:
        exporter.wait_for(
            lambda _: len(log_lines(exporter, "more than 8388608 bytes")) == 1,
            120,
            "the bomb refused",
        )
        memory = memory_after_another_poll(exporter, hostile_hub)
        print(
            f"gzip bomb ({len(gzip_bomb()) // 1024} KiB inflating to {BOMB_BYTES >> 20} MiB): "
            f"exporter RSS {memory['VmRSS'] // 1024} MiB, peak {memory['VmHWM'] // 1024} MiB"
        )
        assert value(exporter.scrape(), "dlcourse_hub_up") == 0
        assert memory["VmHWM"] < 150 * 1024
    finally:
        exporter.stop()


@pytest.mark.live
def test_exporter_memory_stays_bounded_under_a_lying_and_a_huge_hub(
    hostile_hub: HostileHub, tmp_path: Path
):
    """The RSS the issue asks to report: printed, and bounded."""
    hostile_hub.mode = "lying-total"
    # The default interval: a poll of 1,000 pages must end within two (scheduler.py), which
    # a busy 2-core machine cannot do in the 10 s that --hub.interval=1 leaves.
    exporter = start_exporter(hostile_hub, tmp_path, interval=15)
    try:
        wait_value(exporter, "dlcourse_hub_users_truncated", 1, 120)
        asked = hostile_hub.requests
        exporter.wait_for(
            lambda _: hostile_hub.requests >= asked + 2 * MAX_PAGES,
            180,
            "two more whole polls of 1,000 pages each",
        )
        lying = memory_kib(exporter.process.pid)
        started = time.monotonic()
        assert value(exporter.scrape(), "dlcourse_hub_up") == 1
        scrape_seconds = time.monotonic() - started

        hostile_hub.mode = "huge"
        wait_value(exporter, "dlcourse_hub_up", 0, 60)
        after_huge = memory_after_another_poll(exporter, hostile_hub)  # one more refused
        print(
            f"lying hub: RSS {lying['VmRSS'] // 1024} MiB, peak {lying['VmHWM'] // 1024} MiB, "
            f"scrape {scrape_seconds * 1000:.0f} ms; after 61 MB answers: RSS "
            f"{after_huge['VmRSS'] // 1024} MiB, peak {after_huge['VmHWM'] // 1024} MiB"
        )
        # Before: 5 GB within 40 s of the lie; 330 MB peak and 194 MB kept for 61 MB.
        assert after_huge["VmHWM"] < 200 * 1024
        assert after_huge["VmRSS"] < 150 * 1024
        assert scrape_seconds < 2
        assert len(log_lines(exporter, "more than 8388608 bytes")) == 1
    finally:
        exporter.stop()


@pytest.mark.live
def test_lone_surrogates_in_names_break_nothing(hostile_hub: HostileHub, tmp_path: Path):
    hostile_hub.users = [
        user_model("\ud800", groups=["\udfff-section"], ready=True),
        user_model("ada"),
        user_model("x" * 300, groups=["y" * 300]),
    ]
    exporter = start_exporter(hostile_hub, tmp_path)
    try:
        samples = exporter.wait_for(
            lambda s: value(s, "dlcourse_hub_user_info", user="ada") == 1, what="the users"
        )
        assert value(samples, "dlcourse_hub_user_info", user="\ufffd") == 1
        assert value(samples, "dlcourse_hub_user_group_info", group="\ufffd-section") == 1
        assert value(samples, "dlcourse_collector_success", collector="hub") == 1
        long_names = [dict(k[1])["user"] for k in samples if k[0] == "dlcourse_hub_user_info"]
        assert max(map(len, long_names)) == 128  # capped, with a hash suffix
        openmetrics = httpx.get(
            f"{exporter.url}/metrics",
            headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=5,
        )
        assert openmetrics.status_code == 200 and openmetrics.text.endswith("# EOF\n")
        status = httpx.get(f"{exporter.url}/api/class", headers=AUTH, timeout=5)
        assert status.status_code == 200
        assert "\ufffd" in [student["user"] for student in status.json()["students"]]
        if shutil.which("promtool"):
            checked = subprocess.run(
                ["promtool", "check", "metrics"],
                input=exporter.scrape_text(),
                capture_output=True,
                text=True,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        exporter.stop()


@pytest.mark.live
def test_hub_words_and_credentials_stay_out_of_the_log(hostile_hub: HostileHub, tmp_path: Path):
    hostile_hub.mode = "forbidden"
    port = hostile_hub.server_address[1]
    exporter = start_exporter(
        hostile_hub, tmp_path, url=f"http://admin:s3cret@127.0.0.1:{port}/hub/api"
    )
    try:
        wait_value(exporter, "dlcourse_hub_up", 0)
        hostile_hub.mode = "users"  # a healthy hub: polls succeed, one after another
        wait_value(exporter, "dlcourse_hub_up", 1)
        asked = hostile_hub.requests
        exporter.wait_for(lambda _: hostile_hub.requests >= asked + 2, what="more polls")
        log = exporter.log()
    finally:
        exporter.stop()
    assert "s3cret" not in log
    assert "\x1b" not in log  # no terminal escapes from the hub
    forbidden = [line for line in log.splitlines() if "rejected the token" in line]
    assert len(forbidden) == 1 and len(forbidden[0]) < 600, forbidden  # not 2 MB
    assert "\\n2026-01-01 00:00:00 INFO forged log line\\x1b[31m" in forbidden[0]
    assert not [line for line in log.splitlines() if line.startswith("2026-01-01 00:00:00")]
    assert "HTTP Request" not in log  # httpx's line per request
