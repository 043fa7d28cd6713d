"""Journaled campaigns against FakeAICC: every row ends recorded, nobody is phoned twice
unless the user asked for exactly that, and a stopped, cancelled or failed run resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aicc_helpers import FAST, VOICE, client, number, write_backs

from aicc_async import (
    AICCAuthError,
    AICCClient,
    AICCConnectionError,
    CreateVoiceNotificationRequest,
    RetryPolicy,
    Timeout,
)
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.errors import CampaignError
from aicc_async.testing import FakeAICC, Fault


def voice_rows(n: int, start: int = 0) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(called=number(i), voice_content="$Parcel$"),
        )
        for i in range(start, start + n)
    ]


def journal_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Every row of a closed journal by number called: state, code, description, reference."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        found = db.execute(
            "SELECT json_extract(payload, '$.called'), state, code, description, reference "
            "FROM rows"
        ).fetchall()
    return {
        called: {"state": state, "code": code, "description": description, "reference": ref}
        for called, state, code, description, ref in found
    }


def by_state(rows: dict[str, dict[str, Any]], state: str) -> set[str]:
    return {called for called, row in rows.items() if row["state"] == state}


def received_numbers(fake: FakeAICC, fault: Fault | None = None) -> list[str]:
    return [r.body["called"] for r in fake.received(VOICE) if fault is None or r.fault is fault]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def problems(campaign: Campaign) -> list[dict[str, Any]]:
    return [row async for row in campaign.problem_rows()]


# -- the happy path ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_campaign_phones_everyone_once_and_a_rerun_sends_nothing(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    path = tmp_path / "c.db"
    n = 300
    async with Campaign(path, "voice_notification") as campaign, client(fake_aicc) as aicc:
        assert (await campaign.load(voice_rows(n))).added == n
        counts = await campaign.run(aicc)
        report = await campaign.report()
        assert await problems(campaign) == []

    assert counts == StateCounts(done=n)
    assert report.counts == StateCounts(done=n)
    assert report.problems == ()
    assert report.to_json()["rows"] == n
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))
    assert len(fake_aicc.received(VOICE)) == n
    rows = journal_rows(path)
    references = {row["reference"] for row in rows.values()}
    assert len(references) == n  # each row keeps its own call serial number
    assert None not in references

    # The same input again, in a new session: nothing more is sent.
    async with Campaign(path, "voice_notification") as campaign, client(fake_aicc) as aicc:
        summary = await campaign.load(voice_rows(n))
        again = await campaign.run(aicc)
    assert (summary.added, summary.unchanged) == (0, n)
    assert again == StateCounts(done=n)
    assert len(fake_aicc.received(VOICE)) == n


@pytest.mark.asyncio
async def test_more_rows_loaded_later_are_sent_alone(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    async with (
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
        client(fake_aicc) as aicc,
    ):
        await campaign.load(voice_rows(20))
        await campaign.run(aicc)
        await campaign.load(voice_rows(30))  # ten more rows appended to the input
        counts = await campaign.run(aicc)
    assert counts == StateCounts(done=30)
    assert len(fake_aicc.received(VOICE)) == 30
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(30))


@pytest.mark.asyncio
async def test_changing_a_row_already_sent_is_refused(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        async with client(fake_aicc) as aicc:
            await campaign.load(voice_rows(5))
            await campaign.run(aicc)
        changed = voice_rows(5)
        changed[2] = CampaignRow(key="k2", request=voice_rows(1, start=50)[0].request)
        with pytest.raises(CampaignError, match="'k2'"):
            await campaign.load(changed)
        assert (await campaign.report()).counts == StateCounts(done=5)


@pytest.mark.asyncio
async def test_invalid_rows_are_never_sent(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    rows = [
        *voice_rows(4),
        CampaignRow(key="bad", invalid="called: '12ab' is not a number", source={"called": "12ab"}),
    ]
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(rows)
        async with client(fake_aicc) as aicc:
            counts = await campaign.run(aicc, retry_failed=True, retry_unknown=True)
        found = await problems(campaign)
    assert counts == StateCounts(done=4, failed=1)
    assert [(p["key"], p["code"], p["fields"]) for p in found] == [
        ("bad", "invalid", {"called": "12ab"})
    ]
    assert len(fake_aicc.received(VOICE)) == 4


# -- refusals and failures ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_refused_rows_fail_and_retry_failed_resends_exactly_them(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    n = 40
    refused = {number(i) for i in (3, 11, 12, 25, 39)}
    fake_aicc.trial_trustlist = {number(i) for i in range(n)} - refused
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign, client(fake_aicc) as aicc:
        await campaign.load(voice_rows(n))
        counts = await campaign.run(aicc)
        found = await problems(campaign)
        report = await campaign.report()

        assert counts == StateCounts(done=n - 5, failed=5)
        assert {p["fields"]["called"] for p in found} == refused
        assert {(p["state"], p["code"]) for p in found} == {("failed", "16")}
        assert all("trustlist" in p["description"] for p in found)
        assert [(p.state, p.code, p.count) for p in report.problems] == [("failed", "16", 5)]
        assert all(fake_aicc.calls_to(n_) == 0 for n_ in refused)

        # A plain re-run does not send failed rows again.
        assert await campaign.run(aicc) == counts
        assert len(fake_aicc.received(VOICE)) == n

        fake_aicc.trial_trustlist |= refused
        assert await campaign.run(aicc, retry_failed=True) == StateCounts(done=n)

    resent = received_numbers(fake_aicc)[n:]
    assert sorted(resent) == sorted(refused)
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))


@pytest.mark.asyncio
async def test_ambiguous_rows_are_unknown_and_resent_only_when_asked(
    tmp_path: Path, fake_aicc: FakeAICC, caplog: pytest.LogCaptureFixture
) -> None:
    n = 50
    fake_aicc.inject(Fault.RESET_AFTER_PROCESSING, times=3, endpoint=VOICE)
    fake_aicc.inject(Fault.HTML_502, times=1, endpoint=VOICE)
    async with (
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
        client(fake_aicc) as aicc,
    ):
        await campaign.load(voice_rows(n))
        counts = await campaign.run(aicc)
        found = await problems(campaign)
        ambiguous = set(received_numbers(fake_aicc, Fault.RESET_AFTER_PROCESSING))
        ambiguous |= set(received_numbers(fake_aicc, Fault.HTML_502))

        assert counts == StateCounts(done=n - 4, unknown=4)
        assert {p["fields"]["called"] for p in found} == ambiguous
        assert {p["state"] for p in found} == {"unknown"}
        codes = sorted(p["code"] for p in found)
        assert codes == ["HTTP 502", "no answer", "no answer", "no answer"]
        assert all(fake_aicc.calls_to(called) == 1 for called in ambiguous)  # not retried

        # A re-run leaves them alone.
        assert await campaign.run(aicc) == counts
        assert len(fake_aicc.received(VOICE)) == n

        # retry_unknown=True is the user asking for a second call: they get it.
        caplog.set_level(logging.WARNING, logger="aicc_async")
        assert await campaign.run(aicc, retry_unknown=True) == StateCounts(done=n)

    assert any("4 rows whose outcome was unknown" in r.getMessage() for r in caplog.records)
    assert sorted(received_numbers(fake_aicc)[n:]) == sorted(ambiguous)
    for i in range(n):
        assert fake_aicc.calls_to(number(i)) == (2 if number(i) in ambiguous else 1)


@pytest.mark.asyncio
async def test_http_500_fails_the_row_and_a_busy_row_goes_back_to_the_queue(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    fake_aicc.inject(Fault.HTTP_500, endpoint=VOICE)
    fake_aicc.inject(Fault.BUSY, times=FAST.max_attempts, endpoint=VOICE)
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(3))
        async with client(fake_aicc) as aicc:
            counts = await campaign.run(aicc, concurrency=1)  # rows in input order
        found = {p["key"]: p for p in await problems(campaign)}

    assert counts == StateCounts(done=2, failed=1)
    assert campaign.requeued == 1
    assert found["k0"]["state"] == "failed"
    assert found["k0"]["code"] == "HTTP 500"
    assert "500" in found["k0"]["description"]
    assert "k1" not in found
    # 500 is final (one request); busy ("try again later": not taken) was retried
    # max_attempts times, went back to the queue, and was sent once more.
    sent = received_numbers(fake_aicc)
    assert [sent.count(number(i)) for i in range(3)] == [1, FAST.max_attempts + 1, 1]
    assert [fake_aicc.calls_to(number(i)) for i in range(3)] == [0, 1, 1]


# -- the run cannot go on -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_refused_credentials_stop_the_run_with_every_row_pending(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    n = 30
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(n))
        async with AICCClient(
            base_url=fake_aicc.url,
            app_key=fake_aicc.app_key,
            app_secret="not-the-secret",
            retry=FAST,
            timeout=Timeout(total=0.5, connect=0.2),
        ) as aicc:
            with pytest.raises(AICCAuthError):
                await campaign.run(aicc)
        assert (await campaign.report()).counts == StateCounts(pending=n)
        assert fake_aicc.received(VOICE) == []

        async with client(fake_aicc) as aicc:
            assert await campaign.run(aicc) == StateCounts(done=n)
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))


@pytest.mark.asyncio
async def test_unreachable_aicc_stops_the_run_with_every_row_pending(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    gone = FakeAICC()
    await gone.start()
    url = gone.url
    await gone.close()  # nothing listens on that port any more

    n = 30
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(n))
        async with AICCClient(
            base_url=url,
            app_key="k",
            app_secret="s",
            retry=FAST,
            timeout=Timeout(total=0.5, connect=0.2),
        ) as aicc:
            with pytest.raises(AICCConnectionError):
                await campaign.run(aicc)
        assert (await campaign.report()).counts == StateCounts(pending=n)

        async with client(fake_aicc) as aicc:
            assert await campaign.run(aicc) == StateCounts(done=n)
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))


# A closed client sends nothing: its rows stay pending, never 'unknown'.
@pytest.mark.asyncio
async def test_closed_client_leaves_every_row_pending(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    n = 20
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(n))
        async with client(fake_aicc) as aicc:
            pass
        with contextlib.suppress(Exception):
            await campaign.run(aicc)  # raising is fine; losing the rows is not
        counts = (await campaign.report()).counts
    assert fake_aicc.received(VOICE) == []
    assert counts == StateCounts(pending=n)


# -- stopping, cancelling --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_lets_the_rows_in_flight_finish_and_a_rerun_finishes_the_rest(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    n = 200
    fake_aicc.chaos(seed=3, probability=1.0, faults=[Fault.LATENCY], delay=0.002)
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(n))

        def on_progress(counts: StateCounts) -> None:
            if counts.done >= 50:
                campaign.stop()

        async with client(fake_aicc) as aicc:
            stopped = await campaign.run(aicc, concurrency=10, on_progress=on_progress)
            report = await campaign.report()
            sent = len(fake_aicc.received(VOICE))

            assert stopped == report.counts
            assert stopped.total == n
            assert stopped.sending == 0
            assert stopped.unknown == 0  # the rows in flight finished
            assert 50 <= stopped.done < n
            assert stopped.pending == n - stopped.done
            assert sent == stopped.done  # nothing started after the stop was left unfinished

            campaign.stop()  # no run: no effect on the next one
            assert await campaign.run(aicc, concurrency=10) == StateCounts(done=n)

    assert len(fake_aicc.received(VOICE)) == n
    assert all(fake_aicc.calls_to(number(i)) == 1 for i in range(n))


@pytest.mark.asyncio
async def test_cancelled_run_records_the_rows_in_flight_as_unknown(tmp_path: Path) -> None:
    n = 200
    concurrency = 10
    path = tmp_path / "c.db"
    async with FakeAICC() as fake:
        fake.inject(Fault.HANG, times=3, endpoint=VOICE)  # the first three never answer
        async with Campaign(path, "voice_notification") as campaign:
            await campaign.load(voice_rows(n))
            async with client(fake, timeout=Timeout(total=5, connect=1)) as aicc:
                run = asyncio.create_task(campaign.run(aicc, concurrency=concurrency))
                await wait_until(lambda: fake.in_flight > 0 and len(fake.received(VOICE)) >= 30)
                run.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await run
            report = await campaign.report()
            found = await problems(campaign)
        hung = set(received_numbers(fake, Fault.HANG))
        calls = {number(i): fake.calls_to(number(i)) for i in range(n)}
        received = set(received_numbers(fake))
        port = urllib.parse.urlsplit(fake.url).port  # the journal belongs to this server

    counts = report.counts
    assert counts.total == n
    assert counts.sending == 0
    assert 1 <= counts.unknown <= concurrency
    assert counts.pending > 0
    unknown = {p["fields"]["called"] for p in found if p["state"] == "unknown"}
    assert len(hung) == 3
    assert hung <= unknown  # in flight when cancelled: they may have been processed
    assert {(p["state"], p["code"]) for p in found} == {("unknown", "interrupted")}
    rows = journal_rows(path)
    assert all(calls[called] == 1 for called in by_state(rows, "done"))
    assert all(calls[called] <= 1 for called in unknown)
    assert not by_state(rows, "pending") & received  # pending rows were never sent

    # The next run (the same server, restarted) sends the pending rows, not the unknown ones.
    async with FakeAICC(port=port) as fake, Campaign(path) as campaign:
        async with client(fake) as aicc:
            final = await campaign.run(aicc)
        assert final == StateCounts(done=n - counts.unknown, unknown=counts.unknown)
        assert set(received_numbers(fake)) == by_state(rows, "pending")


# The rows claimed by the commit before a failing on_progress call were never sent:
# they go back to pending, not to 'sending' (which a later open would settle as unknown).
@pytest.mark.asyncio
async def test_a_failing_progress_callback_loses_no_row(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    n = 100
    path = tmp_path / "c.db"
    calls = 0

    def on_progress(counts: StateCounts) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ZeroDivisionError("the progress bar's own bug")

    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(voice_rows(n))
        async with client(fake_aicc) as aicc:
            with pytest.raises(ZeroDivisionError):
                await campaign.run(aicc, concurrency=10, on_progress=on_progress)
        assert (await campaign.report()).counts.sending == 0
    rows = journal_rows(path)
    received = set(received_numbers(fake_aicc))
    never_sent = set(rows) - received
    assert never_sent  # the run stopped early
    assert all(rows[called]["state"] == "pending" for called in never_sent)

    async with Campaign(path) as campaign:  # reopening must not make them "unknown" either
        assert (await campaign.report()).counts.unknown <= len(received)
        async with client(fake_aicc) as aicc:
            await campaign.run(aicc)
    assert all(fake_aicc.calls_to(called) == 1 for called in never_sent)


@pytest.mark.asyncio
async def test_one_run_at_a_time(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    fake_aicc.chaos(seed=1, probability=1.0, faults=[Fault.LATENCY], delay=0.01)
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(40))
        async with client(fake_aicc) as aicc:
            first = asyncio.create_task(campaign.run(aicc, concurrency=5))
            await wait_until(lambda: bool(fake_aicc.received(VOICE)))
            with pytest.raises(CampaignError, match="already running"):
                await campaign.run(aicc)
            assert await first == StateCounts(done=40)
    assert len(fake_aicc.received(VOICE)) == 40


# -- pacing, progress, concurrency ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_spaces_the_row_starts(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(40))
        async with client(fake_aicc) as aicc:
            started = time.monotonic()
            counts = await campaign.run(aicc, rate=200)
            elapsed = time.monotonic() - started
    assert counts == StateCounts(done=40)
    assert elapsed >= 0.15  # 40 starts at 200/s: about 0.2 s
    times = [r.time for r in fake_aicc.received(VOICE)]
    assert max(times) - min(times) >= 0.15


@pytest.mark.asyncio
async def test_concurrency_bounds_the_rows_in_flight(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    fake_aicc.chaos(seed=1, probability=1.0, faults=[Fault.LATENCY], delay=0.005)
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(150))
        async with client(fake_aicc) as aicc:
            assert await campaign.run(aicc, concurrency=6) == StateCounts(done=150)
    assert 2 <= fake_aicc.max_in_flight <= 6


@pytest.mark.asyncio
async def test_on_progress_counts_grow_to_the_total(tmp_path: Path, fake_aicc: FakeAICC) -> None:
    n = 120
    fake_aicc.trial_trustlist = {number(i) for i in range(n) if i % 10}
    seen: list[StateCounts] = []
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(voice_rows(n))
        async with client(fake_aicc) as aicc:
            final = await campaign.run(aicc, concurrency=8, on_progress=seen.append)

    assert final == StateCounts(done=n - 12, failed=12)
    assert len(seen) >= 2
    finished = [c.finished for c in seen]
    assert finished == sorted(finished)
    assert finished[-1] == n
    assert seen[-1] == final
    assert all(c.total == n for c in seen)
    assert all(c.sending <= 8 for c in seen)


# -- write-back campaigns --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_write_back_campaign_retries_ambiguous_failures_to_done(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    n = 200
    fake_aicc.chaos(
        seed=7, probability=0.2, faults=[Fault.RESET_AFTER_PROCESSING], endpoint="midresult"
    )
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01)
    async with Campaign(tmp_path / "w.db", "write_back") as campaign:
        await campaign.load(write_backs(n))
        async with client(fake_aicc, retry=retry) as aicc:
            counts = await campaign.run(aicc)

    assert counts == StateCounts(done=n)
    written = fake_aicc.write_backs
    assert set(written) == {f"uid-{i}" for i in range(n)}
    assert sum(written.values()) > n  # some rows were written again: harmless
    assert len(fake_aicc.received("midresult")) == sum(written.values())


@pytest.mark.asyncio
async def test_write_back_campaign_resends_unknown_rows_on_the_next_run(
    tmp_path: Path, fake_aicc: FakeAICC
) -> None:
    fake_aicc.inject(Fault.RESET_AFTER_PROCESSING, times=FAST.max_attempts, endpoint="midresult")
    async with Campaign(tmp_path / "w.db", "write_back") as campaign:
        await campaign.load(write_backs(5))
        async with client(fake_aicc) as aicc:
            first = await campaign.run(aicc, concurrency=1)
            assert first == StateCounts(done=4, unknown=1)
            assert await campaign.run(aicc) == StateCounts(done=5)  # idempotent: resent
    assert fake_aicc.write_backs["uid-0"] == FAST.max_attempts + 1
