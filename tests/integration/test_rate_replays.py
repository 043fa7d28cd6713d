"""Every request that leaves passes the rate cap: the replay after a rejected token too."""

from __future__ import annotations

import itertools

import pytest
from aicc_helpers import VOICE, FakeClock

from aicc_async.testing import FakeAICC
from aicc_async.throttle import RateCap


class SleepingClock(FakeClock):
    """A monotonic clock the rate cap's sleeps move forward (no real waiting)."""

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.asyncio
async def test_replays_after_a_rejected_token_wait_for_the_rate_cap() -> None:
    clock = SleepingClock()
    fake = FakeAICC(clock=clock)
    async with fake, fake.client(rate_limits={"voice_notification": 20}, clock=clock) as aicc:
        # The client's cap on the test's clock: its waits move the clock, not the test.
        cap = RateCap(20, clock=clock, sleep=clock.sleep)
        aicc._transport.throttle._rates["voice_notification"] = cap
        await aicc.voice_notification.create(called="88880000", voice_content="$a$")
        for n in range(1, 6):
            fake.expire_tokens()  # every call is refused once, refreshed, replayed
            await aicc.voice_notification.create(called=f"8888{n:04d}", voice_content="$a$")

    arrivals = [r.time for r in fake.received(VOICE)]
    assert len(arrivals) == 11  # one call, then five sent twice
    assert len(fake.processed(VOICE)) == 6
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 1 / 20 - 1e-9  # 20/s: no two sends closer than 50 ms
