"""Text from outside the exporter (hub JSON, /proc, NVML, cgroup paths), made safe to use.

- ``valid_text``: a str that encodes as UTF-8. JSON's ``"\\ud800"`` and undecodable bytes
  read with ``surrogateescape`` give lone surrogates, which prometheus_client only trips on
  when it encodes a scrape, long after ``render()`` returned: so text is cleaned where it
  enters, in the sources.
- ``label_value``: valid text, at most ``MAX_LABEL_CHARS`` characters; a longer value keeps
  its start and ends with ``~`` and 16 hex digits of the SHA-256 of the whole value, so two
  long names never share a label value.
- ``log_text``: for a log line: control and other unprintable characters escaped, cut at
  ``limit`` characters, so nothing from outside can forge or flood log lines.
- ``shown_text``: for one line shown to a person (an API field): valid text, every run of
  unprintable characters and whitespace one space, at most ``limit`` characters.
- ``redact_url``: a URL without its ``user:password@``.
- ``read_capped``: an HTTP body read no further than a cap (hub and Kubernetes answers),
  decompressed in steps (``decoded_chunks``) so a small compressed answer cannot inflate
  past the cap in one read. Requests ask for ``IDENTITY`` (no compression) anyway.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx

# The Accept-Encoding for answers from outside: httpx asks for gzip and deflate by default
# (and br and zstd where their packages are installed).
IDENTITY = {"Accept-Encoding": "identity"}
DECODED_STEP = 64 * 1024  # bytes inflated at most per step
MAX_LABEL_CHARS = 128
HASH_DIGITS = 16
LOG_TEXT_LIMIT = 200

_SURROGATES = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """text with every lone surrogate replaced by U+FFFD (the one thing UTF-8 cannot encode)."""
    return _SURROGATES.sub("\ufffd", text)


def label_value(text: str) -> str:
    text = valid_text(text)
    if len(text) <= MAX_LABEL_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]
    return f"{text[: MAX_LABEL_CHARS - HASH_DIGITS - 1]}~{digest}"


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char.isprintable():
        return char
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def log_text(text: object, limit: int = LOG_TEXT_LIMIT) -> str:
    """str(text) for one log line: unprintable characters escaped, at most ~limit long."""
    text = str(text)
    extra = len(text) - limit
    escaped = "".join(map(_escape, text[:limit] if extra > 0 else text))
    return f"{escaped}... ({extra} more characters)" if extra > 0 else escaped


def shown_text(text: str, limit: int) -> str:
    """text as one clean line of at most limit characters ("…" marks a cut)."""
    printable = "".join(c if c.isprintable() else " " for c in valid_text(text[: 4 * limit]))
    line = " ".join(printable.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def redact_url(url: str) -> str:
    """url without credentials: http://user:secret@hub/x -> http://***@hub/x."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


class Unreadable(ValueError):
    """An answer from outside that is refused: over its cap, or compressed in a way that
    was not asked for or does not decompress; str() is one short line."""


class TooLarge(Unreadable):
    """An answer from outside that is over its cap."""


async def decoded_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body, decompressed (gzip or deflate) at most DECODED_STEP bytes at a time.

    httpx's own decoding (``aiter_bytes``) inflates each network read whole: 64 KiB of gzip
    can hold 64 MiB, before any cap is looked at. Any other Content-Encoding is Unreadable.
    """
    if response.is_stream_consumed:  # read whole already (tests' httpx.MockTransport)
        yield response.content
        return
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        async for raw in response.aiter_raw():
            yield raw
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise Unreadable(f"content-encoding {log_text(encoding, 40)!r}, which was not asked for")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or zlib header, either
    async for raw in response.aiter_raw():
        pending = raw
        while pending and not inflater.eof:
            try:
                out = inflater.decompress(pending, DECODED_STEP)
            except zlib.error as exc:
                raise Unreadable(f"a corrupt {encoding} body") from exc
            pending = inflater.unconsumed_tail
            if out:
                yield out
    if not inflater.eof:
        raise Unreadable(f"a truncated {encoding} body")


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body, or TooLarge as soon as it grows past limit bytes (decompressed); a declared
    Content-Length over the limit is refused before anything is read."""
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"more than {limit} bytes")
    chunks, size = [], 0
    async for chunk in decoded_chunks(response):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
