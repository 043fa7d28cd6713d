"""The journal's dialer records: redials kept as attempts (once, whoever schedules them),
and journals of the release before the dialer read as they are and upgraded to write."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import psycopg
import pytest
from aicc_helpers import FAST
from journal_store import Store
from rows import number, voice_rows

from aicc_async.bulk import StateCounts
from aicc_async.bulk.journal import Finished, Outcome
from aicc_async.bulk.journal.rules import STATES
from aicc_async.testing import FakeAICC

NOT_ANSWERED = Outcome(answered=False, release_reason="4", talk_duration=0)


@pytest.mark.asyncio
async def test_two_workers_scheduling_the_same_redials_keep_each_call_once(
    pg_store: Store,
) -> None:
    n = 200
    async with pg_store.open_campaign("voice_notification") as campaign:
        await campaign.load(voice_rows(n))
    first, second = await pg_store.open(), await pg_store.open()
    try:
        claim = await first.commit([], n, 0, once_per_number=True)
        assert len(claim.rows) == n
        await first.commit(
            [Finished(c.seq, "done", reference=f"call-{c.seq}") for c in claim.rows],
            0,
            claim.cursor,
            once_per_number=True,
        )
        for c in claim.rows:
            assert await first.record_outcome(f"call-{c.seq}", NOT_ANSWERED)
        scheduled = await asyncio.gather(
            first.redial(2, 60, 600), second.redial(2, 60, 600), first.redial(2, 60, 600)
        )
        assert sum(scheduled) == n
        assert (await first.counts()) == StateCounts(pending=n)
    finally:
        await first.close()
        await second.close()
    with psycopg.connect(str(pg_store.location), autocommit=True) as conn:
        kept = conn.execute(
            "SELECT count(*), count(DISTINCT seq) FROM aicc_attempts WHERE campaign = %s",
            (pg_store.campaign,),
        ).fetchone()
    assert kept == (n, n)


async def run_opting_out(store: Store, folder: Path, called: str) -> StateCounts:
    """Run the campaign of ``store`` with a do-not-call list of ``called`` (in ``folder``)."""
    optouts = folder / "optouts.txt"
    optouts.write_text(f"{called}\n")
    async with (
        FakeAICC() as fake,
        fake.client(retry=FAST) as aicc,
        store.open_campaign("voice_notification") as campaign,
    ):
        return await campaign.run(aicc, do_not_call=[optouts])


_OLD_STATES = "('pending', 'sending', 'done', 'failed', 'unknown', 'withdrawn', 'duplicate')"


def _as_the_release_before(path: Path) -> None:
    """Make the SQLite journal at ``path`` what the release before the dialer wrote."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        columns = [
            row[1]
            for row in db.execute("PRAGMA table_info(rows)")
            if row[1] not in ("zone", "attempt", "due", "heard")
        ]
        (table,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'rows'").fetchone()
        old = table.replace("CREATE TABLE rows", "CREATE TABLE old_rows")
        old = (
            old[: old.index("state IN (")] + f"state IN {_OLD_STATES}" + old[old.index(")),") + 1 :]
        )
        for column in ("zone TEXT", "attempt INTEGER NOT NULL DEFAULT 0", "due REAL", "heard REAL"):
            old = old.replace(f",\n    {column}", "")
        db.execute(old)
        names = ", ".join(columns)
        db.execute(f"INSERT INTO old_rows ({names}) SELECT {names} FROM rows")  # noqa: S608 - its own columns
        db.execute("DROP TABLE rows")
        db.execute("ALTER TABLE old_rows RENAME TO rows")
        db.execute("DROP TABLE attempts")
        db.execute("UPDATE campaign SET version = 2")


def _version_and_check(path: Path) -> tuple[int, str]:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        version = db.execute("SELECT version FROM campaign").fetchone()[0]
        table = db.execute("SELECT sql FROM sqlite_master WHERE name = 'rows'").fetchone()[0]
    return int(version), str(table)


@pytest.mark.asyncio
async def test_a_sqlite_journal_of_the_release_before_is_read_as_it_is_and_upgraded_to_write(
    tmp_path: Path,
) -> None:
    store = Store("sqlite", tmp_path / "c.db")
    async with store.open_campaign("voice_notification") as campaign:
        await campaign.load(voice_rows(3))
    _as_the_release_before(tmp_path / "c.db")
    version, table = _version_and_check(tmp_path / "c.db")
    assert version == 2
    assert "'limited'" not in table

    async with store.open_campaign(read_only=True) as reader:
        report = await reader.report()
    assert (report.counts, report.attempts) == (StateCounts(pending=3), ())
    assert _version_and_check(tmp_path / "c.db") == (version, table)  # nothing written

    assert await run_opting_out(store, tmp_path, number(1)) == StateCounts(done=2, suppressed=1)
    version, table = _version_and_check(tmp_path / "c.db")
    assert version == 3
    assert all(f"'{state}'" in table for state in STATES)
    assert [key for key, *_ in store.query("SELECT key FROM rows ORDER BY seq")] == [
        "k0",
        "k1",
        "k2",
    ]


@pytest.mark.asyncio
async def test_postgresql_tables_of_the_release_before_are_upgraded_to_write(
    pg_database: Store, tmp_path: Path
) -> None:
    store = pg_database  # the tables it alters are its own, no other test's
    async with store.open_campaign("voice_notification") as campaign:
        await campaign.load(voice_rows(3))
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        for column in ("zone", "attempt", "due", "heard"):
            conn.execute(f"ALTER TABLE aicc_rows DROP COLUMN {column}")  # type: ignore[arg-type]
        conn.execute("DROP TABLE aicc_attempts")
        conn.execute("DROP TABLE aicc_do_not_call")
        (check,) = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'aicc_rows'::regclass "
            "AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%state%'"
        ).fetchone()
        conn.execute(
            f"ALTER TABLE aicc_rows DROP CONSTRAINT {check}, "  # type: ignore[arg-type]
            f"ADD CONSTRAINT {check} CHECK (state IN {_OLD_STATES})"
        )
        conn.execute("UPDATE aicc_campaigns SET version = 1")

    async with store.open_campaign(read_only=True) as reader:
        assert (await reader.report()).counts == StateCounts(pending=3)

    assert await run_opting_out(store, tmp_path, number(2)) == StateCounts(done=2, suppressed=1)
    with psycopg.connect(str(store.location), autocommit=True) as conn:
        assert conn.execute("SELECT version FROM aicc_campaigns").fetchone() == (2,)
        definitions = [
            str(d)
            for (d,) in conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'aicc_rows'::regclass AND contype = 'c'"
            ).fetchall()
        ]
    assert any("'limited'" in d for d in definitions), definitions
    assert not any("state" in d and "'limited'" not in d for d in definitions), definitions
