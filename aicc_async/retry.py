"""Which failures are retried, and how long to wait between attempts.

The table (``shared/AICC-API-NOTES.md``, "What each call costs if sent twice"):

================================  =====================  ==============================
failure                           idempotent endpoints    non-idempotent endpoints
================================  =====================  ==============================
never reached AICC (DNS, refused, retried                retried
TLS, connect timeout)
HTTP 429                          retried (Retry-After)   retried (Retry-After)
voice notification retCode "1"   retried                 retried (the call was not taken)
token rejected (401, 403 auth)    token refreshed, replayed once, on every endpoint
HTTP 503, with or without         retried (Retry-After)   AICCOutcomeUnknownError, never
Retry-After                                               re-sent unless ``retry_unsafe``
timeout / reset after sending,    retried                 AICCOutcomeUnknownError, never
502, 504, 2xx that is not JSON                            re-sent unless ``retry_unsafe``
answer over max_response_bytes    not retried             AICCOutcomeUnknownError
HTTP 500, other 4xx               not retried             not retried
================================  =====================  ==============================

A proxy may add ``Retry-After`` to a 503 after it passed the request on, so only a
429 proves that a request was not processed.

Waits grow exponentially with full jitter; ``Retry-After`` (seconds or an HTTP
date) is honoured as given. The ``backoff`` package drives the loop; the time
budget (``max_elapsed``) is kept on the client's monotonic clock, never the wall clock.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, ParamSpec, TypeVar

import aiohttp
import attrs
import backoff

from aicc_async.errors import AICCError

__all__ = ["Failure", "RetryPolicy", "classify_exception", "classify_status", "parse_retry_after"]

T = TypeVar("T")
P = ParamSpec("P")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be a positive number, got {value!r}")


def _at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"RetryPolicy.{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How failures that are safe to retry are retried.

    Args:
        max_attempts: sends of one request at most, the first included (1 = no retries).
        base_delay: first back-off ceiling in seconds; it doubles on each retry.
        max_delay: ceiling of any single wait, ``Retry-After`` included.
        max_elapsed: no new attempt starts after this many seconds since the first.

    A token refresh-and-replay after a rejected token is not counted as an attempt.
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    base_delay: float = attrs.field(default=0.25, validator=_positive)
    max_delay: float = attrs.field(default=8.0, validator=_positive)
    max_elapsed: float = attrs.field(default=60.0, validator=_positive)


class Failure(enum.Enum):
    """How one failed attempt is classified."""

    NOT_SENT = "not_sent"  # certainly never processed: safe to retry on every endpoint
    AMBIGUOUS = "ambiguous"  # may have been processed: retried only where a replay is harmless


def classify_exception(exc: BaseException) -> Failure:
    """Classify an exception raised while sending a request and reading its answer.

    Only failures to establish the connection prove the request was never sent;
    anything later (reset, timeout, truncated answer) may follow processing.
    aiohttp itself never re-sends a POST on a dropped keep-alive connection.
    """
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Failure.NOT_SENT
    return Failure.AMBIGUOUS


def classify_status(status: int) -> Failure | None:
    """Classify a non-2xx status; ``None`` means final (not retried on any endpoint).

    Only a 429 proves the request was not processed. 500 is AICC's documented
    "business failure" and 501/505 refuse the request itself; every other 5xx (502,
    503 with or without ``Retry-After``, 504, CDN codes like 524) comes from a gateway
    that may have passed the request on, so it is ambiguous.
    """
    if status == 429:
        return Failure.NOT_SENT
    if status >= 500 and status not in (500, 501, 505):
        return Failure.AMBIGUOUS
    return None


def may_retry(failure: Failure, *, idempotent: bool, retry_unsafe: bool) -> bool:
    """Whether a failure of this kind may be retried on this endpoint."""
    return failure is Failure.NOT_SENT or idempotent or retry_unsafe


class RetryableAttempt(Exception):
    """Raised inside the retry loop for a failed attempt that may be retried.

    ``error`` is what the caller gets if no attempt succeeds.
    """

    def __init__(self, error: AICCError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, delta)


def _waits(
    policy: RetryPolicy, remaining: Callable[[], float] = lambda: math.inf
) -> Generator[float, Any, None]:
    """backoff wait generator: full-jitter exponential, or Retry-After when the server sent one.

    backoff sends the exception of the failed attempt into the generator. No wait
    goes beyond the ``remaining()`` seconds of the time budget.
    """
    attempt = 0
    exc = yield 0.0  # primed by backoff with send(None)
    while True:
        retry_after = exc.retry_after if isinstance(exc, RetryableAttempt) else None
        if retry_after is not None:
            wait = min(retry_after, policy.max_delay)
        else:
            ceiling = min(policy.max_delay, policy.base_delay * (2**attempt))
            wait = random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not security
        attempt += 1
        exc = yield max(0.0, min(wait, remaining()))


def with_retries(
    policy: RetryPolicy,
    attempt: Callable[P, Awaitable[T]],
    on_retry: Callable[[Any], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[P, Awaitable[T]]:
    """Wrap ``attempt`` so that each ``RetryableAttempt`` it raises is retried per ``policy``.

    The first attempt runs directly (no retry bookkeeping on the hot path); only
    after a retryable failure does backoff's loop take over, starting from that
    failure, so attempts and waits are counted as if it had run from the start.
    ``max_elapsed`` counts from the first failure on ``clock`` (monotonic: a step of
    the wall clock changes nothing). When attempts or time run out,
    the last ``RetryableAttempt`` propagates; the caller raises its ``.error``.
    ``on_retry`` gets backoff's details before each wait.
    """

    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await attempt(*args, **kwargs)
        except RetryableAttempt as first:
            if policy.max_attempts == 1:
                raise
            failures = [first]
            deadline = clock() + policy.max_elapsed

            def remaining() -> float:
                return deadline - clock()

            def out_of_time(exc: Exception) -> bool:
                return remaining() <= 0

            async def again(*args: P.args, **kwargs: P.kwargs) -> T:
                if failures:
                    raise failures.pop()
                return await attempt(*args, **kwargs)

            retrying: Callable[P, Awaitable[T]] = backoff.on_exception(
                _waits,
                RetryableAttempt,
                max_tries=policy.max_attempts,
                giveup=out_of_time,
                jitter=None,
                on_backoff=on_retry,
                logger=None,
                policy=policy,
                remaining=lambda: remaining,  # backoff calls a callable argument once
            )(again)
            return await retrying(*args, **kwargs)

    return run
