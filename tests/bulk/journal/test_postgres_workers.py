"""Several workers on one PostgreSQL campaign: claims that never overlap, numbers phoned
once across workers, leases (a dead worker's rows in flight become ``unknown``, a live
worker's are never touched), one load joined by the others, read-only sessions, and a
DSN's password never shown. Each worker is a :class:`PostgresJournal` (or a
``Campaign``) of its own, with its own connections, as separate processes would be.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import psycopg
import pytest
from journal_store import Store

from aicc_async import AICCValidationError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignError, CampaignRow, JournalError, StateCounts
from aicc_async.bulk.journal import Claimed, Finished, LoadedRow, RatePoint, mask_dsn
from aicc_async.bulk.journal.postgres import PostgresJournal

VOICE = "voice_notification"


def row(key: str, number: str | None) -> LoadedRow:
    return LoadedRow(key, f"fp-{key}-{number}", "pending", f'{{"called":"{number}"}}', number)


def voice_rows(n: int, content: str = "$Parcel$") -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(called=f"8888{i:05d}", voice_content=content),
        )
        for i in range(n)
    ]


async def worker(store: Store, kind: str | None = VOICE, **options: Any) -> PostgresJournal:
    journal = await store.open(kind, **options)
    assert isinstance(journal, PostgresJournal)
    return journal


async def load_rows(journal: PostgresJournal, rows: list[LoadedRow]) -> None:
    load, _ = await journal.begin_load()
    _, _, known = await journal.load(rows, load)
    await journal.end_load(load, known, None)


async def send_all(journal: PostgresJournal, batch: int) -> list[Claimed]:
    """What a worker's run does with the journal: claim, 'send', commit, until no row is left."""
    claimed: list[Claimed] = []
    finished: list[Finished] = []
    cursor = 0
    while True:
        claim = await journal.commit(finished, batch, cursor, once_per_number=True)
        if not claim.rows and not finished:
            return claimed
        cursor = claim.cursor
        claimed += claim.rows
        finished = [Finished(c.seq, "done", reference=f"serial-{c.key}") for c in claim.rows]
        await asyncio.sleep(0)  # the other worker's turn


def expire(store: Store, journal: PostgresJournal) -> None:
    """What a dead worker leaves: its lease row, expired."""
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        conn.execute(
            "UPDATE aicc_workers SET expires = clock_timestamp() - interval '1 second' "
            "WHERE campaign = %s AND worker = %s",
            (store.campaign, journal.worker),
        )


def leases(store: Store) -> dict[str, float]:
    """worker -> its lease's expiry (epoch seconds)."""
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        found = conn.execute(
            "SELECT worker, extract(epoch FROM expires) FROM aicc_workers WHERE campaign = %s",
            (store.campaign,),
        ).fetchall()
    return {w: float(e) for w, e in found}


# -- claims across workers --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_workers_claiming_at_once_never_claim_the_same_row(pg_store: Store) -> None:
    first, second = await worker(pg_store), await worker(pg_store)
    try:
        await load_rows(first, [row(f"r{i}", f"N{i}") for i in range(300)])
        mine, theirs = await asyncio.gather(send_all(first, 7), send_all(second, 5))
        counts = await first.counts()
    finally:
        await first.close()
        await second.close()
    keys_a, keys_b = {c.key for c in mine}, {c.key for c in theirs}
    assert len(keys_a) == len(mine)
    assert len(keys_b) == len(theirs)
    assert not keys_a & keys_b
    assert keys_a | keys_b == {f"r{i}" for i in range(300)}
    assert mine  # both worked
    assert theirs
    assert counts == StateCounts(done=300)


