"""How long to wait between attempts, how many, and the client-wide retry budget.

Which failures may be retried at all is ``_failures``' table; this module runs the
loop for those that may.

Waits grow exponentially with full jitter; ``Retry-After`` (seconds or an HTTP
date) is honoured as given. The ``backoff`` package drives the loop; the time
budget (``max_elapsed``) is kept on the client's monotonic clock, never the wall clock.

Every retry also draws on the client-wide :class:`RetryBudget` (botocore's
``RetryQuota``): when most attempts fail, it runs dry and retries stop, so an
outage is not met with four times the load; successes fill it again.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, ParamSpec, TypeVar

import attrs
import backoff

from aicc_async._constants import (
    DEFAULT_BASE_DELAY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_ELAPSED,
    RETRY_COST,
    SUCCESS_REFUND,
)
from aicc_async._log import ATTEMPT
from aicc_async._wire import parse_retry_after
from aicc_async.errors import AICCError, invalid, is_int, is_number

__all__ = [
    "RetryBudget",
    "RetryPolicy",
    "RetryableAttempt",
    "Retrying",
    "parse_retry_after",
]

T = TypeVar("T")
P = ParamSpec("P")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not is_number(value) or not value > 0:
        raise invalid(f"RetryPolicy.{attribute.name}", f"must be a positive number, got {value!r}")


def _at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not is_int(value) or value < 1:
        raise invalid(f"RetryPolicy.{attribute.name}", f"must be an integer >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How failures that are safe to retry are retried.

    Args:
        max_attempts: sends of one request at most, the first included (1 = no retries).
        base_delay: first back-off ceiling in seconds; it doubles on each retry.
        max_delay: ceiling of any single wait, ``Retry-After`` included.
        max_elapsed: no new attempt starts after this many seconds since the first.

    A token refresh-and-replay after a rejected token is not counted as an attempt.
    Raises ``AICCValidationError`` (a ``ValueError``) for a bad value.
    """

    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS, validator=_at_least_one)
    base_delay: float = attrs.field(default=DEFAULT_BASE_DELAY, validator=_positive)
    max_delay: float = attrs.field(default=DEFAULT_MAX_DELAY, validator=_positive)
    max_elapsed: float = attrs.field(default=DEFAULT_MAX_ELAPSED, validator=_positive)


class RetryBudget:
    """A client-wide token bucket for retries (botocore's ``RetryQuota``).

    Each retry takes ``cost`` from it; each request that succeeds at its first
    attempt gives ``refund`` back, and one that succeeds after retries gives back
    what its retries took. When what is left is less than a retry costs, no request
    is retried: its error says "retry budget exhausted". Sized so that normal
    operation never notices: only a run of failures with few successes empties it.

    Args:
        capacity: the full bucket (``DEFAULT_RETRY_BUDGET``: 100 retries in a row).
        cost: what one retry takes.
        refund: what a first-attempt success gives back.
    """

    __slots__ = ("capacity", "cost", "level", "refund")

    def __init__(
        self, capacity: int, *, cost: int = RETRY_COST, refund: int = SUCCESS_REFUND
    ) -> None:
        self.capacity = capacity
        self.cost = cost
        self.refund = refund
        self.level = capacity

    def take(self) -> bool:
        """Take one retry's cost; ``False`` (taking nothing) when too little is left."""
        if self.level < self.cost:
            return False
        self.level -= self.cost
        return True

    def give_back(self, amount: int) -> None:
        """Return ``amount`` (never above ``capacity``)."""
        if self.level < self.capacity:
            self.level = min(self.capacity, self.level + amount)

    def __repr__(self) -> str:
        return f"RetryBudget(level={self.level}, capacity={self.capacity})"


class RetryableAttempt(Exception):
    """Raised inside the retry loop for a failed attempt that may be retried.

    ``error`` is what the caller gets if no attempt succeeds.
    """

    def __init__(self, error: AICCError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


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


def _budget_exhausted(error: AICCError, budget: RetryBudget) -> None:
    """Say in ``error`` (fresh from the last attempt) that the budget stopped the retries."""
    error.message = (
        f"{error.message} Not retried: the client's retry budget is exhausted (most "
        f"recent attempts failed; it refills as requests succeed, capacity {budget.capacity})."
    )
    error.args = (error.message,)


class Retrying(Generic[P, T]):
    """``attempt`` with each ``RetryableAttempt`` it raises retried per ``policy``;
    call it like ``attempt``.

    The first attempt runs directly (no retry bookkeeping on the hot path); only
    after a retryable failure does backoff's loop take over (:meth:`after`), starting
    from that failure, so attempts and waits are counted as if it had run from the
    start. ``max_elapsed`` counts from the first failure on ``clock`` (monotonic: a
    step of the wall clock changes nothing). When attempts or time run out, the
    ``.error`` of the last ``RetryableAttempt`` is raised (from its cause).
    ``on_retry`` gets backoff's details before each wait. Each retry first takes its
    cost from ``budget`` (if given); an empty budget ends the loop like the attempts
    running out, and the error says so. A caller that makes the first attempt itself
    reports its success with :meth:`succeeded` or its failure with :meth:`after`.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        attempt: Callable[P, Awaitable[T]],
        on_retry: Callable[[Any], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget: RetryBudget | None = None,
    ) -> None:
        self.policy = policy
        self.attempt = attempt
        self._on_retry = on_retry
        self._clock = clock
        self.budget = budget

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result = await self.attempt(*args, **kwargs)
        except RetryableAttempt as first:
            return await self.after(first, *args, **kwargs)
        self.succeeded()
        return result

    def succeeded(self) -> None:
        """A first attempt succeeded: it gives the budget back a little."""
        budget = self.budget
        if budget is not None and budget.level < budget.capacity:
            budget.give_back(budget.refund)

    async def after(self, first: RetryableAttempt, *args: P.args, **kwargs: P.kwargs) -> T:
        """Retry after the first attempt (with these arguments) failed with ``first``."""
        policy, budget, clock = self.policy, self.budget, self._clock
        if policy.max_attempts == 1:
            raise first.error from first.__cause__
        failures = [first]
        deadline = clock() + policy.max_elapsed
        sent = 1  # attempts made, the first included
        taken = 0  # what this request's retries took from the budget

        def remaining() -> float:
            return deadline - clock()

        def give_up(exc: Exception) -> bool:
            nonlocal taken
            if remaining() <= 0:
                return True
            if budget is None or sent >= policy.max_attempts:
                return False  # backoff stops at max_tries itself
            if budget.take():
                taken += budget.cost
                return False
            if isinstance(exc, RetryableAttempt):
                _budget_exhausted(exc.error, budget)
            return True

        async def again(*args: P.args, **kwargs: P.kwargs) -> T:
            nonlocal sent
            if failures:
                raise failures.pop()
            sent += 1
            numbered = ATTEMPT.set(sent)  # the attempt number in the request's log line
            try:
                return await self.attempt(*args, **kwargs)
            finally:
                ATTEMPT.reset(numbered)

        retrying: Callable[P, Awaitable[T]] = backoff.on_exception(
            _waits,
            RetryableAttempt,
            max_tries=policy.max_attempts,
            giveup=give_up,
            jitter=None,
            on_backoff=self._on_retry,
            logger=None,
            policy=policy,
            remaining=lambda: remaining,  # backoff calls a callable argument once
        )(again)
        try:
            result = await retrying(*args, **kwargs)
        except RetryableAttempt as last:
            raise last.error from last.__cause__
        if budget is not None:
            budget.give_back(taken)
        return result
