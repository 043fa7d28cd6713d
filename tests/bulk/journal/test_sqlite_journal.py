"""The SQLite campaign journal and the campaign's argument checks: opening files, locks,
kinds, keys, row and run() validation. The rules both backends share (load passes,
keys, claims, recovery, outcomes) are tested on SQLite and PostgreSQL alike in
test_journal_rules.py.

Rows are read back either through the public API (``report()``, ``problem_rows()``)
or, where a test needs every row's state, straight from the SQLite file after the
campaign was closed.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from rows import VOICE, WRITE_BACK, voice, voice_rows, write_back

from aicc_async import (
    AICCClient,
    AICCValidationError,
)
from aicc_async.bulk import (
    Campaign,
    CampaignKind,
    CampaignRow,
    LoadSummary,
    StateCounts,
)
from aicc_async.bulk.journal import open_journal
from aicc_async.bulk.journal.rules import Mode
from aicc_async.errors import CampaignError


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def set_state(path: Path, keys: Iterable[str], state: str, code: str | None = None) -> None:
    """What a run (or a crash) would have left in the journal for ``keys``."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "UPDATE rows SET state = ?, code = ? WHERE key = ?",
            [(state, code, key) for key in keys],
        )


async def loaded(path: Path, rows: list[CampaignRow], kind: CampaignKind = VOICE) -> LoadSummary:
    async with Campaign(path, kind) as campaign:
        return await campaign.load(rows)


async def counts(path: Path) -> StateCounts:
    async with Campaign(path) as campaign:
        return (await campaign.report()).counts


# -- loading -------------------------------------------------------------------------------------


# -- row and kind validation ----------------------------------------------------------------------


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    for kind in ("voice", "", "WRITE_BACK", 3):
        with pytest.raises(AICCValidationError) as caught:
            Campaign(tmp_path / "c.db", kind)  # type: ignore[arg-type]
        assert caught.value.field == "kind"
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("path", [None, 5, "", b"c.db", ["c.db"]], ids=repr)
def test_bad_journal_paths_are_refused(path: Any) -> None:
    with pytest.raises(AICCValidationError) as caught:
        Campaign(path, "voice_notification")
    assert caught.value.field == "path"


@pytest.mark.asyncio
async def test_load_refuses_a_progress_callback_that_is_not_callable(tmp_path: Path) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        with pytest.raises(AICCValidationError, match="on_progress"):
            await campaign.load(voice_rows(3), on_progress=3)  # type: ignore[arg-type]
        assert (await campaign.report()).counts == StateCounts()


def test_campaign_row_needs_exactly_one_of_request_and_invalid() -> None:
    with pytest.raises(AICCValidationError):
        CampaignRow(key="a")
    with pytest.raises(AICCValidationError):
        CampaignRow(key="a", request=voice(1), invalid="called: bad")


@pytest.mark.parametrize("key", ["", "   ", "x" * 257, None, 5])
def test_bad_keys_are_refused(key: Any) -> None:
    with pytest.raises(AICCValidationError) as caught:
        CampaignRow(key=key, request=voice(1))
    assert caught.value.field == "key"


def test_longest_key_is_accepted() -> None:
    assert CampaignRow(key="x" * 256, request=voice(1)).key == "x" * 256


@pytest.mark.asyncio
async def test_row_of_the_wrong_request_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, VOICE) as campaign:
        with pytest.raises(AICCValidationError, match="CreateVoiceNotificationRequest"):
            await campaign.load([*voice_rows(3), CampaignRow(key="wb", request=write_back(1))])
        with pytest.raises(AICCValidationError):
            await campaign.load([{"key": "k0"}])  # type: ignore[list-item]
        with pytest.raises(AICCValidationError):
            await campaign.load(None)  # type: ignore[arg-type]
        assert (await campaign.report()).counts.total == 0  # nothing of that batch

    async with Campaign(tmp_path / "w.db", WRITE_BACK) as campaign:
        with pytest.raises(AICCValidationError, match="WriteBackResultRequest"):
            await campaign.load([CampaignRow(key="v", request=voice(1))])


# -- opening ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_missing_journal_without_kind_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(CampaignError, match="no journal"):
        await Campaign(path).open()
    assert files_in(tmp_path) == []


