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
- ``read_capped``: an HTTP body read no further than a cap (hub and Kubernetes answers).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx

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


class TooLarge(ValueError):
    """An answer from outside that is over its cap."""


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body, or TooLarge as soon as it grows past limit bytes (decoded); a declared
    Content-Length over the limit is refused before anything is read."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"more than {limit} bytes")
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