@pytest.mark.asyncio
async def test_the_number_check_of_a_claim_does_not_read_every_row_sent_so_far(
    pg_store: Store,
) -> None:
    # Planned with statistics from before the campaign was loaded, or from when every
    # row was pending, a number check by the states (or by campaign alone) would read
    # every row sent so far, on every claim: n² row reads for a campaign of n rows.
    journal = await worker(pg_store)
    with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
        conn.execute("ANALYZE aicc_rows")  # statistics of the tables without this campaign
    statements: list[tuple[str, Any]] = []
    execute = journal._db.execute

    def recording(text: str, parameters: Any = (), /) -> Any:
        statements.append((text, parameters))
        return execute(text, parameters)

    try:
        await journal.recover(idempotent=False)
        await load_rows(journal, [row(f"r{i}", f"N{i:05d}") for i in range(3000)])
        await send_all(journal, 500)
        journal._db.execute = recording  # type: ignore[method-assign]
        await load_rows(journal, [row(f"r{i}", f"N{i:05d}") for i in range(3010)])
        await journal.commit([], 10, 0, once_per_number=True)
        checks = [(t, p) for t, p in statements if t.startswith("SELECT number, min(key)")]
        assert checks
        plans = [
            "\n".join(
                str(line[0])
                for line in execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + text, parameters)
            )
            for text, parameters in checks
        ]
    finally:
        await journal.close()
    for plan in plans:
        assert "aicc_rows_by_number" in plan, plan
        assert "aicc_rows_by_state" not in plan, plan


@pytest.mark.asyncio
async def test_two_workers_never_phone_one_number_twice(pg_store: Store) -> None:
    first, second = await worker(pg_store), await worker(pg_store)
    try:
        await load_rows(first, [row(f"r{i}", f"N{i % 40}") for i in range(200)])
        mine, theirs = await asyncio.gather(send_all(first, 6), send_all(second, 9))
        counts = await second.counts()
    finally:
        await first.close()
        await second.close()
    held = pg_store.rows()
    called = [held[c.key][3] for c in mine + theirs]  # the payload names the number
    assert len(called) == len(set(called)) == 40
    assert counts == StateCounts(done=40, duplicate=160)


# -- leases -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "settled"),
    [(VOICE, "unknown"), ("write_back", "pending")],
    ids=["voice", "write_back"],
)
@pytest.mark.asyncio
async def test_a_dead_workers_rows_in_flight_are_settled_and_a_live_workers_untouched(
    pg_store: Store, kind: str, settled: str
) -> None:
    dead, live = await worker(pg_store, kind), await worker(pg_store, kind)
    try:
        assert await live.recover(idempotent=kind != VOICE) == 0  # what a run's start does
        await load_rows(dead, [row(f"r{i}", f"N{i}") for i in range(6)])
        lost = await dead.commit([], 2, 0, once_per_number=True)
        kept = await live.commit([], 2, 0, once_per_number=True)
        assert {c.key for c in lost.rows} == {"r0", "r1"}

        await live.renew()  # a heartbeat while the other worker is alive: nothing moves
        assert await live.counts() == StateCounts(pending=2, sending=4)

        expire(pg_store, dead)  # the process died: its lease ran out
        await live.renew()  # the live worker's next heartbeat settles the dead one's rows
        held = pg_store.rows()
        assert [held[f"r{i}"][0] for i in range(4)] == [settled, settled, "sending", "sending"]
        if settled == "unknown":
            assert held["r0"][1] == "interrupted"
        assert pg_store.campaign is not None
        assert dead.worker not in leases(pg_store)

        # A worker that was only slow, not dead, comes back: it claims nothing more. The
        # outcome it learnt turns an `unknown` it caused into what happened; a row put
        # back `pending` (idempotent) is no longer its own and stays as it is.
        late = "done" if settled == "unknown" else settled
        with pytest.raises(JournalError, match="lease") as caught:
            await dead.commit(
                [Finished(c.seq, "done") for c in lost.rows], 5, lost.cursor, once_per_number=True
            )
        assert "claims no more rows" in str(caught.value)
        with pytest.raises(JournalError, match="lease"):
            await dead.renew()
        assert [pg_store.rows()[f"r{i}"][0] for i in range(6)] == [
            late, late, "sending", "sending", "pending", "pending"
        ]  # fmt: skip

        # The live worker finishes its own rows as usual.
        await live.commit([Finished(c.seq, "done") for c in kept.rows], 0, 0, once_per_number=True)
    finally:
        await dead.close()
        await live.close()
    held = pg_store.rows()
    assert [held[f"r{i}"][0] for i in range(6)] == [
        late,
        late,
        "done",
        "done",
        "pending",
        "pending",
    ]


