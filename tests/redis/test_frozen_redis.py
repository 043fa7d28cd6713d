"""A Redis that stops answering (SIGSTOP: its port still accepts connections, nothing
replies) costs one timeout, not one per request: after the first, every call of the
client fails at once with one message saying what happened and what to do, and
nothing is sent.

Each test freezes a redis-server of its own (``own_redis``) with a small timeout
(``Timeout.connect``, which Redis gets too) instead of the default 5 s.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from aicc_helpers import VOICE

from aicc_async import AICCConnectionError, Timeout
from aicc_async.bulk import Campaign, CampaignRow
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.testing import FakeAICC

REDIS_TIMEOUT = 0.5
ROWS = 30


def rows(n: int) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=str(i),
            request=CreateVoiceNotificationRequest(called=f"139{i:08d}", voice_content="$a$"),
        )
        for i in range(n)
    ]


@pytest.mark.asyncio
async def test_a_frozen_redis_stops_a_campaign_after_one_timeout_and_sends_nothing(
    fake_aicc: FakeAICC,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    url, redis = own_redis
    options = {
        "redis_url": url,
        "rate_limits": {"voice_notification": 1000.0},  # tenant-wide: a Redis call per start
        "timeout": Timeout(total=5.0, connect=REDIS_TIMEOUT),
        "limits": {"voice_notification": ROWS},
    }
    async with fake_aicc.client(**options) as aicc:
        # The AccessToken is fetched and the cap taken while Redis answers.
        await aicc.voice_notification.create(called="13800000000", voice_content="$a$")
        redis.send_signal(signal.SIGSTOP)
        async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
            started = time.monotonic()
            with pytest.raises(AICCConnectionError) as caught:
                await campaign.run(aicc, rows=rows(ROWS), concurrency=ROWS)
            elapsed = time.monotonic() - started
            counts = (await campaign.report()).counts

    # One timeout (and the campaign's own work), not one per row in flight (15 s).
    assert elapsed < 6 * REDIS_TIMEOUT, elapsed
    message = str(caught.value)
    assert f"Redis at {url} did not answer within {REDIS_TIMEOUT:g} s" in message
    assert "nothing was sent" in message
    assert "redis_fallback='local'" in message
    assert len(fake_aicc.received(VOICE)) == 1  # the one before the freeze
    assert counts.pending == ROWS
    assert counts.unknown == 0


@pytest.mark.asyncio
async def test_after_a_timeout_calls_fail_at_once_until_redis_is_tried_again(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, redis = own_redis
    now = [100.0]
    async with (
        FakeAICC(clock=lambda: now[0]) as fake,
        fake.client(
            redis_url=url,
            rate_limits={"voice_notification": 1000.0},
            timeout=Timeout(total=5.0, connect=REDIS_TIMEOUT),
            clock=lambda: now[0],
        ) as aicc,
    ):
        await aicc.voice_notification.create(called="13800000000", voice_content="$a$")
        redis.send_signal(signal.SIGSTOP)
        with pytest.raises(AICCConnectionError, match="did not answer"):
            await aicc.voice_notification.create(called="13800000001", voice_content="$a$")

        started = time.monotonic()
        for n in range(2, 12):
            with pytest.raises(AICCConnectionError, match="did not answer") as caught:
                await aicc.voice_notification.create(
                    called=f"138000000{n:02d}", voice_content="$a$"
                )
        assert time.monotonic() - started < 10 * REDIS_TIMEOUT / 2  # none waited for Redis
        assert "fails at once for 30 s, then Redis is tried again" in str(caught.value)

        # Once Redis answers again, the next call past that time uses it.
        redis.send_signal(signal.SIGCONT)
        now[0] += 31
        await aicc.voice_notification.create(called="13800000099", voice_content="$a$")

    assert [r.body["called"] for r in fake.received(VOICE)] == ["13800000000", "13800000099"]
