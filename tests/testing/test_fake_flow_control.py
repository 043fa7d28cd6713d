"""FakeAICC's hidden rate limit: 429 (unprocessed) above a rate the client is not told,
changeable mid-run (the fake's clock: no real time)."""

from __future__ import annotations

import asyncio

import pytest
from fake_http import FakeClock

from aicc_async import AICCRateLimitError, RetryPolicy
from aicc_async.testing import FakeAICC

VOICE = "createVoiceNotification"


@pytest.mark.asyncio
async def test_requests_above_the_hidden_limit_are_answered_429_and_not_processed() -> None:
    clock = FakeClock()
    fake = FakeAICC(clock=clock, hidden_rate_limit=10, hidden_burst=2)
    async with fake, fake.client(retry=RetryPolicy(max_attempts=1)) as aicc:

        async def call(n: int) -> object:
            return await aicc.voice_notification.create(called=f"8888{n:04d}", voice_content="$a$")

        first = await asyncio.gather(*(call(n) for n in range(3)), return_exceptions=True)
        assert sum(isinstance(r, AICCRateLimitError) for r in first) == 1  # a burst of 2
        clock.now += 0.1  # one more token at 10/s
        assert not isinstance(await call(3), Exception)
        with pytest.raises(AICCRateLimitError):
            await call(4)
        fake.set_hidden_limit(None)  # the limit lifted mid-run
        await asyncio.gather(*(call(n) for n in range(5, 25)))
        fake.set_hidden_limit(1, burst=1)  # and set lower
        second = await asyncio.gather(*(call(n) for n in range(25, 28)), return_exceptions=True)
        assert sum(isinstance(r, AICCRateLimitError) for r in second) == 2

    assert fake.throttled == 4
    assert fake.stats()["throttled"] == 4
    assert len(fake.processed(VOICE)) == 2 + 1 + 20 + 1
    assert fake.calls_to("88880004") == 0


def test_a_bad_hidden_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        FakeAICC(hidden_rate_limit=0)
