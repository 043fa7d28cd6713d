"""A new campaign streams its input (issue 11): rows go out while the rest loads, and the
counts a run reports and returns are the journal's, never counted twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aicc_helpers import VOICE

from aicc_async import CampaignError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.testing import FakeAICC


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
            with pytest.raises(CampaignError, match="two different rows") as stopped:
                await c.run(aicc, rows=[*given, bad])
        assert "Nothing was sent" not in stopped.value.message
        assert "already sent" in stopped.value.message
        calls = {r.body["called"] for r in fake.received(VOICE)}
    assert "99999" not in calls  # the conflicting row is never sent
    assert len(calls) == len(fake.received(VOICE))  # and nobody twice


@pytest.mark.asyncio
async def test_a_repeated_identical_row_is_one_row_in_a_streamed_run(tmp_path: Path) -> None:
    given = rows(3)
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:
        async with fake.client() as aicc:
            counts = await c.run(aicc, rows=[given[0], given[1], given[1], given[2]])
        assert counts == (await c.report()).counts == StateCounts(done=3)
        assert c.loaded is not None
        assert not c.loaded.resumed  # a new campaign, whatever its input repeats


@pytest.mark.asyncio
async def test_stop_ends_a_run_that_waits_for_a_quiet_source(tmp_path: Path) -> None:
    given = rows(250)
    quiet = asyncio.Event()  # never set: the source goes quiet after 250 rows

    async def source() -> AsyncIterator[CampaignRow]:
        for row in given:
            yield row
        await quiet.wait()

    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:

        def on_progress(counts: StateCounts) -> None:
            if counts.done >= 200:  # the first batch is out; the loader waits on the source
                c.stop()

        async with fake.client() as aicc:
            run = asyncio.ensure_future(c.run(aicc, rows=source(), on_progress=on_progress))
            done, _ = await asyncio.wait({run}, timeout=30)
            assert done, "stop() did not end the run"
            counts = run.result()
        assert counts.done >= 200
        assert len(fake.received(VOICE)) == counts.done


@pytest.mark.asyncio
async def test_a_bad_source_is_refused_before_anything_is_loaded_or_sent(tmp_path: Path) -> None:
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:
        for bad in (42, b"in.csv", ""):
            with pytest.raises(ValueError, match="source"):
                await c.load(rows(3), source=bad)  # type: ignore[arg-type]
            async with fake.client() as aicc:
                with pytest.raises(ValueError, match="source"):
                    await c.run(aicc, rows=rows(3), source=bad)  # type: ignore[arg-type]
        assert (await c.report()).counts == StateCounts()
        assert fake.received(VOICE) == []
