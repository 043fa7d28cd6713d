"""Dialer-grade campaigns in Python: calling hours, do-not-call lists, redials of the
unanswered and per-number contact limits, on a SQLite journal and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from aicc_helpers import FAST, VOICE, JumpClock, serving

from aicc_async import AICCValidationError, CampaignError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.bulk.campaign.dialing import Dialer, DialerSettings
from aicc_async.bulk.dialer.history import HistoryEntry, open_history
from aicc_async.bulk.journal import JournalLocation
from aicc_async.bulk.journal.rules import Backlog
from aicc_async.testing import FakeAICC, Fault

KEY = "a-shared-key-of-32-characters-ok"
UTC = datetime.timezone.utc
#: Monday 7 December 2026, 00:00 UTC: 08:00 in Shanghai, midnight in London.
MONDAY = datetime.datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
HOURS = "mon-fri 09:00-20:00"

Where = Callable[[str], JournalLocation]


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """Where a test's campaigns keep their journal: a file, or a PostgreSQL campaign."""
    if request.param == "sqlite":
        return lambda name: JournalLocation(tmp_path / f"{name}.db")
    dsn = request.getfixturevalue("postgresql_dsn")
    base = request.getfixturevalue("campaign_name")
    return lambda name: JournalLocation.parse(dsn, f"{base}-{name}")


def numbers(n: int) -> list[str]:
    """``n`` numbers of this test alone (contact histories are shared by campaigns)."""
    prefix = f"86{secrets.randbelow(10**6):06d}"
    return [f"{prefix}{i:04d}" for i in range(n)]


def rows(called: Sequence[str], zones: Sequence[str | None] = ()) -> list[CampaignRow]:
    zoned = list(zones) + [None] * (len(called) - len(zones))
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(called=n, voice_content="$Hi$"),
            timezone=zone,
        )
        for i, (n, zone) in enumerate(zip(called, zoned, strict=True))
    ]


def called_numbers(fake: FakeAICC) -> list[str]:
    return [str(r.body["called"]) for r in fake.received(VOICE)]


def receiving(campaign: Campaign) -> contextlib.AbstractAsyncContextManager[str]:
    """Release events recorded in ``campaign`` while the block runs; yields the URL."""
    return serving(campaign.callback_receiver(KEY).app())


# -- calling hours ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rows_start_only_inside_the_calling_hours_of_their_own_zone(where: Where) -> None:
    called = numbers(5)
    clock = JumpClock(MONDAY)
    seen: list[tuple[float, int]] = []  # (clock, rows done) after each commit
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(where("hours"), "voice_notification") as campaign,
    ):
        # Three rows in the run's zone (Shanghai: 08:00), two in London (00:00).
        await campaign.load(rows(called, [None, None, None, "Europe/London", "Europe/London"]))
        options = {"calling_hours": HOURS, "timezone": "Asia/Shanghai", "clock": clock}
        early = await campaign.run(aicc, no_wait=True, **options)  # type: ignore[arg-type]
        assert early.pending == 5
        assert called_numbers(fake) == []  # nobody is phoned before their window
        waiting = campaign.waiting
        assert waiting is not None
        assert waiting.rows == 5
        assert waiting.text == (
            "5 rows wait for calling hours; next window opens 09:00 Asia/Shanghai, in 1 h"
        )
        assert waiting.until == (MONDAY + datetime.timedelta(hours=1)).timestamp()

        counts = await campaign.run(
            aicc,
            on_progress=lambda c: seen.append((clock.time(), c.done)),
            **options,  # type: ignore[arg-type]
        )
    assert counts == StateCounts(done=5)
    assert campaign.waiting is None
    assert sorted(called_numbers(fake)) == called
    london_opens = (MONDAY + datetime.timedelta(hours=9)).timestamp()  # 09:00 in London
    assert all(done <= 3 for at, done in seen if at < london_opens), seen
    assert clock.time() >= london_opens


@pytest.mark.asyncio
async def test_a_journal_no_contact_history_can_name_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "spring\x1b[2J"  # a path may hold what a history's name may not
    folder.mkdir()
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(folder / "c.db", "voice_notification") as campaign,
    ):
        await campaign.load(rows(numbers(2)))
        with pytest.raises(AICCValidationError, match="move the journal") as refused:
            await campaign.run(aicc, contact_history=tmp_path / "history.db")
        assert refused.value.field == "contact_history"
        assert (await campaign.report()).counts.pending == 2
    assert called_numbers(fake) == []


