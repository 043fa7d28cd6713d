"""A whole campaign on a PostgreSQL journal (``Campaign(dsn, kind, campaign=NAME)``)
against FakeAICC: load from a CSV, run with release events, then report, outcomes and
exports from a read-only session, as ``aicc report`` would. The journal rules
themselves are tested on both backends in tests/bulk/journal/."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

import pytest
from aicc_helpers import number
from test_campaign_outcomes import KEY, serving

from aicc_async import CampaignError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts, engine
from aicc_async.bulk.campaign.csv_input import CampaignFile
from aicc_async.bulk.campaign.exports import export_problems, export_unanswered_rows
from aicc_async.bulk.journal import Finished, open_journal
from aicc_async.bulk.journal.postgres import PostgresJournal
from aicc_async.testing import FakeAICC


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.asyncio
async def test_a_whole_campaign_runs_on_postgresql(
    tmp_path: Path, postgresql_dsn: str, campaign_name: str
) -> None:
    n = 40
    source = tmp_path / "contacts.csv"
    lines = ["id,called,text", *(f"c{i},{number(i)},Hello" for i in range(n))]
    lines += ["bad,12ab,Hi", f"again,{number(3)},Hi"]  # invalid input; a number used already
    source.write_text("\n".join(lines) + "\n")

    async with FakeAICC(callback_key=KEY, release_delay=0.01) as fake:
        async with Campaign(postgresql_dsn, "voice_notification", campaign=campaign_name) as run:
            with CampaignFile(source, "voice_notification") as file:
                summary = await run.load(file.rows(), source=source)
            receiver = run.callback_receiver(KEY)
            async with serving(receiver.app()) as url, fake.client() as aicc:
                counts = await run.run(aicc, concurrency=10, callback_url=url)
                await fake.wait_release_events()
                again = await run.run(aicc)  # a second run: nothing left to send
        sent = {e.call_serial_no: e for e in fake.release_events}
        calls = [fake.calls_to(number(i)) for i in range(n)]

    assert summary.added == n + 2
    assert counts == again == StateCounts(done=n, failed=1, duplicate=1)
    assert calls == [1] * n
    assert len(sent) == n

    async with Campaign(postgresql_dsn, campaign=campaign_name, read_only=True) as report_on:
        report = await report_on.report()
        assert report_on.files == ()
        assert await report_on.source() == source.resolve()
        with pytest.raises(CampaignError, match="will not write the export"):
            await export_problems(report_on, source)  # the input is still protected
        problems = await export_problems(report_on, tmp_path / "problems.csv")
        unanswered = await export_unanswered_rows(report_on, tmp_path / "again.csv")

    answered = sum(e.answered for e in sent.values())
    assert report.kind == "voice_notification"
    assert postgresql_dsn.split("@")[0].split(":")[-1] not in report.path  # no password
    assert report.to_json()["journal"] == report.path
    assert (report.outcomes.answered, report.outcomes.not_answered) == (answered, n - answered)
    assert report.outcomes.awaiting == 0
    assert problems == 2
    assert {(r["id"], r["state"]) for r in read_csv(tmp_path / "problems.csv")} == {
        ("bad", "failed"),
        ("again", "duplicate"),
    }
    assert unanswered == n - answered
    assert {r["called"] for r in read_csv(tmp_path / "again.csv")} == {
        e.called for e in sent.values() if not e.answered
    }


@pytest.mark.asyncio
async def test_two_workers_run_one_campaign_and_phone_everyone_once(
    postgresql_dsn: str, campaign_name: str
) -> None:
    n = 400
    rows = [
        CampaignRow(
            key=f"c{i}",
            request=CreateVoiceNotificationRequest(called=number(i % 350), voice_content="$Hi$"),
        )
        for i in range(n)
    ]
    first = Campaign(postgresql_dsn, "voice_notification", campaign=campaign_name)
    second = Campaign(postgresql_dsn, "voice_notification", campaign=campaign_name)
    async with FakeAICC() as fake, first, second:
        async with fake.client() as one, fake.client() as two:
            counts = await asyncio.gather(
                first.run(one, rows=rows, concurrency=8), second.run(two, rows=rows, concurrency=8)
            )
        calls = [fake.calls_to(number(i)) for i in range(350)]
    # Each run ends once no row is in flight on any worker, and counts them all.
    assert counts == [StateCounts(done=350, duplicate=50)] * 2
    assert calls == [1] * 350
    assert sorted(s.added for s in (first.loaded, second.loaded) if s is not None) == [0, n]


@pytest.mark.asyncio
async def test_a_run_waits_for_a_dead_workers_rows_and_leaves_them_unknown(
    postgresql_dsn: str, campaign_name: str
) -> None:
    given = [
        CampaignRow(
            key=f"c{i}",
            request=CreateVoiceNotificationRequest(called=number(i), voice_content="$Hi$"),
        )
        for i in range(30)
    ]
    async with (
        FakeAICC() as fake,
        Campaign(postgresql_dsn, "voice_notification", campaign=campaign_name) as live,
    ):
        await live.load(given)
        dead = await open_journal(
            postgresql_dsn, None, campaign=campaign_name, lease=0.5
        )  # another worker, which claims three rows and is then killed
        try:
            claim = await dead.commit([], 3, 0, once_per_number=True)
            assert isinstance(dead, PostgresJournal)
            assert dead._heartbeat is not None
            dead._heartbeat.cancel()  # SIGKILL: no heartbeat, no close
            async with fake.client() as aicc:
                counts = await live.run(aicc, concurrency=5)
            problems = [row async for row in live.problem_rows()]
        finally:
            await dead.close()
        calls = [fake.calls_to(number(i)) for i in range(30)]
    assert counts == StateCounts(done=27, unknown=3)
    assert calls == [0] * 3 + [1] * 27  # the dead worker's rows are never sent again
    assert [(p["key"], p["code"]) for p in problems] == [(c.key, "interrupted") for c in claim.rows]


@pytest.mark.asyncio
async def test_a_workers_progress_counts_what_the_other_workers_did(
    postgresql_dsn: str, campaign_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "_SHARED_COUNTS_EVERY", 0.0)  # at every commit, not each second
    given = [
        CampaignRow(
            key=f"c{i}",
            request=CreateVoiceNotificationRequest(called=number(i), voice_content="$Hi$"),
        )
        for i in range(200)
    ]
    seen: list[StateCounts] = []
    async with (
        FakeAICC() as fake,
        Campaign(postgresql_dsn, "voice_notification", campaign=campaign_name) as live,
    ):
        await live.load(given)
        other = await open_journal(postgresql_dsn, None, campaign=campaign_name)
        try:
            held = await other.commit([], 20, 0, once_per_number=True)  # another worker's
            finished = [Finished(c.seq, "done") for c in held.rows]
            other_done: asyncio.Future[Any] | None = None

            def progress(counts: StateCounts) -> None:
                nonlocal other_done
                seen.append(counts)
                if other_done is None:  # the other worker finishes its rows meanwhile
                    other_done = asyncio.ensure_future(
                        other.commit(finished, 0, held.cursor, once_per_number=True)
                    )

            async with fake.client() as aicc:
                counts = await live.run(aicc, concurrency=4, on_progress=progress)
            assert other_done is not None
            await other_done
        finally:
            await other.close()
    assert counts == StateCounts(done=200)
    assert seen[-1] == StateCounts(done=200)  # this worker's 180 rows and the other's 20