@pytest.mark.asyncio
async def test_non_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    text = "key,called\n" + "".join(f"{i},8888{i:04d}\n" for i in range(200))
    path.write_text(text)
    kinds: list[CampaignKind | None] = [VOICE, None]
    for kind in kinds:
        with pytest.raises(CampaignError, match="not an aicc journal"):
            await Campaign(path, kind).open()
    assert path.read_text() == text


# Only a path that does not exist starts a campaign: an emptied journal (`: > c.db`)
# was once taken for a new one, and every row of the campaign was phoned again.
@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["run", "record", "read"])
async def test_an_empty_file_is_refused_not_taken_for_a_new_campaign(
    tmp_path: Path, mode: Mode
) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"")
    kinds: list[str | None] = [VOICE, None] if mode == "run" else [None]
    for kind in kinds:
        with pytest.raises(CampaignError, match="is an empty file") as refused:
            await open_journal(path, kind, mode=mode)
        message = str(refused.value)
        assert "not an aicc journal" in message
        assert "phone every row again" in message
        assert "delete it" in message
    assert files_in(tmp_path) == ["c.db"]
    assert path.read_bytes() == b""


@pytest.mark.asyncio
async def test_an_empty_file_is_refused_by_a_campaign_and_nothing_is_loaded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"")
    campaign = Campaign(path, VOICE)
    try:
        with pytest.raises(CampaignError, match="is an empty file"):
            await campaign.open()
    finally:
        await campaign.close()
    assert path.read_bytes() == b""


@pytest.mark.asyncio
async def test_an_empty_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 7")  # a valid database with no table
    before = path.read_bytes()
    with pytest.raises(CampaignError, match="holds no table") as refused:
        await Campaign(path, VOICE).open()
    assert "not an aicc journal" in str(refused.value)
    assert path.read_bytes() == before


@pytest.mark.asyncio
async def test_a_new_journal_appears_only_complete(tmp_path: Path) -> None:
    # Created beside its path and moved there once it holds its campaign: a run
    # stopped while creating it leaves no empty journal that the next run refuses.
    path = tmp_path / "c.db"
    await loaded(path, voice_rows(2))
    # No spare left beside it; closed cleanly, it needs no lock or count of commits.
    assert files_in(tmp_path) == ["c.db"]
    assert await counts(path) == StateCounts(pending=2)


# An existing SQLite database of another application is refused before anything is
# written to it: a table named `rows` once let it open and then fail with a raw
# sqlite3.OperationalError; one without it was silently turned into a journal.
@pytest.mark.asyncio
async def test_sqlite_database_with_a_foreign_rows_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE rows (name TEXT, phone TEXT)")
        db.execute("INSERT INTO rows VALUES ('Ann', '88880000')")
    campaign = Campaign(path, VOICE)
    try:
        with pytest.raises(CampaignError, match="not an aicc journal"):
            await campaign.open()
    finally:
        await campaign.close()


@pytest.mark.asyncio
async def test_sqlite_database_of_another_application_is_refused_and_left_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE people (name TEXT, phone TEXT)")
        db.execute("INSERT INTO people VALUES ('Ann', '88880000')")
    before = path.read_bytes()
    campaign = Campaign(path, VOICE)
    try:
        with pytest.raises(CampaignError, match="not an aicc journal"):
            await campaign.open()
    finally:
        await campaign.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"people"}
    assert path.read_bytes() == before


@pytest.mark.asyncio
async def test_journal_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "c.db"
    kinds: list[CampaignKind | None] = [VOICE, None]
    for kind in kinds:
        with pytest.raises(CampaignError):
            await Campaign(path, kind).open()
    assert not (tmp_path / "no").exists()


@pytest.mark.asyncio
async def test_journal_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # not root: a read-only directory
            with pytest.raises(CampaignError, match="journal"):
                await Campaign(locked / "c.db", VOICE).open()
            assert files_in(locked) == []
        else:  # root writes anywhere: a path whose parent is a regular file instead
            parent = tmp_path / "a-file"
            parent.write_text("not a directory")
            with pytest.raises(CampaignError, match="journal"):
                await Campaign(parent / "c.db", VOICE).open()
            assert parent.read_text() == "not a directory"
    finally:
        locked.chmod(0o700)


