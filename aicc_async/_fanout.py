"""Streaming fan-out: send many requests with a bounded number in flight, yield each
outcome as it completes. Memory is bounded by the concurrency, not by the input."""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from typing import Any, Generic, TypeVar

import attrs

from aicc_async.errors import AICCValidationError, is_int

__all__ = ["Outcome", "async_items", "check_concurrency", "fan_out"]

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")


@attrs.frozen
class Outcome(Generic[RequestT, ResultT]):
    """What became of one request of a bulk call: ``result`` or ``error``, never both.

    ``error`` is the exception ``send`` raised (an ``AICCError`` subclass; see the
    endpoint's method for which ones mean what). An item that is not a request
    object gives an ``AICCValidationError`` here, and nothing is sent for it.
    """

    request: RequestT
    result: ResultT | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None


def check_concurrency(value: object, default: int, endpoint: str) -> int:
    """``value`` as a concurrency (``None`` means ``default``); ``AICCValidationError`` if bad."""
    if value is None:
        return default
    if not is_int(value) or value < 1:
        raise AICCValidationError(
            f"concurrency: must be an integer >= 1, got {value!r}",
            field="concurrency",
            endpoint=endpoint,
        )
    return value


def async_items(items: object, endpoint: str) -> AsyncIterator[Any]:
    """Iterate ``items``, an iterable or async iterable, asynchronously (lazily)."""
    if isinstance(items, AsyncIterable):
        return aiter(items)
    if isinstance(items, Iterable) and not isinstance(items, (str, bytes, dict)):
        iterator = iter(items)

        async def pull() -> AsyncIterator[Any]:
            for item in iterator:
                yield item

        return pull()
    raise AICCValidationError(
        f"requests: must be an iterable or async iterable of request objects, "
        f"got {type(items).__name__}",
        field="requests",
        endpoint=endpoint,
    )


def fan_out(
    send: Callable[[RequestT], Awaitable[ResultT]],
    requests: Iterable[RequestT] | AsyncIterable[RequestT],
    *,
    concurrency: object,
    default: int,
    endpoint: str,
) -> AsyncGenerator[Outcome[RequestT, ResultT], None]:
    """Call ``send`` for each item of ``requests``, at most ``concurrency`` at once
    (``None``: ``default``, the endpoint group's limit), yielding an :class:`Outcome`
    per item in completion order; the one fan-out of every ``*_many`` method.

    Items are pulled from ``requests`` only as slots free up. If iterating
    ``requests`` raises, the requests in flight finish and are yielded, then the
    exception propagates. Leaving the loop early (``break``, an exception in the
    loop body) cancels the requests still in flight: their outcome is unknown.
    Raises ``AICCValidationError`` at once if ``requests`` is not iterable or
    ``concurrency`` is not an integer >= 1.
    """
    limit = check_concurrency(concurrency, default, endpoint)
    return _fan_out(send, async_items(requests, endpoint), limit)


async def _fan_out(
    send: Callable[[RequestT], Awaitable[ResultT]],
    source: AsyncIterator[RequestT],
    concurrency: int,
) -> AsyncGenerator[Outcome[RequestT, ResultT], None]:
    done: asyncio.Queue[Outcome[RequestT, ResultT]] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()
    in_flight = 0
    source_error: Exception | None = None

    async def one(request: RequestT) -> None:
        try:
            outcome: Outcome[RequestT, ResultT] = Outcome(request, await send(request))
        except Exception as exc:
            outcome = Outcome(request, error=exc)
        done.put_nowait(outcome)

    try:
        while True:
            while source_error is None and in_flight < concurrency:
                try:
                    request = await anext(source)
                except StopAsyncIteration:
                    source_error = StopAsyncIteration()
                    break
                except Exception as exc:
                    source_error = exc
                    break
                task = asyncio.create_task(one(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                in_flight += 1
            if in_flight == 0:
                break
            outcome = await done.get()
            in_flight -= 1
            yield outcome
        if source_error is not None and not isinstance(source_error, StopAsyncIteration):
            raise source_error
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
