"""Streaming fan-out: ``voice_notification.create_many`` and ``outbound.write_back_many``.

FakeAICC counts what it received and what it processed (a processed voice
notification is a person phoned); each test checks what a user would see: one
outcome per request, a bounded number in flight, a lazily read input, and nobody
phoned twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import pytest
from aicc_helpers import FAST, VOICE, client, number

from aicc_async import (
    AICCOutcomeUnknownError,
    AICCValidationError,
    CreateVoiceNotificationRequest,
    Timeout,
    VoiceNotificationResult,
    WriteBackResult,
    WriteBackResultRequest,
)
from aicc_async.bulk import Outcome
from aicc_async.testing import FakeAICC, Fault

MIDRESULT = "midresult"
T = TypeVar("T")


def voice(i: int) -> CreateVoiceNotificationRequest:
    return CreateVoiceNotificationRequest(called=number(i), voice_content="$Your parcel$")


def write_back(i: int) -> WriteBackResultRequest:
    return WriteBackResultRequest(
        sub_cc_no=1, vdn_id=2, unique_id=f"uid-{i}", service_id="svc", status="0"
    )


async def collect(outcomes: AsyncIterator[Outcome[Any, Any]], into: list[Any]) -> None:
    """Append every outcome to ``into`` (kept when iterating raises)."""
    async for o in outcomes:
        into.append(o)


def numbers_of(outcomes: list[Outcome[Any, Any]]) -> list[str]:
    return sorted(o.request.called for o in outcomes)


# -- one outcome per request ----------------------------------------------------------------


def _as_list(n: int) -> Any:
    return [voice(i) for i in range(n)]


def _as_generator(n: int) -> Any:
    return (voice(i) for i in range(n))


def _as_async_generator(n: int) -> Any:
    async def requests() -> AsyncIterator[CreateVoiceNotificationRequest]:
        for i in range(n):
            await asyncio.sleep(0)
            yield voice(i)

    return requests()


@pytest.mark.parametrize("make", [_as_list, _as_generator, _as_async_generator])
@pytest.mark.asyncio
async def test_every_request_yields_exactly_one_outcome(fake_aicc: FakeAICC, make: Any) -> None:
    n = 60
    async with client(fake_aicc) as aicc:
        outcomes = [o async for o in aicc.voice_notification.create_many(make(n), concurrency=8)]

    assert len(outcomes) == n
    assert numbers_of(outcomes) == sorted(number(i) for i in range(n))
    for o in outcomes:
        assert o.ok
        assert o.error is None
        assert isinstance(o.result, VoiceNotificationResult)
        assert o.result.call_serial_no
    serials = {o.result.call_serial_no for o in outcomes if o.result is not None}
    assert len(serials) == n  # n distinct calls, not one call reported n times
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))
    assert len(fake_aicc.received(VOICE)) == n


@pytest.mark.asyncio
async def test_empty_input_yields_nothing_and_sends_nothing(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc) as aicc:
        outcomes = [o async for o in aicc.voice_notification.create_many([])]
    assert outcomes == []
    assert fake_aicc.received(VOICE) == []


@pytest.mark.asyncio
async def test_refused_and_successful_requests_each_get_their_outcome(
    fake_aicc: FakeAICC,
) -> None:
    fake_aicc.trial_trustlist = {number(i) for i in range(10) if i % 3}
    async with client(fake_aicc) as aicc:
        outcomes = [
            o async for o in aicc.voice_notification.create_many([voice(i) for i in range(10)])
        ]

    by_number = {o.request.called: o for o in outcomes}
    assert len(by_number) == 10
    for i in range(10):
        o = by_number[number(i)]
        if i % 3:
            assert o.ok
        else:
            assert not o.ok
            assert o.result is None
            assert getattr(o.error, "code", None) == "16"
            assert fake_aicc.calls_to(number(i)) == 0


# -- the concurrency bound -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrency_bound_holds(fake_aicc: FakeAICC) -> None:
    fake_aicc.chaos(seed=1, probability=1.0, faults=[Fault.LATENCY], delay=0.01)
    async with client(fake_aicc) as aicc:
        outcomes = [
            o
            async for o in aicc.voice_notification.create_many(
                [voice(i) for i in range(200)], concurrency=7
            )
        ]

    assert len(outcomes) == 200
    assert all(o.ok for o in outcomes)
    assert 2 <= fake_aicc.max_in_flight <= 7


@pytest.mark.asyncio
async def test_default_concurrency_is_the_clients_limit(fake_aicc: FakeAICC) -> None:
    fake_aicc.chaos(seed=1, probability=1.0, faults=[Fault.LATENCY], delay=0.01)
    async with client(fake_aicc, limits={"voice_notification": 4}) as aicc:
        outcomes = [
            o async for o in aicc.voice_notification.create_many([voice(i) for i in range(40)])
        ]
    assert len(outcomes) == 40
    assert 2 <= fake_aicc.max_in_flight <= 4


@pytest.mark.asyncio
async def test_input_is_pulled_lazily(fake_aicc: FakeAICC) -> None:
    concurrency = 5
    pulled = 0

    def requests() -> Iterator[CreateVoiceNotificationRequest]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield voice(i)

    seen_at_first: int | None = None
    async with client(fake_aicc) as aicc:
        outcomes = aicc.voice_notification.create_many(requests(), concurrency=concurrency)
        assert pulled == 0  # nothing is read before iteration starts
        async with contextlib.aclosing(outcomes):
            count = 0
            async for _ in outcomes:
                count += 1
                if seen_at_first is None:
                    seen_at_first = pulled
                # never more than one slot's worth ahead of what was yielded
                assert pulled <= count + concurrency
                if count == 20:
                    break

    assert seen_at_first is not None
    assert seen_at_first <= concurrency + 1
    assert pulled <= 20 + concurrency
    assert len(fake_aicc.received(VOICE)) <= 20 + concurrency


# -- bad items, ambiguous failures -------------------------------------------------------------


@pytest.mark.asyncio
async def test_non_request_item_gives_validation_error_outcome_and_nothing_sent(
    fake_aicc: FakeAICC,
) -> None:
    bad = {"called": "88880000", "voice_content": "$hi$"}
    items: list[Any] = [voice(1), bad, voice(2), "88880003", voice(4)]
    async with client(fake_aicc) as aicc:
        outcomes = [o async for o in aicc.voice_notification.create_many(items)]

    assert len(outcomes) == 5
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) == 2
    assert {id(o.request) for o in failed} == {id(bad), id(items[3])}
    assert all(isinstance(o.error, AICCValidationError) for o in failed)
    assert all(o.result is None for o in failed)
    assert len(fake_aicc.received(VOICE)) == 3  # only the three real requests
    for i in (1, 2, 4):
        assert fake_aicc.calls_to(number(i)) == 1
    assert fake_aicc.calls_to("88880000") == 0


@pytest.mark.asyncio
async def test_ambiguous_failure_is_outcome_unknown_and_never_resent(
    fake_aicc: FakeAICC,
) -> None:
    fake_aicc.inject(Fault.RESET_AFTER_PROCESSING, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        outcomes = [
            o
            async for o in aicc.voice_notification.create_many(
                [voice(i) for i in range(10)], concurrency=1
            )
        ]

    assert len(outcomes) == 10
    unknown = [o for o in outcomes if not o.ok]
    assert len(unknown) == 1
    assert isinstance(unknown[0].error, AICCOutcomeUnknownError)
    assert unknown[0].request.called == number(0)  # concurrency 1: the first one got the fault
    assert fake_aicc.calls_to(number(0)) == 1  # processed once, not retried
    assert len(fake_aicc.received(VOICE)) == 10  # no second attempt anywhere
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(10))


@pytest.mark.asyncio
async def test_retry_unsafe_opt_in_resends_after_an_ambiguous_failure(
    fake_aicc: FakeAICC,
) -> None:
    fake_aicc.inject(Fault.RESET_AFTER_PROCESSING, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        outcomes = [
            o async for o in aicc.voice_notification.create_many([voice(0)], retry_unsafe=True)
        ]

    assert [o.ok for o in outcomes] == [True]
    assert fake_aicc.calls_to(number(0)) == 2  # what retry_unsafe=True means


# -- the input failing -------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [3, 50])
@pytest.mark.asyncio
async def test_input_error_propagates_after_the_outcomes_of_what_was_read(
    fake_aicc: FakeAICC, concurrency: int
) -> None:
    n = 10

    def requests() -> Iterator[CreateVoiceNotificationRequest]:
        for i in range(n):
            yield voice(i)
        raise RuntimeError("the CSV file is truncated")

    outcomes: list[Outcome[Any, Any]] = []
    async with client(fake_aicc) as aicc:
        many = aicc.voice_notification.create_many(requests(), concurrency=concurrency)
        with pytest.raises(RuntimeError, match="truncated"):
            await collect(many, outcomes)

    assert len(outcomes) == n
    assert all(o.ok for o in outcomes)
    assert numbers_of(outcomes) == sorted(number(i) for i in range(n))
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))


@pytest.mark.asyncio
async def test_async_input_error_propagates_after_the_outcomes(fake_aicc: FakeAICC) -> None:
    async def requests() -> AsyncIterator[CreateVoiceNotificationRequest]:
        for i in range(4):
            yield voice(i)
        raise OSError("database connection lost")

    outcomes: list[Outcome[Any, Any]] = []
    async with client(fake_aicc) as aicc:
        many = aicc.voice_notification.create_many(requests(), concurrency=2)
        with pytest.raises(OSError, match="connection lost"):
            await collect(many, outcomes)

    assert len(outcomes) == 4
    assert all(o.ok for o in outcomes)


# -- leaving early ---------------------------------------------------------------------------------


def _fan_out_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and "_fan_out" in getattr(t.get_coro(), "__qualname__", "")
    ]


@pytest.mark.asyncio
async def test_breaking_out_cancels_in_flight_requests() -> None:
    # The first 9 requests hang until the fake closes; the 10th answers. Leaving the loop
    # after that answer must not wait for the hanging ones (client timeout: 5 s).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with FakeAICC() as fake:
            fake.inject(Fault.HANG, times=9, endpoint=VOICE)
            async with fake.client(timeout=Timeout(total=5, connect=1), retry=FAST) as aicc:
                outcomes = aicc.voice_notification.create_many(
                    [voice(i) for i in range(100)], concurrency=10
                )
                got: list[Outcome[Any, Any]] = []

                async def take_one_and_leave() -> None:
                    async with contextlib.aclosing(outcomes):
                        async for o in outcomes:
                            got.append(o)
                            assert len(_fan_out_tasks()) == 9  # the hung ones, in flight
                            break

                await asyncio.wait_for(take_one_and_leave(), 2)
                assert _fan_out_tasks() == []  # nothing left running in the background
                await asyncio.sleep(0)
                assert fake.in_flight == 9  # the hung ones were sent, then given up on
            assert len(fake.received(VOICE)) == 10  # nothing new was started after the break
        gc.collect()

    assert len(got) == 1
    assert got[0].ok
    assert _fan_out_tasks() == []
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


@pytest.mark.asyncio
async def test_exception_in_loop_body_cancels_in_flight_requests() -> None:
    async with FakeAICC() as fake:
        fake.inject(Fault.HANG, times=4, endpoint=VOICE)
        async with fake.client(timeout=Timeout(total=5, connect=1), retry=FAST) as aicc:
            outcomes = aicc.voice_notification.create_many(
                [voice(i) for i in range(20)], concurrency=5
            )

            async def consume() -> None:
                async with contextlib.aclosing(outcomes):
                    async for _ in outcomes:
                        raise KeyError("the caller's own bug")

            with pytest.raises(KeyError):
                await asyncio.wait_for(consume(), 2)
            assert _fan_out_tasks() == []
        assert len(fake.received(VOICE)) == 5


# -- bad arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [0, -1, True, "5", 2.5])
@pytest.mark.asyncio
async def test_bad_concurrency_is_refused_at_call_time(
    fake_aicc: FakeAICC, concurrency: Any
) -> None:
    pulled = 0

    def requests() -> Iterator[CreateVoiceNotificationRequest]:
        nonlocal pulled
        pulled += 1
        yield voice(0)

    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCValidationError) as caught:
            aicc.voice_notification.create_many(requests(), concurrency=concurrency)
        with pytest.raises(AICCValidationError):
            aicc.outbound.write_back_many([write_back(0)], concurrency=concurrency)

    assert caught.value.field == "concurrency"
    assert pulled == 0
    assert fake_aicc.requests == []


@pytest.mark.parametrize("requests", [None, 5, "88880000", b"x", {"called": "88880000"}])
@pytest.mark.asyncio
async def test_non_iterable_requests_are_refused_at_call_time(
    fake_aicc: FakeAICC, requests: Any
) -> None:
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCValidationError) as caught:
            aicc.voice_notification.create_many(requests)
        with pytest.raises(AICCValidationError):
            aicc.outbound.write_back_many(requests)
    assert caught.value.field == "requests"
    assert fake_aicc.requests == []


@pytest.mark.parametrize("retry_unsafe", ["yes", 1, None])
@pytest.mark.asyncio
async def test_bad_retry_unsafe_is_refused_at_call_time(
    fake_aicc: FakeAICC, retry_unsafe: Any
) -> None:
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCValidationError):
            aicc.voice_notification.create_many([voice(0)], retry_unsafe=retry_unsafe)
    assert fake_aicc.requests == []


# -- write_back_many ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_write_back_many_writes_every_row_once(fake_aicc: FakeAICC) -> None:
    n = 120
    async with client(fake_aicc) as aicc:
        outcomes = [
            o
            async for o in aicc.outbound.write_back_many(
                (write_back(i) for i in range(n)), concurrency=9
            )
        ]

    assert len(outcomes) == n
    assert all(o.ok and isinstance(o.result, WriteBackResult) for o in outcomes)
    assert sorted(o.request.unique_id for o in outcomes) == sorted(f"uid-{i}" for i in range(n))
    assert fake_aicc.write_backs == {f"uid-{i}": 1 for i in range(n)}
    assert 1 <= fake_aicc.max_in_flight <= 9


@pytest.mark.asyncio
async def test_write_back_many_retries_ambiguous_failures(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.RESET_AFTER_PROCESSING, times=3, endpoint=MIDRESULT)
    fake_aicc.inject(Fault.HTML_502, times=2, endpoint=MIDRESULT)
    n = 30
    async with client(fake_aicc) as aicc:
        outcomes = [
            o
            async for o in aicc.outbound.write_back_many(
                [write_back(i) for i in range(n)], concurrency=5
            )
        ]

    assert len(outcomes) == n
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    written = Counter(fake_aicc.write_backs)
    assert set(written) == {f"uid-{i}" for i in range(n)}
    # Five replays of rows that had been written: harmless, the same row is rewritten.
    assert sum(written.values()) == n + 5
    assert len(fake_aicc.received(MIDRESULT)) == n + 5


@pytest.mark.asyncio
async def test_write_back_many_non_request_item(fake_aicc: FakeAICC) -> None:
    items: list[Any] = [write_back(0), voice(1), write_back(2)]
    async with client(fake_aicc) as aicc:
        outcomes = [o async for o in aicc.outbound.write_back_many(items)]
    errors = [o.error for o in outcomes if not o.ok]
    assert len(outcomes) == 3
    assert len(errors) == 1
    assert isinstance(errors[0], AICCValidationError)
    assert fake_aicc.write_backs == {"uid-0": 1, "uid-2": 1}
