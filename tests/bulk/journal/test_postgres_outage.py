"""A PostgreSQL journal across a lost connection: a worker connects again and carries
on while its lease holds; a commit whose answer was lost is resolved before anything
is sent (its rows are sent only if their ``sending`` mark is known to have landed);
an outage longer than the lease stops the worker with a clear message.

The lost ``COMMIT`` answer is made deterministic: the journal's connection runs (or
drops) the ``COMMIT``, then is closed under it and raises what psycopg raises for a
connection the server closed. The other tests stop a PostgreSQL of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from journal_store import Store

from aicc_async.bulk import JournalError, StateCounts
from aicc_async.bulk.journal import Finished, LoadedRow
from aicc_async.bulk.journal.postgres import PostgresJournal

VOICE = "voice_notification"


def rows(n: int) -> list[LoadedRow]:
    return [
        LoadedRow(f"r{i}", f"fp-{i}", "pending", f'{{"called":"8888{i:05d}"}}', f"8888{i:05d}")
        for i in range(n)
    ]


async def worker(store: Store, **options: Any) -> PostgresJournal:
    journal = await store.open(VOICE, **options)
    assert isinstance(journal, PostgresJournal)
    await journal.recover(idempotent=False)  # what a run's start does
    load, _ = await journal.begin_load()
    _, _, known = await journal.load(rows(10), load)
    await journal.end_load(load, known, None)
    return journal


def lose_commit_answer(
    journal: PostgresJournal, *, landed: bool, meanwhile: Callable[[], None] = lambda: None
) -> None:
    """The next ``COMMIT`` of ``journal`` lands (or not), ``meanwhile()`` happens, and
    the answer is lost with the connection."""
    db = journal._pg
    real = db.execute

    def execute(text: str, parameters: Any = (), /) -> Any:
        if text != "COMMIT":
            return real(text, parameters)
        del db.execute  # once
        if landed:
            real(text, parameters)
        meanwhile()
        db.conn.close()  # not landed: the server rolls the open transaction back
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    db.execute = execute  # type: ignore[method-assign]


def tally(store: Store, columns: str) -> list[tuple[Any, ...]]:
    """(``columns``..., count) over the campaign's rows, grouped and ordered by them."""
    groups = ", ".join(str(n + 1) for n in range(columns.count(",") + 1))
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        return conn.execute(
            f"SELECT {columns}, count(*) FROM aicc_rows WHERE campaign = %s "  # noqa: S608 - the test's own
            f"GROUP BY {groups} ORDER BY {groups}",
            (store.campaign,),
        ).fetchall()