@pytest.mark.asyncio
async def test_bad_calling_hours_and_zones_are_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
    ):
        await campaign.load(rows(numbers(2)))
        for options, field, shown in (
            ({"calling_hours": "mon-fri 22:00-02:00"}, "calling_hours", "22:00-02:00"),
            ({"calling_hours": "someday 09:00-10:00"}, "calling_hours", "someday"),
            ({"calling_hours": HOURS, "timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
            ({"attempts": 11}, "attempts", "11"),
            ({"redial_after": "soon"}, "redial_after", "soon"),
            ({"max_calls_per_number": "3/7d"}, "max_calls_per_number", "contact_history"),
            ({"do_not_call": "optouts.txt"}, "do_not_call", "list"),
            ({"do_not_call": [tmp_path / "missing.txt"]}, "do_not_call", "missing.txt"),
            ({"clock": time.time}, "clock", "time"),  # a function, not a clock
        ):
            with pytest.raises(AICCValidationError, match=shown) as raised:
                await campaign.run(aicc, **options)  # type: ignore[arg-type]
            assert raised.value.field == field, options
        assert (await campaign.report()).counts == StateCounts(pending=2)
        assert called_numbers(fake) == []
    with pytest.raises(AICCValidationError, match="Mars/Olympus"):
        rows(["8613800000000"], ["Mars/Olympus"])


# -- do-not-call lists ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_numbers_on_a_do_not_call_list_are_suppressed_never_phoned(
    where: Where, tmp_path: Path
) -> None:
    called = numbers(6)
    plain = tmp_path / "optouts.txt"
    plain.write_text(f"# opted out by phone\n{called[1][:2]}-{called[1][2:]}\n")
    table = tmp_path / "complaints.csv"
    table.write_text(f"name,called\nAda,{called[3][:4]} {called[3][4:]}\n")
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(where("dnc"), "voice_notification") as campaign,
    ):
        await campaign.load(rows(called))
        counts = await campaign.run(aicc, do_not_call=[plain, table])
        report = await campaign.report()
        problems = [row async for row in campaign.problem_rows()]
    assert counts == StateCounts(done=4, suppressed=2)
    assert counts.settled
    assert sorted(called_numbers(fake)) == [called[i] for i in (0, 2, 4, 5)]
    assert report.to_json()["states"]["suppressed"] == 2
    assert [(p["key"], p["state"], p["code"]) for p in problems] == [
        ("k1", "suppressed", "do_not_call"),
        ("k3", "suppressed", "do_not_call"),
    ]


@pytest.mark.asyncio
async def test_a_number_added_to_the_list_mid_run_is_honoured_within_two_seconds(
    tmp_path: Path,
) -> None:
    called = numbers(60)
    listed = tmp_path / "optouts.txt"
    listed.write_text("# none yet\n")
    added_at: list[int] = []

    def progress(counts: StateCounts) -> None:
        if counts.done >= 10 and not added_at:  # rows 0..9 sent: opt the last 25 out
            listed.write_text("".join(f"{n}\n" for n in called[35:]))
            added_at.append(counts.done)

    async with (
        FakeAICC(latency=0.1) as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
    ):
        await campaign.load(rows(called))
        counts = await campaign.run(aicc, concurrency=1, do_not_call=[listed], on_progress=progress)
    assert added_at
    assert counts == StateCounts(done=35, suppressed=25)
    assert called_numbers(fake) == called[:35]


@pytest.mark.asyncio
async def test_a_list_that_turns_unreadable_mid_run_pauses_new_calls_until_fixed(
    tmp_path: Path,
) -> None:
    called = numbers(30)
    listed = tmp_path / "optouts.txt"
    listed.write_text(f"{called[-1]}\n")
    paused: list[tuple[int, str]] = []
    done_at_pause: list[int] = []
    pausing = asyncio.Event()

    async def watch(campaign: Campaign) -> None:
        await pausing.wait()
        assert campaign.waiting is not None
        paused.append((len(fake.received(VOICE)), campaign.waiting.text))
        await asyncio.sleep(1.5)  # nothing starts while the list cannot be read
        done_at_pause.append(len(fake.received(VOICE)))
        listed.write_text(f"{called[-1]}\n")  # fixed

    def progress(counts: StateCounts) -> None:
        if counts.done == 5 and not paused and "oops" not in listed.read_text():
            listed.write_text(f"{called[-1]}\noops, not a number\n")
        if campaign.waiting is not None and campaign.waiting.text.startswith("Paused"):
            pausing.set()  # the run says why it waits

    async with (
        FakeAICC(latency=0.05) as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
    ):
        await campaign.load(rows(called))
        watcher = asyncio.ensure_future(watch(campaign))
        counts = await campaign.run(aicc, concurrency=1, do_not_call=[listed], on_progress=progress)
        await watcher
    assert counts == StateCounts(done=29, suppressed=1)
    ((sent_at_pause, text),) = paused
    assert f"do-not-call list {str(listed)!r} line 2 'oops, not a number'" in text, text
    assert "no new calls start until it is fixed" in text
    assert done_at_pause == [sent_at_pause]
    assert called[-1] not in called_numbers(fake)


