"""The contact history, on SQLite and on PostgreSQL alike (the ``history_at`` fixture
runs each shared test once per backend: a file in ``tmp_path``, or a database of its
own on the session's PostgreSQL): recording and idempotence, counts by normalised
number within a sliding window, limits, two writers at once, a writer SIGKILLed
mid-batch, what is refused (files that are not a history, unknown versions, bad
DSNs, hostile values), and that the event loop never waits on the database.

Clocks are injected (:class:`Clock`): no test sleeps on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from aicc_async.bulk.dialer.history import (
    MAX_TEXT,
    ContactHistory,
    HistoryEntry,
    Limit,
    check_campaign,
    open_history,
)
from aicc_async.bulk.journal import open_journal
from aicc_async.errors import AICCValidationError, CampaignError, JournalError

DAY = 86_400.0
NOW = 1_800_000_000.0  # 2027-01-15, UTC


class Clock:
    """A clock the test moves by hand (UNIX seconds)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@attrs.frozen
class HistoryAt:
    """Where one test's contact history lives, on one backend."""

    backend: str
    location: str

    async def open(self, clock: Clock | None = None) -> ContactHistory:
        return await open_history(self.location, clock=clock or Clock())

    def create(self) -> None:
        """Create the history (outside an event loop)."""

        async def created() -> None:
            async with await self.open():
                pass

        asyncio.run(created())

    def sql(self, sqlite: str, postgresql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Run raw SQL on the store (what another program, or a crash, leaves)."""
        if self.backend == "sqlite":
            with contextlib.closing(sqlite3.connect(self.location)) as db, db:
                return db.execute(sqlite, args).fetchall()
        import psycopg

        with psycopg.connect(self.location, autocommit=True) as conn:
            cur = conn.execute(postgresql, args)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def entries(self) -> int:
        return int(
            self.sql("SELECT count(*) FROM contacts", "SELECT count(*) FROM aicc_contacts")[0][0]
        )


_databases = itertools.count()


@contextlib.contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """A database of its own on the server of ``dsn`` (dropped afterwards): the DSN."""
    import psycopg

    name = f"history_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield urllib.parse.urlsplit(dsn)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def history_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryAt]:
    if request.param == "sqlite":
        yield HistoryAt("sqlite", str(tmp_path / "history.db"))
        return
    with fresh_database(request.getfixturevalue("postgresql_dsn")) as dsn:
        yield HistoryAt("postgresql", dsn)


def entry(number: str, at: float, campaign: str = "spring", key: str = "1", attempt: int = 1):
    return HistoryEntry(number, at, campaign, key, attempt)


# -- recording and counting ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_numbers_are_counted_normalised_whatever_their_separators(
    history_at: HistoryAt,
) -> None:
    async with await history_at.open() as history:
        added = await history.record(
            [
                entry("+86 138-1234-5678", NOW - 30, key="a"),
                entry("0086 (138) 1234.5678", NOW - 20, key="b"),
                entry("008613812345678", NOW - 10, key="c"),
                entry("13900000000", NOW - 10, key="d"),
            ]
        )
        counts = await history.counts(["+8613812345678", "139-0000-0000", "+1 555 0100"], 0)

    assert added == 4
    assert counts == {"008613812345678": 3, "13900000000": 1, "0015550100": 0}


@pytest.mark.asyncio
async def test_recording_an_entry_again_neither_doubles_it_nor_moves_its_time(
    history_at: HistoryAt,
) -> None:
    async with await history_at.open() as history:
        first = await history.record([entry("13800000001", NOW - 100, key="r1")])
        again = await history.record(
            [entry("13800000001", NOW - 5, key="r1"), entry("13800000001", NOW - 100, key="r1")]
        )
        recent = await history.counts(["13800000001"], NOW - 50)
        all_time = await history.counts(["13800000001"], 0)

    assert (first, again) == (1, 0)
    assert all_time == {"13800000001": 1}
    assert recent == {"13800000001": 0}, "the first time recorded is kept"
    assert history_at.entries() == 1


def test_an_entrys_identity_is_what_histories_already_hold() -> None:
    # The digest is stored: a history written by an earlier release must still
    # recognise the calls it holds (a resume would otherwise record them twice).
    written = HistoryEntry("+86 139-0000-1234", NOW, "Zürich 营销", 'C"7', 2)

    assert written.identity.hex() == (
        "319c03f31a7ac735533d817317efd0286165f7779f56643a622b8f78415cbd00"
    )
    assert attrs.evolve(written, attempt=3).identity != written.identity


@pytest.mark.asyncio
async def test_each_attempt_and_each_campaign_is_a_call_of_its_own(history_at: HistoryAt) -> None:
    async with await history_at.open() as history:
        await history.record(
            [
                entry("13800000002", NOW - 9, "spring", "7", 1),
                entry("13800000002", NOW - 8, "spring", "7", 2),
                entry("13800000002", NOW - 7, "summer", "7", 1),
                entry("13800000002", NOW - 6, "spring", "8", 1),
            ]
        )
        counts = await history.counts(["13800000002"], 0)

    assert counts == {"13800000002": 4}


@pytest.mark.asyncio
async def test_the_window_slides_with_the_clock_and_ends_now(history_at: HistoryAt) -> None:
    clock = Clock()
    limit = Limit(2, DAY)
    number = "13800000003"
    async with await history_at.open(clock) as history:
        await history.record(
            [entry(number, NOW - DAY, key="a"), entry(number, NOW - 3600, key="b")]
        )
        # A call made exactly a day ago is out of a one-day window: one call within it.
        assert await history.counts([number], limit.since(clock())) == {number: 1}
        assert await history.limited([number], limit) == frozenset()

        await history.record([entry(number, NOW, key="c")])
        assert await history.limited([number], limit) == {number}

        clock.now = NOW + DAY - 3600  # the call of an hour before NOW leaves the window
        assert await history.limited([number], limit) == frozenset()
        assert await history.counts([number], limit.since(clock())) == {number: 1}


@pytest.mark.asyncio
async def test_calls_recorded_for_later_than_now_count(history_at: HistoryAt) -> None:
    """Another machine's clock ahead of this one: its calls must not be missed."""
    async with await history_at.open() as history:
        await history.record([entry("13800000004", NOW + 120)])
        assert await history.limited(["13800000004"], Limit(1, 60)) == {"13800000004"}


@pytest.mark.asyncio
async def test_counts_answer_every_number_of_a_large_batch(history_at: HistoryAt) -> None:
    numbers = [f"1390000{i:04d}" for i in range(1200)]  # beyond one statement's share
    async with await history_at.open() as history:
        await history.record(
            entry(n, NOW - 1, key=f"k{i}", attempt=a)
            for i, n in enumerate(numbers)
            for a in range(1, 1 + i % 3)
        )
        counts = await history.counts([*numbers, "+86 1", "86-1"], NOW - 60)

    assert counts == {
        **{n: i % 3 for i, n in enumerate(numbers)},
        "00861": 0,
        "861": 0,
    }


@pytest.mark.asyncio
async def test_counts_of_no_numbers_and_records_of_no_entries_do_nothing(
    history_at: HistoryAt,
) -> None:
    async with await history_at.open() as history:
        assert await history.record([]) == 0
        assert await history.counts([], 0) == {}
    assert history_at.entries() == 0


@pytest.mark.asyncio
async def test_campaigns_and_workers_share_the_history(history_at: HistoryAt) -> None:
    first, second = await history_at.open(), await history_at.open()
    try:
        await first.record([entry("13800000005", NOW - 1, "spring")])
        await second.record([entry("+86 138 0000 0005", NOW - 1, "summer")])
        assert await first.counts(["13800000005"], 0) == {"13800000005": 1}
        assert await second.counts(["13800000005", "008613800000005"], 0) == {
            "13800000005": 1,
            "008613800000005": 1,
        }
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
async def test_admit_records_the_calls_a_limit_allows_and_names_the_others(
    history_at: HistoryAt,
) -> None:
    clock = Clock()
    async with await history_at.open(clock) as history:
        await history.record([entry("13800000010", NOW - 3600, "spring", "old")])
        admission = await history.admit(
            [
                entry("+86 138 0000 0011", NOW, "summer", "1"),
                entry("13800000010", NOW, "summer", "2"),  # its one call a day was made
                entry("008613800000011", NOW, "summer", "3"),  # the batch's first took it
                entry("13800000012", NOW, "summer", "4"),
            ],
            Limit(1, DAY),
        )
        assert [e.key for e in admission.admitted] == ["1", "4"]
        assert [e.key for e in admission.limited] == ["2", "3"]
        # Admitting the same entries again gives the same answer and records nothing.
        again = await history.admit(
            [
                entry("008613800000011", NOW + 5, "summer", "1"),
                entry("13800000012", NOW, "summer", "4"),
            ],
            Limit(1, DAY),
        )
        assert [e.key for e in again.admitted] == ["1", "4"]
        assert again.limited == ()
        assert await history.counts(["13800000010", "008613800000011", "13800000012"], 0) == {
            "13800000010": 1,
            "008613800000011": 1,
            "13800000012": 1,
        }
        clock.now = NOW + DAY  # a day later the numbers may be called again
        later = await history.admit([entry("13800000010", clock.now, "autumn", "1")], Limit(1, DAY))
        assert [e.key for e in later.admitted] == ["1"]
    assert history_at.entries() == 4


@pytest.mark.asyncio
async def test_admitting_a_recorded_row_with_another_number_is_refused(
    history_at: HistoryAt,
) -> None:
    """A row key names one row, so one number: another number is a caller's mistake,
    never a call admitted because the row was seen before."""
    async with await history_at.open() as history:
        await history.record([entry("13800000014", NOW, "spring", "7")])
        with pytest.raises(CampaignError, match="row '7' of campaign 'spring'") as refused:
            await history.admit([entry("13800000015", NOW, "spring", "7")], Limit(5, DAY))
        assert "13800000014" not in str(refused.value)
        assert await history.counts(["13800000015"], 0) == {"13800000015": 0}


@pytest.mark.asyncio
async def test_a_resumed_batch_under_a_loose_limit_records_only_its_new_calls(
    history_at: HistoryAt,
) -> None:
    # Every number has room, so every entry is admitted: those recorded already (a
    # resume) are kept as they were, the new ones recorded, and a row key that now
    # names another number still refuses the whole batch.
    async with await history_at.open() as history:
        await history.record([entry("13800000020", NOW - 60, "spring", "1")])
        admission = await history.admit(
            [entry("13800000020", NOW, "spring", "1"), entry("13800000021", NOW, "spring", "2")],
            Limit(3, DAY),
        )
        assert [e.key for e in admission.admitted] == ["1", "2"]
        assert admission.limited == ()
        assert await history.counts(["13800000020", "13800000021"], 0) == {
            "13800000020": 1,
            "13800000021": 1,
        }
        with pytest.raises(CampaignError, match="row '2' of campaign 'spring'"):
            await history.admit(
                [
                    entry("13800000022", NOW, "spring", "3"),
                    entry("13800000029", NOW, "spring", "2"),
                ],
                Limit(3, DAY),
            )
        assert await history.counts(["13800000022", "13800000029"], 0) == {
            "13800000022": 0,
            "13800000029": 0,
        }
    assert history_at.entries() == 2


@pytest.mark.asyncio
async def test_campaigns_admitting_one_number_at_once_call_it_once(history_at: HistoryAt) -> None:
    """Ten workers (connections, threads) admit the same numbers at the same time under
    a one-call limit: each number is admitted to exactly one of them."""
    numbers = [f"1350000{i:04d}" for i in range(50)]
    workers = [await history_at.open() for _ in range(10)]
    try:
        admissions = await asyncio.gather(
            *(
                worker.admit([entry(n, NOW, f"campaign-{w}", n) for n in numbers], Limit(1, DAY))
                for w, worker in enumerate(workers)
            )
        )
    finally:
        for worker in workers:
            await worker.close()
    admitted = [e.number for a in admissions for e in a.admitted]
    assert sorted(admitted) == sorted(numbers)
    assert sum(len(a.limited) for a in admissions) == 9 * 50
    assert history_at.entries() == 50


# -- concurrency and crashes ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_writers_at_once_lose_and_double_nothing(history_at: HistoryAt) -> None:
    """Two open histories (two connections, two threads) write overlapping batches at
    the same time: each entry is there once."""
    batches = [
        [entry(f"1370000{b:02d}{j:02d}", NOW - 1, "c", f"{b}-{j}") for j in range(50)]
        for b in range(40)
    ]
    one, two = await history_at.open(), await history_at.open()
    try:
        added = await asyncio.gather(
            *(one.record(batch) for batch in batches),
            *(two.record(batch) for batch in reversed(batches)),
        )
        counts = await one.counts((e.number for b in batches for e in b), 0)
    finally:
        await one.close()
        await two.close()

    assert sum(added) == 40 * 50
    assert set(counts.values()) == {1}
    assert history_at.entries() == 40 * 50


ADMITTER = textwrap.dedent(
    """
    import asyncio, sys
    from aicc_async.bulk.dialer.history import HistoryEntry, Limit, open_history

    async def main(location, campaign):
        admitted = 0
        async with await open_history(location, clock=lambda: 1000.0) as history:
            for batch in range(20):
                admission = await history.admit(
                    (HistoryEntry(f"134{batch:04d}{j:04d}", 1000.0, campaign, f"{batch}-{j}")
                     for j in range(50)),
                    Limit(1, 86400),
                )
                admitted += len(admission.admitted)
        print(admitted)

    asyncio.run(main(*sys.argv[1:]))
    """
)


def test_processes_admitting_at_once_admit_each_number_once(history_at: HistoryAt) -> None:
    """Three campaign processes write the same history at the same time (SQLite: its
    busy timeout; PostgreSQL: its lock): each number is admitted to one of them."""
    history_at.create()  # before the processes start
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADMITTER, history_at.location, f"campaign-{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    said = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], said
    assert sum(int(out) for out, _ in said) == 20 * 50
    assert history_at.entries() == 20 * 50


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from aicc_async.bulk.dialer.history import HistoryEntry, open_history

    async def main(location):
        async with await open_history(location) as history:
            for batch in range(1_000_000):
                await history.record(
                    HistoryEntry(f"136{batch:04d}{j:04d}", 1000.0 + batch, "killed", f"{batch}-{j}")
                    for j in range(200)
                )
                print(batch, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def batch_numbers(batch: int) -> list[str]:
    return [f"136{batch:04d}{j:04d}" for j in range(200)]


def kill_writer_mid_run(location: str) -> int:
    """Start :data:`WRITER`, SIGKILL it once it acknowledged 16 batches (it goes on
    writing meanwhile); the last batch it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, location],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        acknowledged = -1
        while acknowledged < 15:
            line = proc.stdout.readline()
            assert line, f"the writer ended: {proc.stderr.read() if proc.stderr else ''}"
            acknowledged = int(line)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    acknowledged = max([acknowledged, *(int(line) for line in rest.split())])
    return acknowledged


@pytest.mark.asyncio
async def test_a_writer_killed_mid_batch_leaves_whole_batches_and_a_resume_completes_them(
    history_at: HistoryAt,
) -> None:
    async with await history_at.open():
        pass  # created before the writer: its start-up is not what is measured
    acknowledged = await asyncio.to_thread(kill_writer_mid_run, history_at.location)

    async with await history_at.open() as history:
        for batch in range(acknowledged + 3):
            counts = set((await history.counts(batch_numbers(batch), 0)).values())
            if batch <= acknowledged:
                assert counts == {1}, f"batch {batch} was acknowledged, then lost"
            elif batch == acknowledged + 1:
                assert len(counts) == 1, f"batch {batch} was half recorded: {counts}"
            else:
                assert counts == {0}
        # The resume records every batch that was (or may have been) under way again.
        for batch in range(acknowledged + 2):
            await history.record(
                HistoryEntry(n, 1000.0 + batch, "killed", f"{batch}-{j}")
                for j, n in enumerate(batch_numbers(batch))
            )
        for batch in range(acknowledged + 2):
            assert set((await history.counts(batch_numbers(batch), 0)).values()) == {1}
    assert history_at.entries() == (acknowledged + 2) * 200


@pytest.mark.asyncio
async def test_the_event_loop_runs_while_the_store_waits_for_another_writer(
    tmp_path: Path,
) -> None:
    """A write waits (busy timeout) for another process's write transaction, on the
    history's thread: the event loop goes on meanwhile, and the write then lands."""
    location = str(tmp_path / "history.db")
    async with await open_history(location, clock=Clock()) as history:
        other = sqlite3.connect(location, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            writing = asyncio.create_task(history.record([entry("13800000006", NOW)]))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not writing.done()
            other.execute("COMMIT")
        finally:
            other.close()
        assert await writing == 1
        assert await history.counts(["13800000006"], 0) == {"13800000006": 1}


@pytest.mark.asyncio
async def test_two_processes_creating_one_history_at_once_share_it(tmp_path: Path) -> None:
    for attempt in range(5):
        location = str(tmp_path / f"new-{attempt}.db")
        opened = await asyncio.gather(*(open_history(location, clock=Clock()) for _ in range(4)))
        try:
            await opened[0].record([entry("13800000007", NOW)])
            for history in opened:
                assert await history.counts(["13800000007"], 0) == {"13800000007": 1}
        finally:
            for history in opened:
                await history.close()
    assert sorted(await asyncio.to_thread(os.listdir, tmp_path)) == [
        f"new-{i}.db" for i in range(5)
    ]


@pytest.mark.asyncio
async def test_a_history_whose_server_connection_was_cut_reconnects(postgresql_dsn: str) -> None:
    """A PostgreSQL restart or a dropped connection: every operation of the history
    may run again (recording is idempotent), so it reconnects once and goes on."""
    import psycopg

    with fresh_database(postgresql_dsn) as dsn:
        async with await open_history(dsn, clock=Clock()) as history:
            await history.record([entry("13800000013", NOW, key="before")])
            with psycopg.connect(dsn, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'aicc-async contact history'"
                ).fetchall()
            assert cut == [(True,)]
            assert await history.record([entry("13800000013", NOW, key="after")]) == 1
            assert await history.counts(["13800000013"], 0) == {"13800000013": 2}


# -- what is refused ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_history_of_an_unknown_version_is_refused(history_at: HistoryAt) -> None:
    async with await history_at.open() as history:
        await history.record([entry("13800000008", NOW)])
    history_at.sql(
        "UPDATE contact_history SET version = 99", "UPDATE aicc_contact_history SET version = 99"
    )

    with pytest.raises(CampaignError, match=r"another version of aicc-async \(format 99"):
        await history_at.open()
    assert history_at.entries() == 1


@pytest.mark.asyncio
async def test_a_history_whose_version_row_names_another_format_is_refused(
    history_at: HistoryAt,
) -> None:
    async with await history_at.open():
        pass
    history_at.sql(
        "UPDATE contact_history SET format = 'x'", "UPDATE aicc_contact_history SET format = 'x'"
    )
    with pytest.raises(CampaignError, match="is not a contact history"):
        await history_at.open()


def make_journal(path: Path) -> None:
    async def create() -> None:
        journal = await open_journal(path, "voice_notification")
        await journal.close()

    asyncio.run(create())


@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param(b"", "is an empty file", id="empty"),
        pytest.param(b"called\n13800000000\n", r"not a SQLite database", id="text"),
        pytest.param(None, "is a campaign journal, not a contact history", id="journal"),
        pytest.param("other-db", "is another SQLite database", id="other-sqlite"),
    ],
)
def test_a_file_that_is_not_a_history_is_refused_and_left_as_it_was(
    tmp_path: Path, content: bytes | str | None, said: str
) -> None:
    path = tmp_path / "existing.db"
    if content is None:
        make_journal(path)
    elif content == "other-db":
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE people (number TEXT)")
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())

    with pytest.raises(CampaignError, match=said) as refused:
        asyncio.run(open_history(path))

    assert "--contact-history" in refused.value.message
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