def sending(store: Store, journal: PostgresJournal) -> dict[str, int]:
    """key -> sends of the rows ``journal``'s worker holds ``sending``."""
    return {
        key: sends
        for key, sends in store.query(
            "SELECT key, sends FROM rows WHERE state = 'sending' AND worker = ?",
            (journal.worker,),
        )
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("landed", [True, False])
async def test_a_claim_whose_commit_answer_was_lost_is_sent_only_as_committed(
    pg_store: Store, landed: bool
) -> None:
    journal = await worker(pg_store)
    try:
        first = await journal.commit([], 3, 0, once_per_number=True)
        finished = [Finished(c.seq, "done", reference=f"serial-{c.key}") for c in first.rows]

        lose_commit_answer(journal, landed=landed)
        claim = await journal.commit(finished, 4, first.cursor, once_per_number=True)

        # The rows handed out to send are exactly those marked `sending` for this
        # worker, each marked once: whether the lost commit landed or was run again.
        held = sending(pg_store, journal)
        assert sorted(c.key for c in claim.rows) == sorted(held) == ["r3", "r4", "r5", "r6"]
        assert set(held.values()) == {1}
        # The outcomes it carried are recorded once, either way.
        assert await journal.counts() == StateCounts(done=3, sending=4, pending=3)
        # The worker carries on on its new connection.
        await journal.commit(
            [Finished(c.seq, "done") for c in claim.rows], 0, claim.cursor, once_per_number=True
        )
    finally:
        await journal.close()
    assert tally(pg_store, "state, sends") == [
        ("done", 1, 7),
        ("pending", 0, 3),
    ]


@pytest.mark.asyncio
async def test_a_lost_commit_is_not_sent_once_the_lease_lapsed_meanwhile(pg_store: Store) -> None:
    journal = await worker(pg_store)
    try:

        def lapse() -> None:  # the lease lapses before the worker is back...
            with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
                conn.execute(
                    "UPDATE aicc_workers SET expires = clock_timestamp() - interval '1 second' "
                    "WHERE worker = %s",
                    (journal.worker,),
                )
                conn.execute(  # ...and another worker settles two of its rows `unknown`
                    "UPDATE aicc_rows SET state = 'unknown', code = 'interrupted' "
                    "WHERE worker = %s AND key IN ('r0', 'r1')",
                    (journal.worker,),
                )

        lose_commit_answer(journal, landed=True, meanwhile=lapse)
        with pytest.raises(JournalError, match="lease") as caught:
            await journal.commit([], 4, 0, once_per_number=True)
        assert "claims no more rows" in str(caught.value)
    finally:
        await journal.close()
    # Never sent: back to pending for the other workers, not `unknown`.
    assert tally(pg_store, "state, sends, code") == [("pending", 0, None, 10)]


@pytest.fixture
def outage_store(own_postgresql: Any, campaign_name: str) -> Store:
    return Store("postgresql", own_postgresql.dsn, campaign_name)


@pytest.mark.asyncio
async def test_a_restart_costs_a_worker_nothing(outage_store: Store, own_postgresql: Any) -> None:
    journal = await worker(outage_store, lease=30.0)
    try:
        claim = await journal.commit([], 4, 0, once_per_number=True)
        own_postgresql.restart()  # every connection closed, open transactions rolled back
        finished = [Finished(c.seq, "done") for c in claim.rows]
        after = await journal.commit(finished, 4, claim.cursor, once_per_number=True)
        assert await journal.counts() == StateCounts(done=4, sending=4, pending=2)
        await journal.renew()  # the heartbeat's connection comes back too
        await journal.commit(
            [Finished(c.seq, "done") for c in after.rows], 0, 0, once_per_number=True
        )
    finally:
        await journal.close()
    assert tally(outage_store, "state, sends") == [
        ("done", 1, 8),
        ("pending", 0, 2),
    ]


@pytest.mark.asyncio
async def test_an_outage_longer_than_the_lease_stops_the_worker_clearly(
    outage_store: Store, own_postgresql: Any
) -> None:
    lease = 1.0
    journal = await worker(outage_store, lease=lease)
    try:
        claim = await journal.commit([], 4, 0, once_per_number=True)
        own_postgresql.stop()
        finished = [Finished(c.seq, "done") for c in claim.rows]
        outage = asyncio.ensure_future(
            journal.commit(finished, 4, claim.cursor, once_per_number=True)
        )
        with pytest.raises(JournalError) as caught:
            await asyncio.wait_for(outage, 10 * lease)
        own_postgresql.start()
    finally:
        await journal.close()
    message = str(caught.value)
    assert "was out of reach for longer than this worker's lease (1 s" in message
    assert "Run it again to rejoin" in message
    assert "pg-s3cret-pw" not in message
    # It settled nothing and claimed nothing more: its rows wait for the others.
    assert tally(outage_store, "state") == [
        ("pending", 6),
        ("sending", 4),
    ]


def loads_of(store: Store) -> int:
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        found = conn.execute("SELECT loads FROM aicc_campaigns WHERE name = %s", (store.campaign,))
        return int(found.fetchone()[0])  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_load_goes_on_after_a_restart(outage_store: Store, own_postgresql: Any) -> None:
    loader = await outage_store.open(VOICE)
    try:
        load, streams = await loader.begin_load(stream=True)
        assert streams
        added, _, _ = await loader.load(rows(20)[:10], load)
        own_postgresql.restart()  # the load lock ends with the session
        more, _, _ = await loader.load(rows(20)[10:], load)
        assert await loader.end_load(load, 0, None) == 0
    finally:
        await loader.close()
    assert len(added) + len(more) == 20
    assert loads_of(outage_store) == 1  # the same pass, taken up again
    assert tally(outage_store, "state, loaded") == [("pending", 1, 20)]


@pytest.mark.asyncio
async def test_a_load_taken_over_during_an_outage_fails_clearly(
    outage_store: Store, own_postgresql: Any
) -> None:
    loader = await outage_store.open(VOICE)
    other = None
    try:
        load, _ = await loader.begin_load(stream=True)
        await loader.load(rows(20)[:10], load)
        own_postgresql.restart()
        other = await outage_store.open(VOICE)  # got the lock first: it takes the load over
        taken, streams = await other.begin_load(stream=True)
        assert (taken, streams) == (load + 1, True)  # nothing was sent: it streams too
        with pytest.raises(JournalError, match="could not go on") as caught:
            await loader.load(rows(20)[10:], load)
        assert "run the same command again" in str(caught.value)
        _, _, known = await other.load(rows(20), taken)
        assert await other.end_load(taken, known, None) == 0
    finally:
        await loader.close()
        if other is not None:
            await other.close()
    assert tally(outage_store, "state, loaded") == [("pending", load + 1, 20)]