# -- redials --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unanswered_rows_are_redialed_until_answered_or_out_of_attempts(
    where: Where,
) -> None:
    called = numbers(4)
    answers = {
        called[0]: ["no_answer", "answered"],
        called[1]: "never",
        called[2]: "answered",
        called[3]: "busy",
    }
    clock = JumpClock(MONDAY)
    async with (
        FakeAICC(callback_key=KEY, release_delay=0.01, answers=answers) as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(where("redial"), "voice_notification") as campaign,
        receiving(campaign) as url,
    ):
        await campaign.load(rows(called))
        counts = await campaign.run(
            aicc,
            callback_url=url,
            attempts=3,
            redial_after="90s",
            wait_outcomes=600,
            clock=clock,  # type: ignore[arg-type]
        )
        await fake.wait_release_events()  # of the last calls: the run did not wait for them
        report = await campaign.report()
        first = await campaign.call_attempts("k0")
        unanswered = [row["key"] async for row in campaign.unanswered_rows()]
    assert unanswered == ["k1", "k3"]  # not answered after their last attempt
    assert counts == StateCounts(done=4)
    calls = {n: fake.calls_to(n) for n in called}
    assert calls == {called[0]: 2, called[1]: 3, called[2]: 1, called[3]: 3}
    assert dict(report.attempts) == {1: 1, 2: 1, 3: 2}
    assert report.to_json()["attempts"] == {"1": 1, "2": 1, "3": 2}
    assert (report.outcomes.answered, report.outcomes.not_answered) == (2, 2)  # rows
    reasons = dict(report.outcomes.reasons)  # calls: the first calls of redials too
    assert (reasons["4"], reasons["6"], sum(reasons.values())) == (4, 3, 9)
    assert [(a["attempt"], a["outcome"]) for a in first] == [
        (1, "not_answered"),
        (2, "answered"),
    ]
    assert first[0]["reference"] != first[1]["reference"]
    assert first[1]["sent"] - first[0]["heard"] >= 0  # the machine's stamps, in order
    assert clock.slept >= 2 * 90  # two redial waits on the run's clock, none on the wall's


@pytest.mark.asyncio
async def test_a_row_whose_outcome_never_came_is_never_redialed(tmp_path: Path) -> None:
    called = numbers(2)
    clock = JumpClock(MONDAY)
    async with (
        FakeAICC(
            callback_key=KEY, release_delay=0.01, answers={n: "never" for n in called}
        ) as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
    ):
        await campaign.load(rows(called))
        # Events go to a receiver that is not there: no outcome is ever known.
        counts = await campaign.run(
            aicc,
            callback_url="http://127.0.0.1:9/aicc/release",
            attempts=3,
            wait_outcomes=30,
            clock=clock,  # type: ignore[arg-type]
        )
        report = await campaign.report()
    assert counts == StateCounts(done=2)
    assert {n: fake.calls_to(n) for n in called} == {called[0]: 1, called[1]: 1}
    assert report.outcomes.awaiting == 2
    assert dict(report.attempts) == {1: 2}


