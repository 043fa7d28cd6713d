"""Call outcomes in campaigns (issue 8): release events received, verified and recorded
once on their campaign row; reported; the unanswered rows exported as a follow-up."""

from __future__ import annotations

import base64
import contextlib
import csv
import os
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest
from aicc_helpers import FAST, VOICE, number, serving

from aicc_async import CampaignError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.bulk.campaign.csv_input import CampaignFile
from aicc_async.bulk.campaign.exports import export_unanswered_rows
from aicc_async.bulk.journal import Finished, Outcome, open_journal
from aicc_async.callbacks import compute_signature
from aicc_async.testing import FakeAICC

KEY = "a-shared-key-of-32-characters-ok"


def rows(n: int) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(called=number(i), voice_content="$Parcel$"),
        )
        for i in range(n)
    ]


def outcomes_in(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """reference -> (outcome, release reason), for rows with a reference."""
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        found = db.execute(
            "SELECT reference, outcome, release_reason FROM rows WHERE reference IS NOT NULL"
        ).fetchall()
    return {ref: (outcome, reason) for ref, outcome, reason in found}


@pytest.mark.asyncio
async def test_every_release_event_is_recorded_once_on_its_row(tmp_path: Path) -> None:
    n = 300
    path = tmp_path / "c.db"
    async with FakeAICC(callback_key=KEY, release_delay=0.01, duplicate_rate=0.3) as fake:
        async with Campaign(path, "voice_notification") as campaign:
            await campaign.load(rows(n))
            receiver = campaign.callback_receiver(KEY)
            async with serving(receiver.app()) as url, fake.client(retry=FAST) as aicc:
                counts = await campaign.run(aicc, concurrency=20, callback_url=url)
                await fake.wait_release_events()
            report = await campaign.report()
        sent = {e.call_serial_no: e for e in fake.release_events}
    assert counts == StateCounts(done=n)
    assert len(sent) == n
    assert all(e.delivered for e in sent.values())
    assert any(e.duplicated for e in sent.values())  # some were delivered twice
    recorded = outcomes_in(path)
    assert recorded == {
        serial: ("answered" if e.answered else "not_answered", e.release_reason)
        for serial, e in sent.items()
    }
    answered = sum(e.answered for e in sent.values())
    assert (report.outcomes.answered, report.outcomes.not_answered) == (answered, n - answered)
    assert report.outcomes.awaiting == 0
    assert sum(count for _, count in report.outcomes.reasons) == n
    assert report.to_json()["outcomes"] == {
        "answered": answered,
        "not_answered": n - answered,
        "awaiting": 0,
        "refused_events": 0,
        "unmatched_events": 0,
        "settled": 0,
    }


@pytest.mark.asyncio
async def test_rows_with_their_own_callback_url_keep_it(tmp_path: Path) -> None:
    own = "https://crm.example.com/aicc/own"
    given = [
        CampaignRow(
            key="own",
            request=CreateVoiceNotificationRequest(
                called=number(1), voice_content="$Hi$", callback_url=own
            ),
        ),
        *rows(1),
    ]
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:
        await c.load(given)
        async with fake.client() as aicc:
            await c.run(aicc, callback_url="https://events.example.com/aicc/release")
        urls = {r.body["called"]: r.body.get("callBackUrl") for r in fake.received(VOICE)}
    assert base64.b64decode(urls[number(1)]).decode() == own
    assert base64.b64decode(urls[number(0)]).decode() == "https://events.example.com/aicc/release"


@pytest.mark.asyncio
async def test_bad_callback_urls_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as c:
        await c.load(rows(2))
        async with fake.client() as aicc:
            for bad in ("https://x.example/a?b=1", "ftp://x.example", "", 42):
                with pytest.raises(ValueError, match="callback_url"):
                    await c.run(aicc, callback_url=bad)  # type: ignore[arg-type]
        assert fake.received(VOICE) == []
    async with (
        Campaign(tmp_path / "w.db", "write_back") as c,
        FakeAICC() as fake,
        fake.client() as aicc,
    ):
        with pytest.raises(ValueError, match="no release events"):
            await c.run(aicc, callback_url="https://x.example/a")


@pytest.mark.asyncio
async def test_an_event_that_overtakes_its_send_is_recorded_when_the_send_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(2))
    journal = await open_journal(path, None)
    try:
        claim = await journal.commit([], 2, 0, once_per_number=True)
        early = Outcome(answered=False, release_reason="4", talk_duration=0)
        assert await journal.record_outcome("serial-1", early) is False  # no row has it yet
        assert await journal.has_outcome("serial-1")  # kept: a redelivery is not needed
        first = claim.rows[0]
        await journal.commit(
            [Finished(first.seq, "done", reference="serial-1")], 0, 0, once_per_number=True
        )
        outcomes = await journal.outcomes()
    finally:
        await journal.close()
    assert (outcomes.answered, outcomes.not_answered) == (0, 1)
    assert outcomes_in(path)["serial-1"] == ("not_answered", "4")


@pytest.mark.asyncio
async def test_an_event_for_no_row_is_acknowledged_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(1))
        receiver = campaign.callback_receiver(KEY)
        fields = {"callSerialNo": "999999999", "called": number(0), "releaseReason": "0"}
        timestamp, nonce = str(int(time.time())), "n-1"
        body = {
            **fields,
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": compute_signature(fields, KEY, timestamp, nonce),
        }
        async with (
            serving(receiver.app()) as url,
            aiohttp.ClientSession() as http,
            http.post(url, json=body) as response,
        ):
            assert response.status == 200
            assert (await response.json())["retCode"] == "0"
        report = await campaign.report()
    assert "matches no row" in caplog.text
    assert number(0) not in caplog.text
    assert (report.outcomes.answered, report.outcomes.not_answered) == (0, 0)


