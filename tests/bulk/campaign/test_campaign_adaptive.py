"""``Campaign.run(rate="auto")`` against a tenant with a hidden rate limit: throttled rows
go back to the queue, nobody is phoned twice, every row ends done."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicc_async import RetryPolicy
from aicc_async.adaptive import AutoRate
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.bulk.engine import little
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.errors import AICCValidationError
from aicc_async.testing import FakeAICC

ONE_ATTEMPT = RetryPolicy(max_attempts=1)


def rows(n: int) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(called=f"8888{i:05d}", voice_content="$a$"),
        )
        for i in range(n)
    ]


@pytest.mark.asyncio
async def test_auto_rate_requeues_throttled_rows_and_finishes_every_row_once(
    tmp_path: Path,
) -> None:
    # Twenty rows leave at once (a burst of 0.1 s at 200/s); the tenant lets 5 through.
    fake = FakeAICC(hidden_rate_limit=50, hidden_burst=5)
    async with fake, Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        async with fake.client(retry=ONE_ATTEMPT) as aicc:
            counts = await campaign.run(
                aicc, rows=rows(40), concurrency="auto", rate=AutoRate(initial=200, ceiling=300)
            )
        limiter = campaign.rate_limiter

    assert counts == StateCounts(done=40)
    assert fake.throttled > 0
    assert campaign.requeued == fake.throttled  # every 429'd row went back to the queue
    assert limiter is not None
    assert limiter.throttled == fake.throttled  # and the limiter heard each 429
    assert limiter.rate < 200  # it slowed down
    assert limiter.samples[0].rate == pytest.approx(200, rel=0.05)  # the rate over time
    assert all(fake.calls_to(f"8888{i:05d}") == 1 for i in range(40))


@pytest.mark.asyncio
async def test_rate_and_concurrency_take_auto_or_numbers_only(tmp_path: Path) -> None:
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        async with fake.client() as aicc:
            with pytest.raises(AICCValidationError, match="or 'auto'"):
                await campaign.run(aicc, rows=rows(1), rate="fast")  # type: ignore[arg-type]
            with pytest.raises(AICCValidationError, match="max_throttled"):
                await campaign.run(aicc, rows=rows(1), max_throttled=0)
        assert not fake.requests


def test_concurrency_auto_follows_littles_law_within_the_pool() -> None:
    assert little(150, 0.2, 400) == 40  # 150/s x 0.2 s = 30 in flight, with a margin
    assert little(150, 0.2, 20) == 20  # never above the pool
    assert little(0.5, 0.01, 400) == 3
    assert little(150, None, 400) == 400  # no latency seen yet: all of it


@pytest.mark.asyncio
async def test_throttled_rows_go_back_to_the_queue_on_a_postgresql_journal_too(
    postgresql_dsn: str, campaign_name: str
) -> None:
    fake = FakeAICC(hidden_rate_limit=50, hidden_burst=5)
    c = Campaign(postgresql_dsn, "voice_notification", campaign=campaign_name)
    async with fake, c, fake.client(retry=ONE_ATTEMPT) as aicc:
        counts = await c.run(aicc, rows=rows(30), concurrency=20, rate=AutoRate(initial=200))

    assert counts == StateCounts(done=30)
    assert fake.throttled > 0
    assert c.requeued == fake.throttled
    assert all(fake.calls_to(f"8888{i:05d}") == 1 for i in range(30))
