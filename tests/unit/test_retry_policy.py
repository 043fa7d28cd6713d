"""Retry-After parsing and the back-off waits."""

from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import pytest

from aicc_async._failures import Failure, classify_exception, classify_status, may_retry
from aicc_async.errors import AICCError
from aicc_async.retry import RetryableAttempt, RetryPolicy, _waits, parse_retry_after

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 11:59:00 GMT", 0.0),  # in the past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_waits_are_full_jitter_under_a_doubling_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    gen = _waits(policy)
    gen.send(None)
    plain = RetryableAttempt(AICCError("x"))
    waits = [gen.send(plain) for _ in range(200)]
    ceilings = [min(4.0, 2.0**i) for i in range(200)]
    assert all(0.0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert len(set(waits)) > 100  # jittered, not constant


def test_waits_honour_retry_after_capped_by_max_delay() -> None:
    gen = _waits(RetryPolicy(max_delay=10.0))
    gen.send(None)
    assert gen.send(RetryableAttempt(AICCError("x"), retry_after=2.5)) == 2.5
    assert gen.send(RetryableAttempt(AICCError("x"), retry_after=99)) == 10.0


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (429, Failure.NOT_SENT),
        (503, Failure.AMBIGUOUS),  # with or without Retry-After: a proxy may add it
        (502, Failure.AMBIGUOUS),
        (504, Failure.AMBIGUOUS),
        (500, None),
        (400, None),
        (404, None),
    ],
)
def test_classify_status(status: int, failure: Failure | None) -> None:
    assert classify_status(status) is failure


def test_only_connection_failures_prove_nothing_was_sent() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, OSError(111, "refused"))
    assert classify_exception(refused) is Failure.NOT_SENT
    assert classify_exception(aiohttp.ConnectionTimeoutError()) is Failure.NOT_SENT
    assert classify_exception(aiohttp.ServerDisconnectedError()) is Failure.AMBIGUOUS
    assert classify_exception(aiohttp.SocketTimeoutError()) is Failure.AMBIGUOUS
    assert classify_exception(TimeoutError()) is Failure.AMBIGUOUS
    assert classify_exception(aiohttp.ClientPayloadError()) is Failure.AMBIGUOUS


@pytest.mark.parametrize(
    ("failure", "idempotent", "unsafe", "allowed"),
    [
        (Failure.NOT_SENT, False, False, True),
        (Failure.AMBIGUOUS, False, False, False),
        (Failure.AMBIGUOUS, False, True, True),
        (Failure.AMBIGUOUS, True, False, True),
    ],
)
def test_may_retry(failure: Failure, idempotent: bool, unsafe: bool, allowed: bool) -> None:
    assert may_retry(failure, idempotent=idempotent, retry_unsafe=unsafe) is allowed
