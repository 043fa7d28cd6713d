"""Per-group in-flight limits and rate caps, measured by FakeAICC."""

from __future__ import annotations

import asyncio

import pytest
from aicc_helpers import VOICE

from aicc_async.testing import FakeAICC, Fault
from aicc_async.throttle import RateCap, Throttle


@pytest.mark.asyncio
async def test_thousand_calls_with_limit_5_never_exceed_5_in_flight(fake_aicc: FakeAICC) -> None:
    fake_aicc.chaos(seed=1, probability=1.0, faults=[Fault.LATENCY], delay=0.003)
    async with fake_aicc.client(limits={"voice_notification": 5}) as aicc:
        await asyncio.gather(
            *(
                aicc.voice_notification.create(called=f"{n:05d}", voice_content="$a$")
                for n in range(1000)
            )
        )

    assert fake_aicc.max_in_flight == 5
    assert len(fake_aicc.processed(VOICE)) == 1000


@pytest.mark.asyncio
async def test_rate_cap_spaces_request_starts() -> None:
    clock_now = [0.0]
    cap = RateCap(rate=10.0, clock=lambda: clock_now[0])
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    original, asyncio.sleep = asyncio.sleep, fake_sleep  # type: ignore[assignment]
    try:
        for _ in range(4):
            await cap.wait()
    finally:
        asyncio.sleep = original  # type: ignore[assignment]

    assert slept == [0.1, 0.2, 0.3]  # 4 starts at t = 0, .1, .2, .3


@pytest.mark.asyncio
async def test_rate_cap_applies_per_group(fake_aicc: FakeAICC) -> None:
    async with fake_aicc.client(rate_limits={"voice_notification": 40}) as aicc:
        await asyncio.gather(
            *(aicc.voice_notification.create(called=f"{n}", voice_content="$a$") for n in range(9))
        )
    times = [r.time for r in fake_aicc.received(VOICE)]
    assert max(times) - min(times) >= 8 / 40 * 0.9  # 9 starts, 1/40 s apart


@pytest.mark.asyncio
async def test_cancelled_while_waiting_for_the_rate_cap_gives_the_slot_back() -> None:
    throttle = Throttle({"outbound": 1}, {"outbound": 0.001})  # one start per 1000 s
    await throttle.acquire("outbound")  # the first start is immediate
    throttle.release("outbound")
    waiter = asyncio.ensure_future(throttle.acquire("outbound"))  # holds the slot, sleeps
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    async with asyncio.timeout(1):  # the slot is free again (only the rate cap would wait)
        await throttle._semaphores["outbound"].acquire()
