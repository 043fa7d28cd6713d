"""The one rate limiter (``throttle.RateCap``): the client's cap waits, a campaign takes
starts in batches; both follow one rule (GCRA) and differ only in ``burst``."""

from __future__ import annotations

import pytest

from aicc_async.throttle import RateCap, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_take_grants_a_burst_then_one_start_per_interval() -> None:
    clock = Clock()
    cap = RateCap(10.0, burst=3, clock=clock)
    assert cap.take(10) == 1  # a burst is earned by a pause, not given at the start
    clock.now += 0.3
    assert cap.take(10) == 3  # a burst of three after a pause
    assert cap.take(1) == 0
    assert cap.delay() == pytest.approx(0.1)
    clock.now += 0.1
    assert cap.take(10) == 1
    clock.now += 0.25
    assert cap.take(10) == 2  # 0.25 s more: two starts' worth, within the burst
    clock.now += 10
    assert cap.take(10) == 3  # a long pause never grants more than the burst


def test_burst_one_spaces_every_start() -> None:
    clock = Clock()
    cap = RateCap(4.0, clock=clock)
    assert cap.take(5) == 1
    assert cap.delay() == pytest.approx(0.25)
    clock.now += 0.25
    assert cap.take(5) == 1
    assert cap.take(0) == 0


@pytest.mark.asyncio
async def test_wait_and_take_share_one_schedule() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        clock.now += seconds

    cap: RateLimiter = RateCap(2.0, clock=clock, sleep=sleep)
    await cap.wait()
    assert cap.take(1) == 0  # the waiter's start counts for takers too
    await cap.wait()
    assert slept == [0.5]
    assert cap.delay() == pytest.approx(0.5)
