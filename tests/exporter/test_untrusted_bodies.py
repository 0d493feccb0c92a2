"""Bodies from outside (hub, Kubernetes API) decompressed in capped steps, never whole."""

from __future__ import annotations

import asyncio
import gzip

import httpx
import pytest

from dlcourse_exporter.untrusted import (
    DECODED_STEP,
    TooLarge,
    Unreadable,
    decoded_chunks,
    read_capped,
)


class Raw(httpx.AsyncByteStream):
    """A body as it comes off the network, in the given reads."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = reads

    async def __aiter__(self):
        for piece in self.reads:
            yield piece


def answer(encoding: str, *reads: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=Raw(*reads))


def chunks(response: httpx.Response) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [chunk async for chunk in decoded_chunks(response)]

    return asyncio.run(collect())


def test_one_read_of_gzip_inflates_a_step_at_a_time():
    packed = gzip.compress(b" " * (16 << 20))  # 16 KiB of gzip: one network read
    assert len(packed) < 64 * 1024
    pieces = chunks(answer("gzip", packed))
    assert max(map(len, pieces)) <= DECODED_STEP and sum(map(len, pieces)) == 16 << 20
    with pytest.raises(TooLarge, match="more than 1048576 bytes"):
        asyncio.run(read_capped(answer("gzip", packed), 1 << 20))


def test_identity_deflate_and_split_reads():
    body = b'{"items": []}'
    assert b"".join(chunks(answer("identity", body[:3], body[3:]))) == body
    deflated = gzip.compress(body)  # the zlib header form of "deflate" is detected too
    assert b"".join(chunks(answer("gzip", deflated[:5], deflated[5:]))) == body


@pytest.mark.parametrize(
    ("encoding", "reads", "message"),
    [
        ("br", [b"x"], "content-encoding 'br', which was not asked for"),
        ("gzip, gzip", [b"x"], "which was not asked for"),
        ("gzip", [b"not gzip at all"], "a corrupt gzip body"),
        ("gzip", [gzip.compress(b"x" * 1000)[:-12]], "a truncated gzip body"),
    ],
)
def test_other_or_broken_encodings_are_one_line(encoding, reads, message):
    with pytest.raises(Unreadable, match=message):
        chunks(answer(encoding, *reads))
