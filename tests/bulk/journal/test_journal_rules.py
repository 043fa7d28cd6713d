"""The journal's rules, on SQLite and on PostgreSQL alike (the ``store`` fixture runs
each test once per backend): load passes, withdrawn rows, keys, target binding,
claims and the once-per-number rule, recovery after a crash, read-only opening,
call outcomes, counts and problems.

Rows are read back through the public API (``report()``, ``problem_rows()``) or, where
a test needs every row's state, straight from the store (:class:`journal_store.Store`).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from journal_store import Store
from rows import VOICE, WRITE_BACK, number, voice, voice_rows, write_back

from aicc_async import AICCClient, CreateVoiceNotificationRequest
from aicc_async.bulk import (
    CampaignError,
    CampaignKind,
    CampaignRow,
    LoadSummary,
    Problem,
    StateCounts,
    Target,
)
from aicc_async.bulk.journal.rules import (
    INTERRUPTED_DESCRIPTION,
    Finished,
    Journal,
    LoadedRow,
    Outcome,
    RatePoint,
)
from aicc_async.errors import JournalError
from aicc_async.testing import FakeAICC


async def loaded(store: Store, rows: list[CampaignRow], kind: CampaignKind = VOICE) -> LoadSummary:
    async with store.open_campaign(kind) as campaign:
        return await campaign.load(rows)


async def counts(store: Store) -> StateCounts:
    async with store.open_campaign() as campaign:
        return (await campaign.report()).counts


def row(key: str, number_: str | None = None) -> LoadedRow:
    """A journal row as a campaign loads it (the fingerprint follows the number)."""
    return LoadedRow(key, f"fp-{key}-{number_}", "pending", f'{{"called":"{number_}"}}', number_)


async def load_rows(journal: Journal, rows: list[LoadedRow]) -> int:
    """One complete load pass of ``rows``; returns how many rows it withdrew."""
    load, _ = await journal.begin_load()
    _, _, known = await journal.load(rows, load)
    return await journal.end_load(load, known, None)


# -- loading ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_loading_the_same_rows_twice_adds_nothing(store: Store) -> None:
    async with store.open_campaign(VOICE) as campaign:
        first = await campaign.load(voice_rows(50))
        second = await campaign.load(voice_rows(50))
        report = await campaign.report()

    assert (first.read, first.added, first.replaced, first.unchanged) == (50, 50, 0, 0)
    assert (second.read, second.added, second.replaced, second.unchanged) == (50, 0, 0, 50)
    assert report.counts == StateCounts(pending=50)
    assert report.problems == ()


@pytest.mark.asyncio
async def test_load_accepts_generators_and_async_iterables_and_reports_progress(
    store: Store,
) -> None:
    async def rows() -> AsyncIterator[CampaignRow]:
        for row in voice_rows(4500):
            yield row

    progress: list[int] = []
    async with store.open_campaign(VOICE) as campaign:
        summary = await campaign.load(rows(), on_progress=progress.append)
        more = await campaign.load(  # the same input with three rows added
            itertools.chain(
                voice_rows(4500),
                (CampaignRow(key=f"x{i}", request=voice(9000 + i)) for i in range(3)),
            )
        )
        total = (await campaign.report()).counts.total

    assert summary.added == 4500
    assert progress == sorted(progress)
    assert progress[-1] == 4500
    assert len(progress) >= 2  # reported per batch, not only at the end
    assert more.added == 3
    assert total == 4503


@pytest.mark.asyncio
async def test_load_rows_in_a_later_session_resumes(store: Store) -> None:
    await loaded(store, voice_rows(30))
    summary = await loaded(store, voice_rows(40))
    assert (summary.added, summary.unchanged, summary.replaced) == (10, 30, 0)
    assert await counts(store) == StateCounts(pending=40)


@pytest.mark.parametrize(
    ("state", "code"),
    [("done", None), ("unknown", "no answer"), ("failed", "16"), ("failed", "HTTP 500")],
)
@pytest.mark.asyncio
async def test_changed_row_for_a_key_already_sent_is_refused(
    store: Store, state: str, code: str | None
) -> None:
    await loaded(store, voice_rows(5))
    store.set_state(["k3"], state, code)
    before = store.rows()

    changed = voice_rows(5)
    changed[3] = CampaignRow(key="k3", request=voice(3, "$Another message$"))
    changed[1] = CampaignRow(key="k1", request=voice(1, "$Changed but pending$"))
    changed.append(CampaignRow(key="k-new", request=voice(77)))
    async with store.open_campaign(VOICE) as campaign:
        with pytest.raises(CampaignError, match="'k3'") as caught:
            await campaign.load(changed)
        assert "Nothing was sent" in str(caught.value)

    # Nothing of that batch was written: no new key, the pending row not replaced.
    assert store.rows() == before


@pytest.mark.asyncio
async def test_a_changed_row_already_sent_is_never_told_to_start_a_new_journal(
    store: Store,
) -> None:
    await loaded(store, voice_rows(3))
    store.set_state(["k1"], "done")
    changed = voice_rows(3)
    changed[1] = CampaignRow(key="k1", request=voice(1, "$Another message$"))
    async with store.open_campaign(VOICE) as campaign:
        with pytest.raises(CampaignError) as caught:
            await campaign.load(changed)
    message = str(caught.value)
    assert "already sent (state done)" in message
    assert "restore that row as it was, or give the changed row a new key" in message
    assert "would send every row already sent again" in message
    assert "use a new" not in message.lower()


@pytest.mark.asyncio
async def test_changed_row_still_pending_is_replaced(store: Store) -> None:
    await loaded(store, voice_rows(5))
    changed = voice_rows(5)
    changed[2] = CampaignRow(key="k2", request=voice(2, "$Corrected text$"))
    summary = await loaded(store, changed)

    assert (summary.read, summary.added, summary.replaced, summary.unchanged) == (5, 0, 1, 4)
    state, code, _, payload = store.rows()["k2"]
    assert state == "pending"
    assert code is None
    assert "Corrected text" in payload


@pytest.mark.asyncio
async def test_invalid_row_is_stored_failed_and_can_be_corrected(store: Store) -> None:
    rows = voice_rows(3)
    rows.append(CampaignRow(key="bad", invalid="called: bad", source={"called": "12ab"}))
    async with store.open_campaign(VOICE) as campaign:
        summary = await campaign.load(rows)
        report = await campaign.report()
        problems = [row async for row in campaign.problem_rows()]

    assert summary.added == 4
    assert report.counts == StateCounts(pending=3, failed=1)
    assert report.problems == (Problem("failed", "invalid", 1, "called: bad"),)
    assert report.to_json()["problems"] == [
        {"state": "failed", "code": "invalid", "count": 1, "example": "called: bad"}
    ]
    assert problems == [
        {
            "key": "bad",
            "state": "failed",
            "code": "invalid",
            "description": "called: bad",
            "reference": None,
            "fields": {"called": "12ab"},
        }
    ]

    # The corrected row replaces the invalid one (it was never sent) and becomes pending.
    fixed = [*voice_rows(3), CampaignRow(key="bad", request=voice(99))]
    summary = await loaded(store, fixed)
    assert (summary.added, summary.replaced, summary.unchanged) == (0, 1, 3)
    assert store.rows()["bad"][:3] == ("pending", None, None)
    async with store.open_campaign() as campaign:
        assert (await campaign.report()).problems == ()


@pytest.mark.asyncio
async def test_pending_row_can_become_invalid(store: Store) -> None:
    await loaded(store, voice_rows(2))
    summary = await loaded(
        store, [voice_rows(2)[0], CampaignRow(key="k1", invalid="voice_content: empty")]
    )
    assert summary.replaced == 1
    assert store.rows()["k1"][:3] == ("failed", "invalid", "voice_content: empty")


@pytest.mark.asyncio
async def test_retry_failed_does_not_requeue_invalid_rows(store: Store) -> None:
    rows = [*voice_rows(2), CampaignRow(key="bad", invalid="called: bad")]
    await loaded(store, rows)
    store.set_state(["k0", "k1"], "done")
    async with (
        store.open_campaign(VOICE) as campaign,
        AICCClient(base_url="http://127.0.0.1:9", app_key="k", app_secret="s") as aicc,
    ):
        # Nothing is pending: the invalid row is never sent (port 9 would refuse it).
        result = await campaign.run(aicc, retry_failed=True)
    assert result == StateCounts(done=2, failed=1)


@pytest.mark.asyncio
async def test_journal_of_another_kind_is_refused(store: Store) -> None:
    await loaded(store, voice_rows(2))
    with pytest.raises(CampaignError, match="voice_notification"):
        await store.open_campaign(WRITE_BACK).open()
    # kind=None opens whatever it holds.
    async with store.open_campaign() as campaign:
        assert campaign.kind == VOICE
        assert (await campaign.report()).counts == StateCounts(pending=2)


@pytest.mark.asyncio
async def test_rows_left_sending_by_a_crash_become_unknown_in_a_voice_campaign(
    store: Store, fake_aicc: FakeAICC
) -> None:
    await loaded(store, voice_rows(10))
    store.set_state(["k1", "k4", "k7"], "sending")  # the process died mid-run

    async with store.open_campaign() as campaign:
        report = await campaign.report()
        problems = [row async for row in campaign.problem_rows()]
        assert report.counts == StateCounts(pending=7, unknown=3)
        assert [p["key"] for p in problems] == ["k1", "k4", "k7"]
        assert {(p["state"], p["code"]) for p in problems} == {("unknown", "interrupted")}
        assert all("may have processed" in p["description"] for p in problems)
        assert problems[0]["fields"]["called"] == number(1)

        # The next run phones everyone else, and not them.
        async with fake_aicc.client() as aicc:
            assert await campaign.run(aicc) == StateCounts(done=7, unknown=3)

    for i in range(10):
        assert fake_aicc.calls_to(number(i)) == (0 if i in (1, 4, 7) else 1)


@pytest.mark.asyncio
async def test_rows_left_sending_by_a_crash_are_sent_again_in_a_write_back_campaign(
    store: Store, fake_aicc: FakeAICC
) -> None:
    rows = [CampaignRow(key=f"w{i}", request=write_back(i)) for i in range(10)]
    await loaded(store, rows, WRITE_BACK)
    store.set_state(["w0", "w5"], "sending")

    async with store.open_campaign() as campaign:
        assert campaign.kind == WRITE_BACK
        assert (await campaign.report()).counts == StateCounts(pending=10)
        async with fake_aicc.client() as aicc:
            assert await campaign.run(aicc) == StateCounts(done=10)

    assert fake_aicc.write_backs == {f"uid-{i}": 1 for i in range(10)}
    assert {state for state, *_ in store.rows().values()} == {"done"}


# -- load passes ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rows_left_out_of_the_latest_input_are_withdrawn_never_sent_and_can_come_back(
    store: Store, fake_aicc: FakeAICC
) -> None:
    await loaded(store, voice_rows(5))
    summary = await loaded(store, voice_rows(3))
    assert summary.withdrawn == 2
    held = store.rows()
    assert {key: held[key][:2] for key in ("k3", "k4")} == {
        "k3": ("withdrawn", "withdrawn"),
        "k4": ("withdrawn", "withdrawn"),
    }

    async with store.open_campaign() as campaign, fake_aicc.client() as aicc:
        assert await campaign.run(aicc) == StateCounts(done=3, withdrawn=2)
    assert [fake_aicc.calls_to(number(i)) for i in range(5)] == [1, 1, 1, 0, 0]

    summary = await loaded(store, voice_rows(5))  # back in the input: pending again
    assert (summary.added, summary.withdrawn) == (0, 0)
    assert await counts(store) == StateCounts(pending=2, done=3)


@pytest.mark.asyncio
async def test_an_input_with_no_key_in_common_is_refused_and_its_rows_removed(
    store: Store, fake_aicc: FakeAICC
) -> None:
    await loaded(store, voice_rows(4))
    with pytest.raises(CampaignError, match="no row in common") as caught:
        await loaded(store, voice_rows(3, prefix="other-"))
    assert "Nothing was sent" in str(caught.value)
    assert sorted(store.rows()) == ["k0", "k1", "k2", "k3"]

    # The campaign still sends the input it had, and only that.
    async with store.open_campaign() as campaign, fake_aicc.client() as aicc:
        assert await campaign.run(aicc) == StateCounts(done=4)
    assert [fake_aicc.calls_to(number(i)) for i in range(4)] == [1, 1, 1, 1]


@pytest.mark.asyncio
async def test_a_load_that_stopped_early_sends_nothing(store: Store) -> None:
    await loaded(store, voice_rows(3))
    journal = await store.open()
    try:
        load, streams = await journal.begin_load()
        await journal.load([row("new", number(9))], load)
        assert not streams
    finally:
        await journal.close()  # stopped before end_load

    async with (
        store.open_campaign() as campaign,
        AICCClient(base_url="http://127.0.0.1:9", app_key="k", app_secret="s") as aicc,
    ):
        with pytest.raises(CampaignError, match="no input was loaded in full"):
            await campaign.run(aicc)
        assert (await campaign.report()).counts.sending == 0


# -- target binding ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_journal_belongs_to_the_target_it_sent_to(store: Store) -> None:
    first, second = Target("https://a.example", "app-a"), Target("https://b.example", "app-b")
    async with store.open_campaign(VOICE) as campaign:
        await campaign.load(voice_rows(2))
        await campaign.bind(first)
        await campaign.bind(second)  # nothing sent yet: it may still move
    store.set_state(["k0"], "done")

    async with store.open_campaign() as campaign:
        await campaign.bind(second)  # the same target again
        with pytest.raises(CampaignError, match="belongs to a campaign sent to") as caught:
            await campaign.bind(first)
        assert "https://b.example" in str(caught.value)
        assert "Nothing was sent" in str(caught.value)
        assert (await campaign.report()).target == second


# -- claims ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_claims_mark_rows_sending_and_commits_record_their_outcomes(store: Store) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row(f"r{i}", number(i)) for i in range(5)])
        first = await journal.commit([], 3, 0, once_per_number=True)
        assert [c.key for c in first.rows] == ["r0", "r1", "r2"]
        assert first.cursor == first.rows[-1].seq
        assert await journal.counts() == StateCounts(pending=2, sending=3)

        done, refused, lost = first.rows
        second = await journal.commit(
            [
                Finished(done.seq, "done", reference="serial-0"),
                Finished(refused.seq, "failed", "16", "the number is barred"),
                Finished(lost.seq, "unknown", "no answer", "timed out"),
            ],
            5,
            first.cursor,
            once_per_number=True,
        )
        assert [c.key for c in second.rows] == ["r3", "r4"]
        assert await journal.commit([], 5, second.cursor, once_per_number=True) == (
            await journal.commit([], 5, second.cursor, once_per_number=True)
        )
        assert await journal.counts() == StateCounts(sending=2, done=1, failed=1, unknown=1)
        assert await journal.problems() == [
            Problem("failed", "16", 1, "the number is barred"),
            Problem("unknown", "no answer", 1, "timed out"),
        ]
        problem_keys = [r.key for r in await journal.problem_rows(0, 10)]
        assert problem_keys == ["r1", "r2"]
    finally:
        await journal.close()
    assert store.rows()["r0"][0] == "done"


@pytest.mark.asyncio
async def test_a_number_is_claimed_once_and_later_rows_with_it_are_duplicates(
    store: Store,
) -> None:
    journal = await store.open()
    try:
        await load_rows(
            journal,
            [row("a", "N1"), row("b", "N2"), row("c", "N1"), row("d"), row("e"), row("f", "N2")],
        )
        claim = await journal.commit([], 3, 0, once_per_number=True)
        # c and f repeat a number: skipped, and the claim goes on to fill its 3 rows.
        assert [c.key for c in claim.rows] == ["a", "b", "d"]
        assert claim.duplicates == 1
        rest = await journal.commit([], 10, claim.cursor, once_per_number=True)
        assert [c.key for c in rest.rows] == ["e"]
        assert rest.duplicates == 1
        assert await journal.counts() == StateCounts(sending=4, duplicate=2)
    finally:
        await journal.close()
    held = store.rows()
    assert held["c"][:3] == ("duplicate", "duplicate", "number already used by row 'a'")
    assert held["f"][:3] == ("duplicate", "duplicate", "number already used by row 'b'")


#: One number as people write it: AICC dials both the same.
PLUS, ZEROS = "+8613812345678", "008613812345678"


def called(key: str, number_: str) -> CampaignRow:
    return CampaignRow(
        key=key, request=CreateVoiceNotificationRequest(called=number_, voice_content="$Hi$")
    )


@pytest.mark.asyncio
async def test_a_number_written_with_plus_or_00_is_phoned_once(
    store: Store, fake_aicc: FakeAICC
) -> None:
    await loaded(store, [called("a", PLUS), called("b", ZEROS), called("c", PLUS)])
    async with store.open_campaign() as campaign, fake_aicc.client() as aicc:
        assert await campaign.run(aicc) == StateCounts(done=1, duplicate=2)
    assert fake_aicc.calls_to(PLUS) == 1
    assert fake_aicc.calls_to(ZEROS) == 0
    held = store.rows()
    assert held["b"][:3] == ("duplicate", "duplicate", "number already used by row 'a'")
    assert held["c"][:3] == ("duplicate", "duplicate", "number already used by row 'a'")


@pytest.mark.parametrize("sent", ["a", "b"])
@pytest.mark.asyncio
async def test_a_journal_that_holds_numbers_as_written_phones_no_number_twice(
    store: Store, fake_aicc: FakeAICC, sent: str
) -> None:
    # A journal written before numbers were compared normalised holds them as written:
    # the row already sent with one form blocks the rows with another.
    await loaded(store, [called("a", PLUS), called("b", ZEROS)])
    store.query("UPDATE rows SET number = ? WHERE key = ?", (PLUS, "a"))
    store.set_state([sent], "done")
    async with store.open_campaign() as campaign, fake_aicc.client() as aicc:
        assert await campaign.run(aicc) == StateCounts(done=1, duplicate=1)
    assert fake_aicc.calls_to(PLUS) + fake_aicc.calls_to(ZEROS) == 0
    held = store.rows()
    assert held["b" if sent == "a" else "a"][0] == "duplicate"
    assert {number for (number,) in store.query("SELECT number FROM rows")} == {ZEROS}


@pytest.mark.parametrize(
    ("code", "second"), [("16", "duplicate"), ("invalid", "sending")], ids=["refused", "invalid"]
)
@pytest.mark.asyncio
async def test_a_number_counts_as_used_unless_its_row_was_invalid_input(
    store: Store, code: str, second: str
) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row("a", "N1"), row("b", "N1")])
        first = await journal.commit([], 1, 0, once_per_number=True)
        await journal.commit(
            [Finished(first.rows[0].seq, "failed", code, "refused")], 0, 0, once_per_number=True
        )
        await journal.commit([], 1, first.cursor, once_per_number=True)
    finally:
        await journal.close()
    assert store.rows()["b"][0] == second


@pytest.mark.asyncio
async def test_a_row_whose_call_may_have_gone_out_blocks_its_number(
    store: Store, fake_aicc: FakeAICC
) -> None:
    # `unknown`: AICC may have placed the call. Another row with the number is not sent.
    await loaded(store, [called("a", ZEROS), called("b", ZEROS), called("c", number(3))])
    store.set_state(["a"], "unknown", "interrupted")
    async with store.open_campaign() as campaign, fake_aicc.client() as aicc:
        assert await campaign.run(aicc) == StateCounts(done=1, unknown=1, duplicate=1)
    assert fake_aicc.calls_to(ZEROS) == 0
    assert fake_aicc.calls_to(number(3)) == 1
    assert store.rows()["b"][:3] == ("duplicate", "duplicate", "number already used by row 'a'")


@pytest.mark.asyncio
async def test_a_journal_whose_calls_may_have_gone_out_keeps_its_target(store: Store) -> None:
    first, other = Target("https://a.example", "key-a"), Target("https://b.example", "key-b")
    journal = await store.open()
    try:
        await journal.bind(first)
        await load_rows(journal, [row("a", "N1")])
    finally:
        await journal.close()
    store.set_state(["a"], "unknown", "interrupted")
    journal = await store.open()
    try:
        with pytest.raises(CampaignError, match="belongs to a campaign sent to"):
            await journal.bind(other)
        assert await journal.target() == first
    finally:
        await journal.close()


@pytest.mark.asyncio
async def test_a_duplicate_row_left_out_of_the_input_is_withdrawn(
    store: Store, fake_aicc: FakeAICC
) -> None:
    rows = [called("a", ZEROS), called("b", ZEROS), called("c", number(3))]
    await loaded(store, rows)
    async with store.open_campaign() as campaign, fake_aicc.client() as aicc:
        assert await campaign.run(aicc) == StateCounts(done=2, duplicate=1)

    summary = await loaded(store, [rows[0], rows[2]])  # b taken out of the input
    assert summary.withdrawn == 1
    assert await counts(store) == StateCounts(done=2, withdrawn=1)
    assert store.rows()["b"][:2] == ("withdrawn", "withdrawn")


@pytest.mark.asyncio
async def test_repeated_numbers_are_all_claimed_when_allowed(store: Store) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row("a", "N1"), row("b", "N1"), row("c", "N1")])
        claim = await journal.commit([], 10, 0, once_per_number=False)
    finally:
        await journal.close()
    assert [c.key for c in claim.rows] == ["a", "b", "c"]
    assert claim.duplicates == 0


# -- recovery ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("idempotent", "state"), [(False, "unknown"), (True, "pending")])
@pytest.mark.asyncio
async def test_rows_a_stopped_run_left_sending_are_settled_on_the_next_open(
    store: Store, idempotent: bool, state: str
) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row(f"r{i}", number(i)) for i in range(4)])
        await journal.commit([], 2, 0, once_per_number=True)
    finally:
        await journal.close()  # the run stopped with two rows in flight

    journal = await store.open()
    try:
        assert await journal.recover(idempotent=idempotent) == 2
        assert await journal.recover(idempotent=idempotent) == 0
    finally:
        await journal.close()
    held = store.rows()
    assert [held[f"r{i}"][0] for i in range(4)] == [state, state, "pending", "pending"]
    if not idempotent:
        assert held["r0"][1:3] == ("interrupted", INTERRUPTED_DESCRIPTION)


# -- read-only and outcomes-only ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_reader_never_writes_and_reads_beside_a_running_campaign(store: Store) -> None:
    runner = await store.open()
    try:
        await load_rows(runner, [row(f"r{i}", number(i)) for i in range(3)])
        await runner.commit([], 1, 0, once_per_number=True)
        before = store.rows()
        reader = await store.open(None, "read")
        try:
            assert reader.read_only
            assert await reader.counts() == StateCounts(pending=2, sending=1)
            with pytest.raises(CampaignError, match="read-only"):
                await reader.bind(Target("https://a.example", "app"))
            with pytest.raises(CampaignError, match="read-only"):
                await reader.record_outcome("serial", Outcome(answered=True))
            with pytest.raises(CampaignError, match="read-only"):
                await reader.recover(idempotent=False)
            await runner.commit([], 1, 0, once_per_number=True)
            assert await reader.counts() == StateCounts(pending=1, sending=2)  # sees the run
        finally:
            await reader.close()
        assert {k: v for k, v in store.rows().items() if k != "r1"} == {
            k: v for k, v in before.items() if k != "r1"
        }
    finally:
        await runner.close()


@pytest.mark.asyncio
async def test_a_missing_campaign_is_refused_without_a_kind(store: Store) -> None:
    for mode in ("run", "read", "record"):
        with pytest.raises(CampaignError, match=r"no journal|no campaign"):
            await store.open(None, mode)  # type: ignore[arg-type]
    with pytest.raises(CampaignError, match=r"no journal|no campaign"):
        await store.open_campaign().open()  # still not created


@pytest.mark.asyncio
async def test_outcomes_are_recorded_once_even_when_they_overtake_their_send(
    store: Store,
) -> None:
    runner = await store.open()
    try:
        await load_rows(runner, [row(f"r{i}", number(i)) for i in range(3)])
        claim = await runner.commit([], 3, 0, once_per_number=True)
        listener = await store.open(None, "record")  # aicc listen, beside the run
        try:
            early = Outcome(answered=False, release_reason="4", talk_duration=0)
            assert await listener.record_outcome("serial-0", early) is False  # no row yet
            assert await listener.has_outcome("serial-0")
            assert not await listener.has_outcome("serial-1")
            a, b, c = claim.rows
            await runner.commit(
                [
                    Finished(a.seq, "done", reference="serial-0"),
                    Finished(b.seq, "done", reference="serial-1"),
                    Finished(c.seq, "done", reference="serial-2"),
                ],
                0,
                claim.cursor,
                once_per_number=True,
            )
            answered = Outcome(answered=True, release_reason="0", talk_duration=12)
            assert await listener.record_outcome("serial-1", answered) is True
            assert await listener.record_outcome("serial-1", answered) is True  # again: same
            outcomes = await runner.outcomes()
            unanswered = await runner.unanswered_rows(0, 10)
        finally:
            await listener.close()
    finally:
        await runner.close()
    assert (outcomes.answered, outcomes.not_answered, outcomes.awaiting) == (1, 1, 1)
    assert outcomes.reasons == (("0", 1), ("4", 1))
    assert [key for _, key, _ in unanswered] == ["r0"]


@pytest.mark.asyncio
async def test_a_closed_journal_refuses_calls(store: Store) -> None:
    journal = await store.open()
    await journal.close()
    await journal.close()
    with pytest.raises(CampaignError, match="closed"):
        await journal.counts()
    assert not isinstance(CampaignError("x"), JournalError)


# -- activity (the HTML report's timeline and talk durations) -----------------------------------


@pytest.mark.asyncio
async def test_activity_counts_sends_per_minute_and_talk_durations(store: Store) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row(f"r{i}", number(i)) for i in range(8)])
        claim = await journal.commit([], 7, 0, once_per_number=True)  # r7 stays pending
        finished = [
            Finished(c.seq, "done", reference=f"serial-{i}") for i, c in enumerate(claim.rows[:5])
        ]
        finished += [
            Finished(claim.rows[5].seq, "failed", "16", "barred"),
            Finished(claim.rows[6].seq, "unknown", "no answer", "timed out"),
        ]
        await journal.commit(finished, 0, claim.cursor, once_per_number=True)
        for i, talk in enumerate([3, 9, 10, 45]):
            await journal.record_outcome(f"serial-{i}", Outcome(answered=True, talk_duration=talk))
        await journal.record_outcome("serial-4", Outcome(answered=False, talk_duration=0))
        # Sent rows recorded at minutes 100-101 (r0..r3) and 103-104 (r4..r6); r7 never sent.
        for i in range(8):
            store.query(
                "UPDATE rows SET updated = ? WHERE key = ?",
                (6000 + 30 * i + (60 if i > 3 else 0), f"r{i}"),
            )
        activity = await journal.activity()
    finally:
        await journal.close()
    assert activity.sent_per_minute == ((100, 2), (101, 2), (103, 2), (104, 1))
    assert activity.talk_durations == ((0, 2), (10, 1), (30, 1))


@pytest.mark.asyncio
async def test_refused_release_events_are_kept_by_reason_and_reported(store: Store) -> None:
    runner = await store.open()
    try:
        await load_rows(runner, [row("r0", number(0))])
        listener = await store.open(None, "record")
        try:
            for reason in ("signature", "signature", "stale"):
                await listener.record_refused(reason)
        finally:
            await listener.close()
    finally:
        await runner.close()
    async with store.open_campaign(read_only=True) as campaign:
        report = await campaign.report()
    assert report.outcomes.refused == (("signature", 2), ("stale", 1))
    assert report.to_json()["outcomes"]["refused_events"] == 3
    assert report.to_json()["refused_reasons"] == {"signature": 2, "stale": 1}


@pytest.mark.asyncio
async def test_the_rate_history_is_kept_with_the_commits_and_reported(store: Store) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row(f"r{i}", number(i)) for i in range(3)])
        journal.note_rate(RatePoint(1000.0, 10.0, sent=5))
        first = await journal.commit([], 1, 0, once_per_number=True)
        # Less than a second later: held, and added to the next one written.
        journal.note_rate(RatePoint(1000.4, 20.0, sent=4, throttled=2, requeued=1))
        await journal.commit([], 1, first.cursor, once_per_number=True)
        journal.note_rate(RatePoint(1002.0, 14.0, sent=3, throttled=1, requeued=1))
        await journal.flush_rate()
    finally:
        await journal.close()
    async with store.open_campaign(read_only=True) as campaign:
        report = await campaign.report()
    assert [(s.at, s.rate, s.sent, s.throttled, s.time) for s in report.rate] == [
        (0.0, 10.0, 5, 0, 1000.0),
        (2.0, 14.0, 12, 3, 1002.0),
    ]
    assert (report.throttled, report.requeued) == (3, 2)
    assert report.to_json()["rate"][1]["rate"] == 14.0


@pytest.mark.asyncio
async def test_a_long_rate_history_is_thinned_and_keeps_its_counts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aicc_async.bulk.journal.sql._MAX_RATE_POINTS", 4)
    journal = await store.open()
    try:
        for second in range(10):
            journal.note_rate(RatePoint(2000.0 + 2 * second, 10.0 + second, sent=1, throttled=1))
            await journal.flush_rate()
    finally:
        await journal.close()
    async with store.open_campaign(read_only=True) as campaign:
        report = await campaign.report()
    assert 2 <= len(report.rate) <= 4
    assert report.rate[-1].rate == 19.0
    assert (report.throttled, report.rate[-1].sent) == (10, 10)


# -- unknown rows settled by their release event ---------------------------------------------

NOT_ANSWERED = Outcome(answered=False, release_reason="4", talk_duration=0)


@pytest.mark.asyncio
async def test_an_unknown_row_is_settled_by_the_release_event_of_its_number(store: Store) -> None:
    runner = await store.open()
    try:
        await load_rows(runner, [row(f"r{i}", number(i)) for i in range(3)])
        claim = await runner.commit([], 3, 0, once_per_number=True)
        lost, seen, _ = claim.rows
        await runner.commit(
            [
                Finished(lost.seq, "unknown", "503", "no answer"),
                Finished(seen.seq, "done", reference="serial-1"),
            ],
            0,
            claim.cursor,
            once_per_number=True,
        )
        listener = await store.open(None, "record")
        try:
            assert await listener.record_outcome("serial-0", NOT_ANSWERED, number=number(0))
            assert await listener.has_outcome("serial-0")
        finally:
            await listener.close()
        after = await runner.requeue(unknown=True, failed=False)  # --retry-unknown
        outcomes = await runner.outcomes()
    finally:
        await runner.close()
    assert after == StateCounts(sending=1, done=2)  # r2 is still in flight; r0 is not resent
    assert (outcomes.not_answered, outcomes.awaiting, outcomes.unmatched) == (1, 1, 0)
    assert store.rows()["r0"][0] == "done"


@pytest.mark.asyncio
async def test_an_event_for_a_row_in_flight_settles_it_once_it_turns_unknown(store: Store) -> None:
    journal = await store.open()
    try:
        await load_rows(journal, [row(f"r{i}", number(i)) for i in range(2)])
        claim = await journal.commit([], 2, 0, once_per_number=True)
        assert not await journal.record_outcome("serial-9", NOT_ANSWERED, number=number(1))
        assert (await journal.outcomes()).unmatched == 1
        a, b = claim.rows
        await journal.commit(
            [Finished(a.seq, "unknown", "reset", "x"), Finished(b.seq, "unknown", "reset", "x")],
            0,
            claim.cursor,
            once_per_number=True,
        )
        counts = await journal.counts()
        outcomes = await journal.outcomes()
    finally:
        await journal.close()
    assert counts == StateCounts(done=1, unknown=1)
    assert (outcomes.not_answered, outcomes.unmatched) == (1, 0)
    assert store.rows()["r1"][0] == "done"


@pytest.mark.asyncio
async def test_an_event_matching_two_unknown_rows_or_none_sent_before_it_settles_nothing(
    store: Store,
) -> None:
    journal = await store.open()
    try:
        twice = [row("a", number(0)), row("b", number(0)), row("c", number(1))]
        await load_rows(journal, twice)
        # An event for number(1) that arrived before its row was sent: not its call.
        assert not await journal.record_outcome("serial-old", NOT_ANSWERED, number=number(1))
        claim = await journal.commit([], 3, 0, once_per_number=False)
        await journal.commit(
            [Finished(c.seq, "unknown", "reset", "x") for c in claim.rows],
            0,
            claim.cursor,
            once_per_number=False,
        )
        assert not await journal.record_outcome("serial-0", NOT_ANSWERED, number=number(0))
        counts = await journal.counts()
        outcomes = await journal.outcomes()
    finally:
        await journal.close()
    assert counts == StateCounts(unknown=3)
    assert outcomes.unmatched == 2  # kept, and counted


@pytest.mark.asyncio
async def test_a_listener_may_create_the_journal_before_its_campaign(store: Store) -> None:
    listener = await store.open("voice_notification", "record")
    try:
        assert not await listener.record_outcome("serial-0", NOT_ANSWERED, number=number(0))
        runner = await store.open()
        try:
            await load_rows(runner, [row("r0", number(0))])
            claim = await runner.commit([], 1, 0, once_per_number=True)
            await runner.commit(
                [Finished(claim.rows[0].seq, "done", reference="serial-0")],
                0,
                claim.cursor,
                once_per_number=True,
            )
            outcomes = await runner.outcomes()
        finally:
            await runner.close()
    finally:
        await listener.close()
    assert (outcomes.not_answered, outcomes.awaiting, outcomes.unmatched) == (1, 0, 0)