@pytest.mark.asyncio
async def test_a_history_is_refused_as_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    async with await open_history(path):
        pass
    with pytest.raises(CampaignError, match="not an aicc journal"):
        await open_journal(path, "voice_notification")


@pytest.mark.asyncio
async def test_a_symlink_opens_the_history_it_points_at(tmp_path: Path) -> None:
    """Through a link or not, one history (SQLite keeps one -wal, beside the file)."""
    real, link = tmp_path / "calls.db", tmp_path / "link.db"
    async with await open_history(real):
        pass
    await asyncio.to_thread(link.symlink_to, real)
    async with await open_history(link) as linked, await open_history(real) as direct:
        await linked.record([entry("13800000016", NOW)])
        assert await direct.counts(["13800000016"], 0) == {"13800000016": 1}
    await asyncio.to_thread(tmp_path.joinpath("dangling.db").symlink_to, "nowhere.db")
    with pytest.raises(CampaignError, match="is not a file"):
        await open_history(tmp_path / "dangling.db")


@pytest.mark.asyncio
async def test_a_directory_or_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match="is not a file"):
        await open_history(tmp_path)
    with pytest.raises(CampaignError, match="does not exist"):
        await open_history(tmp_path / "no-such-folder" / "history.db")
    assert await asyncio.to_thread(os.listdir, tmp_path) == []


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://aicc:hunter2-secret@127.0.0.1/db?no_such_option=1",
        "postgresql://aicc:hunter2-secret@[::1/db",  # psycopg's message quotes the DSN
        "postgres://aicc@127.0.0.1/db?password=hunter2-secret&bogus=1",
    ],
)
@pytest.mark.asyncio
async def test_a_dsn_psycopg_cannot_read_is_refused_without_its_password(dsn: str) -> None:
    with pytest.raises(CampaignError, match="not a PostgreSQL DSN") as refused:
        await open_history(dsn)
    assert "hunter2" not in str(refused.value)