@pytest.mark.asyncio
async def test_a_worker_never_settles_rows_another_worker_holds(pg_store: Store) -> None:
    # A commit naming rows of another worker (live, or lapsed and settled `unknown`)
    # changes none of them: only the worker that sent a row knows what became of it.
    first, second = await worker(pg_store), await worker(pg_store)
    try:
        await load_rows(first, [row(f"r{i}", f"N{i}") for i in range(4)])
        held = await first.commit([], 2, 0, once_per_number=True)
        mine = await second.commit([], 2, 0, once_per_number=True)
        await second.commit(
            [Finished(c.seq, "done", reference="stolen") for c in held.rows],
            0,
            0,
            once_per_number=True,
        )
        assert [pg_store.rows()[f"r{i}"][0] for i in range(4)] == ["sending"] * 4

        expire(pg_store, first)  # its lease lapsed: its rows become unknown
        assert await second.recover(idempotent=False) == 2
        await second.commit(
            [Finished(c.seq, "failed", "16", "refused") for c in held.rows],
            0,
            0,
            once_per_number=True,
        )
        await second.commit(
            [Finished(c.seq, "done") for c in mine.rows], 0, 0, once_per_number=True
        )
    finally:
        await first.close()
        await second.close()
    rows = pg_store.rows()
    assert [rows[f"r{i}"][:2] for i in range(4)] == [
        ("unknown", "interrupted"),
        ("unknown", "interrupted"),
        ("done", None),
        ("done", None),
    ]
    assert pg_store.query("SELECT count(*) FROM rows WHERE reference = 'stolen'") == [(0,)]


@pytest.mark.asyncio
async def test_the_heartbeat_keeps_a_lease_alive_and_a_stopped_heartbeat_lets_it_lapse(
    pg_store: Store,
) -> None:
    beating = await worker(pg_store, lease=0.6)
    other = await worker(pg_store)
    try:
        await other.recover(idempotent=False)
        await load_rows(beating, [row(f"r{i}", f"N{i}") for i in range(3)])
        await beating.commit([], 2, 0, once_per_number=True)
        first = leases(pg_store)[beating.worker]
        deadline = time.monotonic() + 20
        while leases(pg_store)[beating.worker] < first + 0.3:  # renewed, twice over
            assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
            await asyncio.sleep(0.05)
        assert await other.recover(idempotent=False) == 0  # alive: its rows stay sending

        assert beating._heartbeat is not None
        beating._heartbeat.cancel()  # the process hangs: no more heartbeats
        while not await other.recover(idempotent=False):
            assert time.monotonic() < deadline, "the lapsed lease was never noticed"
            await asyncio.sleep(0.05)
        assert await other.counts() == StateCounts(pending=1, unknown=2)
        with pytest.raises(JournalError, match="lease"):
            await beating.commit([], 1, 0, once_per_number=True)
    finally:
        await beating.close()
        await other.close()


# -- loading: once, joined by the others ------------------------------------------------------


def loads_of(store: Store) -> int:
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        found = conn.execute(
            "SELECT loads FROM aicc_campaigns WHERE name = %s", (store.campaign,)
        ).fetchone()
    assert found is not None
    return int(found[0])