@pytest.mark.asyncio
async def test_a_journal_is_used_by_one_campaign_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = Campaign(path, VOICE)
    await first.open()
    try:
        await first.load(voice_rows(3))
        with pytest.raises(CampaignError, match="in use"):
            await Campaign(path).open()
        assert (await first.report()).counts == StateCounts(pending=3)  # still usable
    finally:
        await first.close()
    # Once closed, the next one opens it.
    assert await counts(path) == StateCounts(pending=3)


@pytest.mark.asyncio
async def test_campaign_must_be_opened_first_and_closes_idempotently(tmp_path: Path) -> None:
    campaign = Campaign(tmp_path / "c.db", VOICE)
    with pytest.raises(CampaignError, match="open the campaign first"):
        await campaign.load(voice_rows(1))
    with pytest.raises(CampaignError, match="open the campaign first"):
        await campaign.report()
    await campaign.open()
    await campaign.open()  # a second open is a no-op
    await campaign.load(voice_rows(1))
    await campaign.close()
    await campaign.close()
    with pytest.raises(CampaignError):
        await campaign.report()
    assert campaign.path == tmp_path / "c.db"


# -- run() argument validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 51},  # the client's voice_notification limit is 50
        {"concurrency": 0},
        {"concurrency": -1},
        {"concurrency": True},
        {"concurrency": "5"},
        {"rate": 0},
        {"rate": -1},
        {"rate": math.nan},
        {"rate": math.inf},
        {"rate": True},
        {"rate": "10"},
        {"retry_unknown": "yes"},
        {"retry_unknown": 1},
        {"retry_failed": "no"},
        {"on_progress": "print"},
    ],
    ids=repr,
)
@pytest.mark.asyncio
async def test_run_refuses_bad_arguments_before_sending(
    tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    path = tmp_path / "c.db"
    await loaded(path, voice_rows(3))
    set_state(path, ["k2"], "unknown", "no answer")
    async with (
        Campaign(path) as campaign,
        AICCClient(base_url="http://127.0.0.1:9", app_key="k", app_secret="s") as aicc,
    ):
        with pytest.raises(AICCValidationError):
            await campaign.run(aicc, **kwargs)
        report = await campaign.report()
    assert report.counts == StateCounts(pending=2, unknown=1)  # nothing requeued, nothing sent


@pytest.mark.asyncio
async def test_run_concurrency_limit_follows_the_client(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    await loaded(path, voice_rows(1))
    set_state(path, ["k0"], "done")
    async with (
        Campaign(path) as campaign,
        AICCClient(
            base_url="http://127.0.0.1:9",
            app_key="k",
            app_secret="s",
            limits={"voice_notification": 80},
        ) as aicc,
    ):
        with pytest.raises(AICCValidationError, match="80"):
            await campaign.run(aicc, concurrency=81)
        assert await campaign.run(aicc, concurrency=80) == StateCounts(done=1)


# -- recovery after a crash ---------------------------------------------------------------------


# -- a journal after a crash: its -wal folded in, lost, or behind a symlink ---------------------

#: A run that stops with a kill -9: 10 rows loaded, 6 claimed (`sending`), 3 of them done.
_CRASHING_RUN = """
import asyncio, sys
from aicc_async.bulk.journal import Finished, LoadedRow, open_journal

async def main(path):
    journal = await open_journal(path, "voice_notification")
    await journal.recover(idempotent=False)
    load, _ = await journal.begin_load()
    rows = [LoadedRow(f"r{i}", f"fp{i}", "pending", "{}", f"00{i:05d}") for i in range(10)]
    _, _, known = await journal.load(rows, load)
    await journal.end_load(load, known, None)
    claim = await journal.commit([], 6, 0, once_per_number=True)
    done = [Finished(c.seq, "done", reference=f"s{c.seq}") for c in claim.rows[:3]]
    await journal.commit(done, 0, claim.cursor, once_per_number=True)
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main(sys.argv[1]))
"""


#: A resume of it that stops with a kill -9 too, two more rows in flight.
_CRASHING_RESUME = """
import asyncio, sys
from aicc_async.bulk.journal import open_journal

async def main(path):
    journal = await open_journal(path, None)
    await journal.recover(idempotent=False)
    await journal.commit([], 2, 0, once_per_number=True)
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main(sys.argv[1]))
"""


def crash(path: Path, run: str = _CRASHING_RUN) -> None:
    """Run ``run`` on ``path`` in a process and kill -9 it mid-run."""
    with subprocess.Popen(
        [sys.executable, "-c", run, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        finally:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL


def wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def fold_with_another_client(path: Path) -> None:
    """What any SQLite client does to a crashed journal it opens: on closing it, it
    copies the -wal into the file and deletes it."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM rows").fetchone() == (10,)
    assert not wal_of(path).exists()


AFTER_THE_CRASH = StateCounts(pending=4, done=3, unknown=3)


@pytest.mark.asyncio
async def test_a_crashed_journal_whose_wal_another_client_folded_in_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    crash(path)
    assert wal_of(path).exists(), "expected the crash to leave a -wal"
    fold_with_another_client(path)

    async with Campaign(path, read_only=True) as reader:  # aicc report
        assert (await reader.report()).counts == StateCounts(pending=4, done=3, sending=3)
    assert await counts(path) == AFTER_THE_CRASH  # a resume: the rows in flight are unknown
    assert await counts(path) == AFTER_THE_CRASH


@pytest.mark.asyncio
async def test_a_crashed_journal_folded_in_and_crashed_again_resumes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    crash(path)
    fold_with_another_client(path)
    crash(path, _CRASHING_RESUME)
    assert wal_of(path).exists()
    fold_with_another_client(path)
    assert await counts(path) == StateCounts(pending=2, done=3, unknown=5)


@pytest.mark.asyncio
async def test_a_crashed_journal_whose_wal_was_lost_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    crash(path)
    before = path.read_bytes()
    wal_of(path).unlink()  # lost: the rows it holds as sent are not in the file
    for mode in ("run", "read"):
        with pytest.raises(CampaignError, match=r"write-ahead log .* is missing"):
            await open_journal(path, None, mode=mode)  # type: ignore[arg-type]
    assert path.read_bytes() == before


@pytest.mark.asyncio
async def test_a_crashed_journal_folded_in_then_its_copy_without_the_wal_is_refused(
    tmp_path: Path,
) -> None:
    # A copy of the .db taken during the run (the -wal not copied) and a fold of the
    # original cannot make the copy look complete.
    path = tmp_path / "c.db"
    copy = tmp_path / "copy.db"
    crash(path)
    copy.write_bytes(path.read_bytes())
    fold_with_another_client(path)
    with pytest.raises(CampaignError, match=r"write-ahead log .* is missing"):
        await open_journal(copy, None)
    assert await counts(path) == AFTER_THE_CRASH


@pytest.mark.asyncio
async def test_a_journal_behind_a_symlink_resumes_after_a_crash(tmp_path: Path) -> None:
    real = tmp_path / "data" / "c.db"
    real.parent.mkdir()
    await (await open_journal(real, VOICE)).close()
    link = tmp_path / "c.db"
    link.symlink_to(real)
    crash(link)
    assert wal_of(real).exists()  # SQLite keeps it beside the real file
    async with Campaign(link, read_only=True) as reader:
        assert (await reader.report()).counts == StateCounts(pending=4, done=3, sending=3)
    assert await counts(link) == AFTER_THE_CRASH
    # One campaign at a time, whichever name it is opened by.
    first = Campaign(link)
    await first.open()
    try:
        with pytest.raises(CampaignError, match="in use"):
            await Campaign(real).open()
    finally:
        await first.close()


@pytest.mark.asyncio
async def test_a_journal_written_before_refused_events_were_kept_is_read_and_upgraded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, VOICE) as campaign:
        await campaign.load(voice_rows(3))
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # as an earlier release wrote it
        db.execute("DROP TABLE refused_events")
        db.execute("DROP TABLE rate_samples")
        for table, column in (("rows", "sent"), ("rows", "callback"), ("early_outcomes", "number")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    before = path.read_bytes()
    async with Campaign(path, read_only=True) as reader:
        report = await reader.report()
    assert report.outcomes.refused == ()
    assert (report.rate, report.throttled, report.requeued) == ((), 0, 0)
    assert report.counts.pending == 3
    assert path.read_bytes() == before  # read-only: not a byte written
    async with Campaign(path, outcomes_only=True) as listener:
        receiver = listener.callback_receiver("0123456789abcdef")
        assert (await receiver.receive(b"not json")).status == 400
        assert (await listener.outcomes()).refused == (("malformed", 1),)
    with contextlib.closing(sqlite3.connect(path)) as db:  # upgraded once opened to write
        assert db.execute("SELECT count(*) FROM rate_samples").fetchone() == (0,)