@pytest.mark.asyncio
async def test_a_port_that_is_not_a_number_is_refused_without_the_password() -> None:
    with pytest.raises(JournalError, match="notaport") as refused:
        await open_history("postgresql://aicc:hunter2-secret@127.0.0.1:notaport/db")
    assert "hunter2" not in str(refused.value)


@pytest.mark.asyncio
async def test_an_unreachable_server_is_named_without_the_password(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(JournalError, match=f"127.0.0.1:{port}") as refused:
        await open_history(f"postgresql://aicc:hunter2-secret@127.0.0.1:{port}/db")
    assert "hunter2" not in str(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.asyncio
async def test_a_wrong_password_is_refused_without_showing_it(postgresql_dsn: str) -> None:
    parts = urllib.parse.urlsplit(postgresql_dsn)
    wrong = parts._replace(netloc=f"aicc:wrong-pw-123@{parts.hostname}:{parts.port}").geturl()
    with pytest.raises(JournalError, match="cannot reach") as refused:
        await open_history(wrong)
    assert "wrong-pw-123" not in str(refused.value)


@pytest.mark.asyncio
async def test_a_campaign_name_as_long_as_a_path_is_recorded_once(history_at: HistoryAt) -> None:
    """Longer than PostgreSQL can index (about 2.7 kB), as a SQLite journal's path may be."""
    campaign, key = "c" * MAX_TEXT, "é" * MAX_TEXT
    async with await history_at.open() as history:
        assert await history.record([entry("13800000009", NOW, campaign, key)]) == 1
        assert await history.record([entry("13800000009", NOW, campaign, key)]) == 0
        assert await history.record([entry("13800000009", NOW, campaign[:-1] + "d", key)]) == 1
        assert await history.counts(["13800000009"], 0) == {"13800000009": 2}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param({"number": "138 0000 abcd"}, "number", id="letters"),
        pytest.param({"number": "138+000"}, "number", id="inner-plus"),
        pytest.param({"number": ""}, "number", id="empty-number"),
        pytest.param({"number": 13800000000}, "number", id="int-number"),
        pytest.param({"number": "1" * 41}, "number", id="too-long-number"),
        pytest.param({"at": float("nan")}, "at", id="nan"),
        pytest.param({"at": "yesterday"}, "at", id="text-time"),
        pytest.param({"campaign": "c" * (MAX_TEXT + 1)}, "campaign", id="huge-campaign"),
        pytest.param({"campaign": " "}, "campaign", id="blank-campaign"),
        pytest.param({"campaign": "spring\x00"}, "campaign", id="nul-campaign"),
        pytest.param({"campaign": "spring\x1b[2J"}, "campaign", id="escape-campaign"),
        pytest.param({"key": "\ud800"}, "key", id="lone-surrogate-key"),
        pytest.param({"key": 7}, "key", id="int-key"),
        pytest.param({"attempt": 0}, "attempt", id="attempt-0"),
        pytest.param({"attempt": True}, "attempt", id="attempt-bool"),
        pytest.param({"attempt": 1.0}, "attempt", id="attempt-float"),
    ],
)
def test_hostile_entries_are_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {
        "number": "13800000000",
        "at": NOW,
        "campaign": "spring",
        "key": "1",
        "attempt": 1,
    }
    with pytest.raises(AICCValidationError) as refused:
        HistoryEntry(**{**fields, **values})
    assert refused.value.field == field