@pytest.mark.asyncio
async def test_a_worker_joins_with_the_same_input_and_is_refused_another(
    pg_store: Store,
) -> None:
    async with pg_store.open_campaign(VOICE) as running:
        first = await running.load(voice_rows(10))
        assert first.added == 10
        async with pg_store.open_campaign(VOICE) as joining:
            joined = await joining.load(voice_rows(10))
        assert (joined.added, joined.replaced, joined.withdrawn, joined.known) == (0, 0, 0, 10)
        assert loads_of(pg_store) == 1  # no new pass

        changed = voice_rows(10)
        changed[4] = CampaignRow(key="k4", request=changed[5].request)
        for other, what in [
            (voice_rows(11), "'k10' is not in the campaign"),
            (voice_rows(9), "leaves out 1 of the campaign's rows"),
            (changed, "'k4' differs"),
        ]:
            async with pg_store.open_campaign(VOICE) as refused:
                with pytest.raises(CampaignError, match=what) as caught:
                    await refused.load(other)
            message = str(caught.value)
            assert repr(pg_store.campaign) in message
            assert "1 other worker(s)" in message
            assert message.count("Nothing was sent") == 1, message
        assert sorted(pg_store.rows()) == sorted(f"k{i}" for i in range(10))
        assert loads_of(pg_store) == 1

    # No worker runs the campaign any more: a new input is a new load pass.
    async with pg_store.open_campaign(VOICE) as alone:
        summary = await alone.load(voice_rows(9))
    assert (summary.added, summary.withdrawn) == (0, 1)
    assert loads_of(pg_store) == 2


@pytest.mark.asyncio
async def test_two_workers_loading_at_once_make_one_load_pass(pg_store: Store) -> None:
    first, second = pg_store.open_campaign(VOICE), pg_store.open_campaign(VOICE)
    await first.open()
    await second.open()
    try:
        summaries = await asyncio.gather(
            first.load(voice_rows(3000)), second.load(voice_rows(3000))
        )
        counts = (await first.report()).counts
    finally:
        await first.close()
        await second.close()
    assert sorted(s.added for s in summaries) == [0, 3000]
    assert loads_of(pg_store) == 1
    assert counts == StateCounts(pending=3000)


@pytest.mark.asyncio
async def test_a_worker_takes_over_the_load_of_one_that_died_loading(pg_store: Store) -> None:
    everything = [row(f"r{i}", f"N{i}") for i in range(50)]
    # The first worker streams a new campaign: it loads 20 rows, sends 5, and dies
    # (SIGKILL): its session and load lock end, its lease stays live until it expires.
    dead = await worker(pg_store)
    load, streams = await dead.begin_load(stream=True)
    assert streams
    await dead.load(everything[:20], load)
    sent = await dead.commit([], 5, 0, once_per_number=True)
    assert dead._heartbeat is not None
    dead._heartbeat.cancel()
    dead._pg.conn.close()
    try:
        # The same input, given to another worker (or the same command run again):
        # it is not refused as "another input", it loads the whole input itself.
        survivor = await worker(pg_store)
        try:
            load, streams = await survivor.begin_load(stream=True)
            assert not streams  # rows were sent: the input is read in full before sending
            _, _, known = await survivor.load(everything, load)
            assert await survivor.end_load(load, known, None) == 0
            assert await survivor.current_load() == load
            claimed = await send_all(survivor, 10)
        finally:
            await survivor.close()
    finally:
        await dead.close()
    # The dead worker's rows in flight wait for its lease; every other row was sent once.
    held = pg_store.rows()
    assert sorted(held) == sorted(r.key for r in everything)
    assert {c.key for c in claimed} == {r.key for r in everything} - {c.key for c in sent.rows}
    assert {k for k, v in held.items() if v[0] == "sending"} == {c.key for c in sent.rows}


# -- read-only sessions -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_reader_session_refuses_every_write(pg_store: Store) -> None:
    async with pg_store.open_campaign(VOICE) as campaign:
        await campaign.load(voice_rows(3))
    reader = await pg_store.open(None, "read")
    try:
        assert isinstance(reader, PostgresJournal)
        with pytest.raises(JournalError, match="read-only transaction") as caught:
            await reader._run(lambda: reader._pg.execute("UPDATE rows SET state = 'done'"))
        assert "aicc:***@" in str(caught.value)
        assert pg_store.location not in str(caught.value)
        assert await reader.counts() == StateCounts(pending=3)
        assert await reader.workers() == []  # a reader holds no lease
    finally:
        await reader.close()
    assert {state for state, *_ in pg_store.rows().values()} == {"pending"}


