"""``rate_limits={group: "auto"}`` with ``redis_url``: one adaptive rate for the tenant,
which a throttle answer in any process cuts for all."""

from __future__ import annotations

import asyncio

import pytest
from aicc_helpers import VOICE

from aicc_async import AICCRateLimitError, RetryPolicy
from aicc_async.adaptive import AutoRate
from aicc_async.redis_state import RedisAdaptiveRate
from aicc_async.testing import FakeAICC, Fault


@pytest.mark.asyncio
async def test_a_429_in_one_process_slows_every_process_sharing_redis(
    fake_aicc: FakeAICC, redis_url: str
) -> None:
    options = {
        "redis_url": redis_url,
        "rate_limits": {"voice_notification": AutoRate(initial=100)},
        "retry": RetryPolicy(max_attempts=1),
    }
    async with fake_aicc.client(**options) as one, fake_aicc.client(**options) as other:
        mine, theirs = (
            one.rate_limiter("voice_notification"),
            other.rate_limiter("voice_notification"),
        )
        assert isinstance(mine, RedisAdaptiveRate)
        assert isinstance(theirs, RedisAdaptiveRate)
        await other.voice_notification.create(called="88880001", voice_content="$a$")
        before = theirs.rate
        assert before >= 100  # slow start, from 100/s

        fake_aicc.inject(Fault.HTTP_429, endpoint=VOICE)
        with pytest.raises(AICCRateLimitError):
            await one.voice_notification.create(called="88880002", voice_content="$a$")
        await asyncio.gather(*mine._cuts)  # the cut is made in Redis in the background

        await other.voice_notification.create(called="88880003", voice_content="$a$")
        assert theirs.rate < 0.75 * before  # the other process paces at the cut rate
        assert (mine.throttled, theirs.throttled) == (1, 0)

    assert fake_aicc.calls_to("88880002") == 0


@pytest.mark.asyncio
async def test_with_the_local_fallback_an_unreachable_redis_leaves_a_local_adaptive_rate(
    fake_aicc: FakeAICC, free_port: int
) -> None:
    async with fake_aicc.client(
        redis_url=f"redis://127.0.0.1:{free_port}/0",
        redis_fallback="local",
        rate_limits={"voice_notification": "auto"},
    ) as aicc:
        await aicc.voice_notification.create(called="88880001", voice_content="$a$")
        limiter = aicc.rate_limiter("voice_notification")
        assert limiter is not None
        assert (limiter.sent, limiter.throttled) == (1, 0)
        assert limiter.rate >= 10  # this process's own slow start

    assert fake_aicc.calls_to("88880001") == 1