def test_an_entry_of_a_journal_is_the_entry_its_checked_values_make() -> None:
    # Built unchecked from what a journal holds: equal, in every way a store uses it,
    # to the entry the checked constructor makes of the same values.
    values = ("008613900001234", NOW, "/srv/campaigns/spring.db", "C0001", 2)
    checked, unchecked = HistoryEntry(*values), HistoryEntry._of_journal(*values)

    assert unchecked == checked
    assert hash(unchecked) == hash(checked)
    assert (unchecked.slot, unchecked.identity) == (checked.slot, checked.identity)
    assert repr(unchecked) == repr(checked)


@pytest.mark.parametrize(
    "name",
    ["c" * (MAX_TEXT + 1), " ", "", "spring\x00", "spring\x1b[2J", "two\nlines", "\ud800", 7],
)
def test_a_campaign_name_no_entry_could_hold_is_refused(name: Any) -> None:
    with pytest.raises(AICCValidationError) as refused:
        check_campaign(name)
    assert refused.value.field == "campaign"
    assert check_campaign("/srv/campaigns/营销 spring.db") == "/srv/campaigns/营销 spring.db"


@pytest.mark.asyncio
async def test_hostile_values_reach_no_store(history_at: HistoryAt) -> None:
    async with await history_at.open() as history:
        with pytest.raises(AICCValidationError, match="number"):
            await history.counts(["13800000000", "1; DROP TABLE contacts"], 0)
        with pytest.raises(AICCValidationError, match="since"):
            await history.counts(["13800000000"], float("inf"))
        with pytest.raises(AICCValidationError, match="entries"):
            await history.record([("13800000000", NOW, "c", "k", 1)])  # type: ignore[list-item]
        # A quote in a name is a name like any other.
        assert await history.record([entry("13800000000", NOW, "o'brien\"; --", "k'1")]) == 1
    assert history_at.entries() == 1


