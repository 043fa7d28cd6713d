"""Reading an answer: its body, capped at ``max_response_bytes``, and what it says
(the result code, the result), or the error it amounts to (built by ``_failures``)."""

from __future__ import annotations

from typing import Any, TypeVar

import aiohttp

from aicc_async._endpoint import BODY, Endpoint
from aicc_async._failures import Failures
from aicc_async._wire import ResponseInfo, code_of, decode_json, structure_result

__all__ = ["TooLarge", "decode", "read_at_most", "read_capped", "result_of", "sized"]

ResultT = TypeVar("ResultT")

_CHUNK = 65536


class TooLarge(Exception):
    """An answer went past ``max_response_bytes`` (``args[0]``)."""


def sized(resp: aiohttp.ClientResponse, cap: int) -> bool:
    """Whether ``resp`` says it is plain and at most ``cap`` bytes long (the common
    case: it is read at once; otherwise :func:`read_capped` reads it)."""
    length = resp.headers.get("Content-Length", "")
    return length.isdigit() and int(length) <= cap and "Content-Encoding" not in resp.headers


async def read_at_most(stream: aiohttp.StreamReader, cap: int) -> bytes | None:
    """What ``stream`` holds, or None once it goes past ``cap`` bytes (at most
    ``cap + 1`` are read): the one capped read of a body, sent or received."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await stream.read(min(_CHUNK, cap + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body of ``resp``, at most ``cap`` bytes of it (decompressed); raises
    ``TooLarge`` (closing the connection) beyond that."""
    body = await read_at_most(resp.content, cap)
    if body is None:
        resp.close()  # drops the connection: nothing more is read
        raise TooLarge(cap)
    return body


def decode(
    endpoint: Endpoint[Any],
    info: ResponseInfo,
    raw: bytes,
    retry_unsafe: bool,
    failures: Failures,
) -> dict[str, Any]:
    """The body of a 2xx answer whose result code is ``"0"``; raises (or, when it may
    be retried, raises wrapped) the error of any other."""
    try:
        body = decode_json(raw)
    except (ValueError, RecursionError):  # not JSON, or nested beyond reason
        body = None
    code = code_of(body, endpoint.code_field) if isinstance(body, dict) else None
    if code is None or not isinstance(body, dict):
        raise failures.unreadable(endpoint, info, raw, retry_unsafe)
    if code == "0":
        return body
    raise failures.refused(endpoint, info, raw, body, code)


def result_of(
    endpoint: Endpoint[ResultT],
    body: dict[str, Any],
    response: ResponseInfo,
    failures: Failures,
) -> ResultT:
    """The endpoint's result class read from where it sits in ``body``; a result the
    SDK cannot read is reported like a 2xx that is not JSON."""
    at = endpoint.result_at
    payload = None if at is None else body if at == BODY else body.get(at)
    assert endpoint.result_type is not None
    try:
        return structure_result(endpoint.result_type, payload, body, response)
    except Exception:
        raise failures.ambiguous(
            endpoint, "answered success with a result the SDK cannot read", response, b""
        ) from None