@pytest.mark.asyncio
async def test_redials_wait_for_calling_hours_and_no_wait_says_until_when(tmp_path: Path) -> None:
    called = numbers(1)
    # 19:59 in Shanghai: the first call goes out, its redial falls after 20:00.
    clock = JumpClock(MONDAY + datetime.timedelta(hours=11, minutes=59))
    async with (
        FakeAICC(callback_key=KEY, release_delay=0.01, answers={called[0]: "never"}) as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
        receiving(campaign) as url,
    ):
        await campaign.load(rows(called))
        options = {
            "callback_url": url,
            "attempts": 2,
            "redial_after": "30m",
            "calling_hours": HOURS,
            "timezone": "Asia/Shanghai",
            "clock": clock,
            "no_wait": True,
        }
        await campaign.run(aicc, **options)  # type: ignore[arg-type]
        while campaign.waiting is not None and "release event" in campaign.waiting.text:
            await asyncio.sleep(0.02)  # its event is on its way: a later run sees it
            await campaign.run(aicc, **options)  # type: ignore[arg-type]
        waiting = campaign.waiting
        assert waiting is not None
        assert waiting.text == (
            "1 row waits for a redial, then for calling hours (the next at 2026-12-08 09:00 "
            "Asia/Shanghai)"
        )
        assert waiting.until == (MONDAY + datetime.timedelta(days=1, hours=1)).timestamp()
        assert fake.calls_to(called[0]) == 1
        clock.offset += waiting.until - clock.time()  # Tuesday 09:00: a later (cron) run
        counts = await campaign.run(aicc, **options)  # type: ignore[arg-type]
    assert counts == StateCounts(done=1)
    assert fake.calls_to(called[0]) == 2


# -- contact history ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_history_that_refuses_mid_run_stops_it_after_the_calls_in_flight(
    tmp_path: Path,
) -> None:
    # The history holds row k12's first call with another number (its row key was
    # reused for another row): its batch is never sent, the run says why, and the
    # calls already on their way finish and are recorded, not left unknown.
    called = numbers(40)
    journal = tmp_path / "c.db"
    async with await open_history(tmp_path / "history.db") as history:
        await history.record([HistoryEntry("8613900000000", 1.0, str(journal), "k12", 1)])
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(journal, "voice_notification") as campaign,
    ):
        await campaign.load(rows(called))
        fake.inject(Fault.LATENCY, delay=1.0)  # the first call is on its way meanwhile
        with pytest.raises(CampaignError, match=r"'k12'.* with another number"):
            await campaign.run(
                aicc,
                concurrency=10,
                contact_history=tmp_path / "history.db",
                max_calls_per_number="3/1d",
            )
        counts = (await campaign.report()).counts
    sent = called_numbers(fake)
    assert called[0] in sent
    assert called[12] not in sent
    assert counts.unknown == 0
    assert counts.done == len(sent) > 0
    assert counts.pending == len(called) - len(sent)


@pytest.mark.asyncio
async def test_a_number_called_by_another_campaign_is_limited_then_rechecked_later(
    where: Where, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    history: str | Path = tmp_path / "history.db"
    if "postgresql" in request.node.name:
        history = request.getfixturevalue("postgresql_dsn")
    called = numbers(4)
    clock = JumpClock(MONDAY)
    options = {"contact_history": history, "max_calls_per_number": "1/1d", "clock": clock}
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(where("first"), "voice_notification") as first,
    ):
        await first.load(rows(called[:3]))
        assert await first.run(aicc, **options) == StateCounts(done=3)  # type: ignore[arg-type]
        async with Campaign(where("second"), "voice_notification") as second:
            await second.load(rows([called[0], called[1], called[3]]))
            counts = await second.run(aicc, **options)  # type: ignore[arg-type]
            assert counts == StateCounts(done=1, limited=2)
            assert not counts.settled
            report = await second.report()
            assert report.to_json()["states"]["limited"] == 2
            assert {n: fake.calls_to(n) for n in called} == dict.fromkeys(called, 1)

            clock.offset += 86400  # a day later, the next run checks them again
            assert await second.run(aicc, **options) == StateCounts(done=3)  # type: ignore[arg-type]
    assert {n: fake.calls_to(n) for n in called} == {
        called[0]: 2,
        called[1]: 2,
        called[2]: 1,
        called[3]: 1,
    }


@pytest.mark.asyncio
async def test_journals_of_one_name_in_two_folders_are_two_campaigns_in_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "history.db"
    called = numbers(4)
    async with FakeAICC() as fake, fake.client(retry=FAST) as aicc:
        for folder, share in (("spring", called[:2]), ("autumn", called[2:])):
            (tmp_path / folder).mkdir()
            monkeypatch.chdir(tmp_path / folder)  # the same relative --journal, k0 and k1
            async with Campaign("campaign.db", "voice_notification") as campaign:
                await campaign.load(rows(share))
                counts = await campaign.run(
                    aicc, contact_history=history, max_calls_per_number="1/1d"
                )
            assert counts == StateCounts(done=2)
    assert sorted(called_numbers(fake)) == called


