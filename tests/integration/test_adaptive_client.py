"""``rate_limits={group: "auto"}`` on a client: throttle answers slow it down, single
calls keep their retries and still raise ``AICCRateLimitError`` in the end."""

from __future__ import annotations

import pytest
from aicc_helpers import FakeClock

from aicc_async import AICCBusinessError, AICCRateLimitError, AICCValidationError, RetryPolicy
from aicc_async.adaptive import AutoRate
from aicc_async.config import ClientConfig
from aicc_async.testing import FakeAICC, Fault


@pytest.mark.asyncio
async def test_a_429_cuts_the_clients_adaptive_rate_and_the_call_still_raises() -> None:
    clock = FakeClock()
    fake = FakeAICC(clock=clock, hidden_rate_limit=1, hidden_burst=1)
    auto = AutoRate(initial=1000)  # 1 ms between starts: the test's clock does not move
    async with (
        fake,
        fake.client(
            clock=clock, rate_limits={"voice_notification": auto}, retry=RetryPolicy(max_attempts=2)
        ) as aicc,
    ):
        limiter = aicc.rate_limiter("voice_notification")
        assert limiter is not None
        await aicc.voice_notification.create(called="88880001", voice_content="$a$")
        with pytest.raises(AICCRateLimitError):  # retried once, refused twice
            await aicc.voice_notification.create(called="88880002", voice_content="$a$")
        assert limiter.throttled == 2
        assert limiter.rate < 1000 * 0.7 + 1e-6  # cut (once per round, however many 429s)
        assert aicc.rate_limiter("outbound") is None

    assert fake.calls_to("88880002") == 0


@pytest.mark.asyncio
async def test_a_busy_answer_is_a_throttle_signal_too(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.BUSY, endpoint="createVoiceNotification")
    async with fake_aicc.client(
        rate_limits={"voice_notification": "auto"}, retry=RetryPolicy(max_attempts=1)
    ) as aicc:
        with pytest.raises(AICCBusinessError):
            await aicc.voice_notification.create(called="88880001", voice_content="$a$")
        limiter = aicc.rate_limiter("voice_notification")
        assert limiter is not None
        assert (limiter.throttled, limiter.sent) == (1, 1)
        await aicc.voice_notification.create(called="88880002", voice_content="$a$")
        assert (limiter.throttled, limiter.sent) == (1, 2)


def test_rate_limits_take_auto_or_a_number_only() -> None:
    with pytest.raises(AICCValidationError, match="or 'auto'"):
        ClientConfig(
            base_url="http://127.0.0.1:1",
            app_key="k",
            app_secret="s",
            rate_limits={"voice_notification": "fast"},
        )