# -- locations and passwords ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_an_unreachable_server_is_named_without_the_password() -> None:
    port = _free_port()
    campaign = Campaign(f"postgresql://aicc:hunter2@127.0.0.1:{port}/db", VOICE, campaign="c")
    assert "hunter2" not in repr(campaign)
    assert campaign.location == f"postgresql://aicc:***@127.0.0.1:{port}/db (campaign 'c')"
    assert campaign.path is None
    with pytest.raises(JournalError, match=f"127.0.0.1:{port}") as caught:
        await campaign.open()
    assert "hunter2" not in str(caught.value)


@pytest.mark.asyncio
async def test_a_wrong_password_is_refused_without_showing_it(pg_store: Store) -> None:
    dsn = str(pg_store.location).replace(":pg-s3cret-pw@", ":wrong-pw-42@")
    with pytest.raises(JournalError, match="password authentication failed") as caught:
        await Campaign(dsn, VOICE, campaign="c").open()
    assert "wrong-pw-42" not in str(caught.value)


def test_mask_dsn_hides_the_password_wherever_it_is_given() -> None:
    assert mask_dsn("postgresql://u:p%40ss@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_dsn("postgres://u@h/d?password=pw&sslmode=require") == (
        "postgres://u@h/d?password=***&sslmode=require"
    )
    assert mask_dsn("postgresql://h/d") == "postgresql://h/d"


@pytest.mark.asyncio
async def test_a_campaign_on_postgresql_has_no_files(pg_store: Store) -> None:
    async with pg_store.open_campaign(VOICE) as campaign:
        assert campaign.files == ()
        assert campaign.path is None
        assert campaign.campaign == pg_store.campaign
        assert (await campaign.report()).path == campaign.location


@pytest.mark.parametrize(
    "name", ["", "   ", "tab\there", "line\nbreak", "x" * 201, 5, b"c"], ids=repr
)
def test_bad_campaign_names_are_refused(name: Any) -> None:
    with pytest.raises(AICCValidationError) as caught:
        Campaign("postgresql://u:p@127.0.0.1/d", VOICE, campaign=name)
    assert caught.value.field == "campaign"
    assert "p@" not in str(caught.value)


def test_a_dsn_needs_a_campaign_name_and_a_file_takes_none(tmp_path: Any) -> None:
    for dsn in ("postgresql://u:p@127.0.0.1/d", "postgres://u:p@127.0.0.1/d", "POSTGRESQL://h/d"):
        with pytest.raises(AICCValidationError, match="--campaign") as caught:
            Campaign(dsn, VOICE)
        assert caught.value.field == "campaign"
    with pytest.raises(AICCValidationError) as caught:
        Campaign(tmp_path / "c.db", VOICE, campaign="spring")
    assert caught.value.field == "campaign"
    assert Campaign("postgresql://h/d", VOICE, campaign="x" * 200).campaign == "x" * 200


@pytest.mark.parametrize("lease", [0, -1, float("nan"), True, "30"], ids=repr)
def test_bad_leases_are_refused(lease: Any) -> None:
    with pytest.raises(AICCValidationError) as caught:
        Campaign("postgresql://h/d", VOICE, campaign="c", lease=lease)
    assert caught.value.field == "lease"


@pytest.mark.asyncio
async def test_a_dsn_psycopg_cannot_read_is_refused_without_the_password() -> None:
    campaign = Campaign("postgresql://u:sekrit@h:5432/d?nosuch=1", VOICE, campaign="c")
    with pytest.raises(CampaignError, match="not a PostgreSQL DSN") as caught:
        await campaign.open()
    assert "sekrit" not in str(caught.value)
    assert "u:***@h:5432" in str(caught.value)