@pytest.mark.asyncio
async def test_a_worker_without_the_list_honours_the_list_another_worker_shared(
    postgresql_dsn: str, campaign_name: str, tmp_path: Path
) -> None:
    called = numbers(8)
    optouts = tmp_path / "optouts.txt"
    optouts.write_text(f"{called[6]}\n")
    at = JournalLocation.parse(postgresql_dsn, campaign_name)

    def stop_early(campaign: Campaign) -> Callable[[StateCounts], None]:
        return lambda counts: campaign.stop() if counts.done >= 2 else None

    async with FakeAICC() as fake, fake.client(retry=FAST) as aicc:
        async with Campaign(at, "voice_notification") as first:  # it has the list
            await first.load(rows(called))
            await first.run(
                aicc, concurrency=1, do_not_call=[optouts], on_progress=stop_early(first)
            )
        optouts.write_text(f"{called[6]}\n{called[7]}\n")  # the second has no list at all
        async with Campaign(at, "voice_notification") as second:
            counts = await second.run(aicc)
    assert counts == StateCounts(done=7, suppressed=1)
    assert called[6] not in called_numbers(fake)
    assert called[7] in called_numbers(fake)  # the file changed after the first stopped


@pytest.mark.asyncio
async def test_rows_inside_their_window_go_in_input_order_whatever_their_zone(
    tmp_path: Path,
) -> None:
    called = numbers(4)
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        Campaign(tmp_path / "c.db", "voice_notification") as campaign,
    ):
        await campaign.load(rows(called, ["Europe/London", "Asia/Tokyo"]))
        counts = await campaign.run(
            aicc,
            concurrency=1,
            calling_hours="mon-sun 00:00-24:00",
            timezone="UTC",
            clock=JumpClock(MONDAY),  # type: ignore[arg-type]
        )
    assert counts == StateCounts(done=4)
    assert called_numbers(fake) == called


class StoppedClock:
    """A wall clock standing at ``at``."""

    def __init__(self, at: float) -> None:
        self.at = at

    def time(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += seconds


def test_a_redial_inside_open_calling_hours_waits_only_for_its_time() -> None:
    """Open hours never add "then for calling hours" to a redial's wait, whatever the
    fraction of a second its time falls on (microsecond rounding included)."""
    now = (MONDAY + datetime.timedelta(hours=12)).timestamp()
    settings = DialerSettings.check(
        calling_hours="00:00-24:00",
        timezone="UTC",
        no_wait=False,
        do_not_call=(),
        attempts=2,
        redial_after="10s",
        contact_history=None,
        max_calls_per_number=None,
        wait_outcomes=120.0,
        clock=StoppedClock(now),
        callbacks=True,
    )
    dialer = Dialer(settings, "demo")
    for tenth_of_a_microsecond in range(20):
        due = now + 10.123456 + tenth_of_a_microsecond * 1e-7
        waiting = dialer.waiting(Backlog(redials=3, next_redial=due))
        assert waiting is not None
        assert waiting.text == "3 rows wait for a redial (the next at 2026-12-07 12:00 UTC)", due
        assert waiting.until == due


@pytest.mark.asyncio
async def test_calls_the_history_lost_are_recorded_again_before_the_next_call(
    where: Where, tmp_path: Path
) -> None:
    history = tmp_path / "history.db"
    called = numbers(5)
    options = {"contact_history": history, "max_calls_per_number": "1/1d"}
    async with FakeAICC() as fake, fake.client(retry=FAST) as aicc:
        async with Campaign(where("first"), "voice_notification") as first:
            await first.load(rows(called[:3]))
            assert await first.run(aicc, **options) == StateCounts(done=3)  # type: ignore[arg-type]
        with contextlib.closing(sqlite3.connect(history)) as db, db:
            db.execute("DELETE FROM contacts")  # a power cut took them (or an old copy)
        async with Campaign(where("first"), "voice_notification") as first:  # runs again
            assert await first.run(aicc, **options) == StateCounts(done=3)  # type: ignore[arg-type]
        async with Campaign(where("second"), "voice_notification") as second:
            await second.load(rows(called))
            counts = await second.run(aicc, **options)  # type: ignore[arg-type]
    assert counts == StateCounts(done=2, limited=3)
    assert {n: fake.calls_to(n) for n in called} == dict.fromkeys(called, 1)
