"""A new campaign streams its input (issue 11): rows go out while the rest loads, and the
counts a run reports and returns are the journal's, never counted twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicc_async import CampaignError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.testing import FakeAICC

VOICE = "createVoiceNotification"


def rows(n: int, *, invalid_every: int = 0) -> list[CampaignRow]:
    out = []
    for i in range(n):
        if invalid_every and i % invalid_every == 0:
            out.append(CampaignRow(key=f"k{i}", invalid="called: bad", source={"called": "x"}))
        else:
            request = CreateVoiceNotificationRequest(called=f"8888{i:05d}", voice_content="$Hi$")
            out.append(CampaignRow(key=f"k{i}", request=request))
    return out


@pytest.mark.asyncio
async def test_a_streamed_run_returns_and_reports_true_counts(tmp_path: Path) -> None:
    n = 5000  # several load batches
    seen: list[StateCounts] = []
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:
        async with fake.client() as aicc:
            counts = await c.run(aicc, rows=rows(n, invalid_every=100), on_progress=seen.append)
        report = await c.report()
        sent = len(fake.received(VOICE))
    assert counts == report.counts == StateCounts(done=n - 50, failed=50)
    assert sent == n - 50
    assert all(s.total <= n and min(s.pending, s.sending) >= 0 for s in seen)
    assert c.loaded is not None
    assert (c.loaded.read, c.loaded.added) == (n, n)
    # The first requests left before the whole input was read.
    assert any(s.total < n and s.done > 0 for s in seen)


@pytest.mark.asyncio
async def test_a_load_that_fails_mid_stream_stops_the_run(tmp_path: Path) -> None:
    given = rows(3000)
    bad = CampaignRow(
        key="k10", request=CreateVoiceNotificationRequest(called="99999", voice_content="$X$")
    )
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:
        async with fake.client() as aicc:
            with pytest.raises(CampaignError, match="two different rows"):
                await c.run(aicc, rows=[*given, bad])
        calls = {r.body["called"] for r in fake.received(VOICE)}
    assert "99999" not in calls  # the conflicting row is never sent
    assert len(calls) == len(fake.received(VOICE))  # and nobody twice