@pytest.mark.asyncio
async def test_a_campaign_written_in_another_format_is_refused(pg_store: Store) -> None:
    async with pg_store.open_campaign(VOICE) as campaign:
        await campaign.load(voice_rows(2))
    with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
        conn.execute("UPDATE aicc_campaigns SET version = 99 WHERE name = %s", (pg_store.campaign,))
    for mode in ("run", "read", "record"):
        with pytest.raises(CampaignError, match="another version of aicc-async"):
            await pg_store.open(None, mode)  # type: ignore[arg-type]


def test_a_dsn_given_as_bytes_is_refused_without_echoing_it() -> None:
    with pytest.raises(AICCValidationError) as caught:
        Campaign(b"postgresql://u:sekrit@h/d", VOICE, campaign="c")  # type: ignore[arg-type]
    assert caught.value.field == "path"
    assert "sekrit" not in str(caught.value)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://aicc:hunter2-secret@[::1/db",  # psycopg's message quotes the DSN
        "postgresql://aicc:hunter2-secret@127.0.0.1/db?no_such_option=1",
    ],
)
@pytest.mark.asyncio
async def test_a_dsn_psycopg_cannot_read_is_refused_without_its_password(dsn: str) -> None:
    with pytest.raises(CampaignError, match="not a PostgreSQL DSN") as refused:
        await Campaign(dsn, "voice_notification", campaign="c1").open()
    assert "hunter2" not in str(refused.value)


@pytest.mark.asyncio
async def test_tables_of_an_earlier_release_are_read_as_they_are_and_upgraded_to_write(
    pg_database: Store,
) -> None:
    pg_store = pg_database  # the tables it alters are its own, no other test's
    async with pg_store.open_campaign("voice_notification") as campaign:
        await campaign.load(voice_rows(3))
    earlier = (
        "ALTER TABLE aicc_rows DROP COLUMN sent",
        "ALTER TABLE aicc_rows DROP COLUMN callback",
        "ALTER TABLE aicc_early_outcomes DROP COLUMN number",
        "DROP TABLE aicc_refused_events",
        "DROP TABLE aicc_rate_samples",
    )
    with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
        for statement in earlier:
            conn.execute(statement)  # type: ignore[arg-type]
    try:
        async with pg_store.open_campaign(read_only=True) as reader:
            report = await reader.report()
        assert (report.counts.pending, report.outcomes.refused, report.rate) == (3, (), ())
        with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
            assert conn.execute(
                "SELECT to_regclass('aicc_refused_events'), to_regclass('aicc_rate_samples')"
            ).fetchone() == (None, None)  # reading altered nothing
    finally:
        async with pg_store.open_campaign(outcomes_only=True) as listener:  # upgrades
            receiver = listener.callback_receiver("0123456789abcdef")
            assert (await receiver.receive(b"not json")).status == 400
            assert (await listener.outcomes()).refused == (("malformed", 1),)
        with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('aicc_rate_samples')").fetchone() != (None,)


@pytest.mark.asyncio
async def test_each_workers_rate_history_is_kept_apart_and_reported_together(
    pg_store: Store,
) -> None:
    first, second = await worker(pg_store), await worker(pg_store)
    try:
        first.note_rate(RatePoint(3000.1, 40.0, sent=10, throttled=2, requeued=1))
        second.note_rate(RatePoint(3000.6, 45.0, sent=12, throttled=3))
        await first.flush_rate()
        await second.flush_rate()
    finally:
        await first.close()
        await second.close()
    with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
        kept = conn.execute(
            "SELECT worker, count(*) FROM aicc_rate_samples WHERE campaign = %s GROUP BY 1",
            (pg_store.campaign,),
        ).fetchall()
    assert sorted(n for _, n in kept) == [1, 1]  # one point each, under each worker's id
    assert {w for w, _ in kept} == {first.worker, second.worker}
    async with pg_store.open_campaign(read_only=True) as campaign:
        report = await campaign.report()
    # One second, two workers: the highest rate allowed, the counts of both.
    assert [(s.rate, s.sent, s.throttled) for s in report.rate] == [(45.0, 22, 5)]
    assert (report.throttled, report.requeued) == (5, 1)
