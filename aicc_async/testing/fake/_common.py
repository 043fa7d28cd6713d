"""What FakeAICC's handler modules share: one request in flight and what a handler answers."""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web
from multidict import CIMultiDictProxy

__all__ = ["Answer", "Exchange", "is_int", "is_text"]


@attrs.define
class Exchange:
    """One request as the handlers see it: ``endpoint`` name, parsed ``body`` (JSON or text),
    case-insensitive ``headers``; ``index`` is its place in the recording (None: not recorded).
    """

    request: web.Request
    endpoint: str
    headers: CIMultiDictProxy[str]
    body: Any
    index: int | None


@attrs.frozen
class Answer:
    """A handler's answer; ``processed`` when the fake did the thing the request asked for."""

    response: web.Response
    processed: bool = False


def is_int(value: object) -> bool:
    """A JSON integer (booleans are not integers here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_text(value: object, min_len: int = 1, max_len: int | None = None) -> bool:
    """A string of ``min_len`` to ``max_len`` (None: unbounded) characters."""
    if not isinstance(value, str) or len(value) < min_len:
        return False
    return max_len is None or len(value) <= max_len