@pytest.mark.asyncio
async def test_a_closed_history_says_so(history_at: HistoryAt) -> None:
    history = await history_at.open()
    await history.close()
    await history.close()
    with pytest.raises(CampaignError, match="is closed"):
        await history.record([entry("13800000000", NOW)])
    with pytest.raises(CampaignError, match="is closed"):
        await history.counts(["13800000000"], 0)


# -- clocks -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_clock_far_from_the_servers_is_warned_about(
    postgresql_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    caplog.set_level(logging.WARNING, logger="aicc_async")
    with fresh_database(postgresql_dsn) as dsn:
        async with await open_history(dsn, clock=lambda: time.time() - 3600) as behind:
            assert 3590 < behind.clock_skew < 3610  # type: ignore[operator]
        assert len(caplog.records) == 1
        said = caplog.records[0].getMessage()
        assert "3600 s behind" in said
        assert "pg-s3cret-pw" not in said
        caplog.clear()
        async with await open_history(dsn) as near:
            assert abs(near.clock_skew) < 60  # type: ignore[arg-type]
        assert caplog.records == []


@pytest.mark.asyncio
async def test_a_file_history_has_no_clock_skew(tmp_path: Path) -> None:
    async with await open_history(tmp_path / "h.db") as history:
        assert history.clock_skew is None


@pytest.mark.asyncio
async def test_the_location_shown_masks_a_password(postgresql_dsn: str) -> None:
    with fresh_database(postgresql_dsn) as dsn:
        async with await open_history(dsn) as history:
            assert "pg-s3cret-pw" not in history.location
            assert "pg-s3cret-pw" not in repr(history)


# -- limits -----------------------------------------------------------------------------------


def test_a_limit_names_the_numbers_with_as_many_calls_as_it_allows() -> None:
    limit = Limit(3, 7 * DAY)
    assert limit.since(NOW) == NOW - 7 * DAY
    assert limit.limited({"1": 2, "2": 3, "3": 4, "4": 0}) == {"2", "3"}
    assert Limit(1, 1).limited({"1": 0}) == frozenset()


@pytest.mark.parametrize(
    ("count", "period"),
    [(0, DAY), (-1, DAY), (True, DAY), (1.5, DAY), (1, 0), (1, -5), (1, float("inf")), (1, "1d")],
)
def test_a_limit_that_cannot_be_is_refused(count: Any, period: Any) -> None:
    with pytest.raises(AICCValidationError):
        Limit(count, period)