@pytest.mark.asyncio
async def test_outcomes_are_recorded_beside_a_running_campaign(tmp_path: Path) -> None:
    """`aicc listen` opens the journal to record outcomes while `aicc notify` runs on it."""
    n = 200
    path = tmp_path / "c.db"
    async with (
        FakeAICC(callback_key=KEY, release_delay=0.01, latency=0.01) as fake,
        Campaign(path, "voice_notification") as sender,
    ):
        await sender.load(rows(n))
        async with Campaign(path, outcomes_only=True) as listener:
            with pytest.raises(CampaignError, match="record call outcomes only"):
                await listener.load(rows(n))
            receiver = listener.callback_receiver(KEY)
            async with serving(receiver.app()) as url, fake.client(retry=FAST) as aicc:
                await sender.run(aicc, concurrency=10, callback_url=url)
                await fake.wait_release_events()
        report = await sender.report()
    assert report.outcomes.answered + report.outcomes.not_answered == n
    assert report.outcomes.awaiting == 0
    # Closed cleanly: the journal file alone holds everything.
    assert not (tmp_path / "c.db-wal").exists()


@pytest.mark.asyncio
async def test_the_unanswered_rows_export_is_the_input_of_a_follow_up(tmp_path: Path) -> None:
    n = 120
    path = tmp_path / "c.db"
    async with (
        FakeAICC(callback_key=KEY, release_delay=0.01, answer_rate=0.5) as fake,
        Campaign(path, "voice_notification") as campaign,
    ):
        await campaign.load(rows(n))
        receiver = campaign.callback_receiver(KEY)
        async with serving(receiver.app()) as url, fake.client(retry=FAST) as aicc:
            await campaign.run(aicc, callback_url=url)
            await fake.wait_release_events()
        unanswered = {e.called for e in fake.release_events if not e.answered}
        follow_up = tmp_path / "follow-up.csv"
        assert await export_unanswered_rows(campaign, follow_up) == len(unanswered)
        with pytest.raises(CampaignError, match="will not write the export"):
            await export_unanswered_rows(campaign, path)
    assert 0 < len(unanswered) < n
    with follow_up.open(newline="") as f:
        header = next(csv.reader(f))
    assert header[:2] == ["id", "called"]
    async with FakeAICC() as fake, Campaign(tmp_path / "c2.db", "voice_notification") as again:
        with CampaignFile(follow_up, "voice_notification") as file:
            await again.load(file.rows(), source=follow_up)
        async with fake.client() as aicc:
            assert await again.run(aicc) == StateCounts(done=len(unanswered))
        assert {r.body["called"] for r in fake.received(VOICE)} == unanswered
    assert sorted(os.listdir(tmp_path)).count("follow-up.csv") == 1


def test_campaign_refuses_both_access_flags(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one"):
        Campaign(tmp_path / "c.db", read_only=True, outcomes_only=True)
    with pytest.raises(ValueError, match="outcomes_only"):
        Campaign(tmp_path / "c.db", outcomes_only="yes")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_outcomes_only_needs_an_existing_journal(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match="no journal at"):
        await Campaign(tmp_path / "missing.db", outcomes_only=True).open()
    assert os.listdir(tmp_path) == []


@pytest.mark.asyncio
async def test_only_calls_sent_with_a_callback_url_await_a_release_event(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with_url = [
        CampaignRow(
            key="own-url",
            request=CreateVoiceNotificationRequest(
                called=number(99), voice_content="$Parcel$", callback_url="http://127.0.0.1:9/x"
            ),
        )
    ]
    async with FakeAICC(callback_key=KEY) as fake, Campaign(path, "voice_notification") as c:
        await c.load(rows(4) + with_url)
        async with fake.client(retry=FAST) as aicc:
            assert await c.run(aicc, concurrency=5) == StateCounts(done=5)
        report = await c.report()
    assert report.outcomes.awaiting == 1  # the row that named its own callback URL
    assert report.to_json()["outcomes"]["awaiting"] == 1


@pytest.mark.asyncio
async def test_rows_whose_answer_was_lost_are_settled_by_their_release_event(
    tmp_path: Path,
) -> None:
    from aicc_async.testing import Fault

    path = tmp_path / "c.db"
    numbered = [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(
                called=f"+86138000{i:05d}", voice_content="$Parcel$"
            ),
        )
        for i in range(6)
    ]
    async with FakeAICC(callback_key=KEY, release_delay=0.01) as fake:
        fake.inject(Fault.RESET_AFTER_PROCESSING, times=2)
        async with Campaign(path, "voice_notification") as campaign:
            await campaign.load(numbered)
            receiver = campaign.callback_receiver(KEY)
            async with serving(receiver.app()) as url, fake.client(retry=FAST) as aicc:
                assert (await campaign.run(aicc, concurrency=1, callback_url=url)).unknown == 2
                await fake.wait_release_events()
                again = await campaign.run(aicc, retry_unknown=True, callback_url=url)
            report = await campaign.report()
        calls = [fake.calls_to(f"+86138000{i:05d}") for i in range(6)]
    assert again == StateCounts(done=6)
    assert calls == [1] * 6  # nobody phoned twice
    assert report.outcomes.answered + report.outcomes.not_answered == 6
    assert report.outcomes.unmatched == 0
