"""The SQLite journal: one file (WAL) holding one campaign, for one process at a time.

The ``sending`` mark is committed (``synchronous=FULL``) before the request goes out,
so after a crash a row that may have been sent never looks unsent. One process at a
time may run a campaign on it (a lock file beside it); readers (``aicc report``) open
it read-only and may do so while it runs. The ``-wal`` file is part of the journal
until the journal is closed: a journal not closed cleanly whose ``-wal`` is missing
is refused, unless it holds every commit made (see :func:`_complete_without_wal`). A
symlink to a journal is the journal it points at. SQLite calls run on one worker
thread, never on the event loop.

Telling a ``-wal`` folded in from one lost: every write transaction counts itself in
the file (``campaign.commits``), and once committed the count is written to a small
file beside the journal, ``<journal>.commits``, before anything is sent. Any SQLite
client that opens a crashed journal copies its ``-wal`` into the file and deletes it
when it closes: the file then holds the last count recorded, or more. A ``-wal``
deleted or left behind by a copy takes commits with it: the file holds less. A copy
without the count file proves nothing and is refused, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

import filelock

from aicc_async.bulk.journal.rules import (
    SCHEMA_VERSION,
    STATE_CHECK,
    STATES,
    UPGRADABLE,
    Claim,
    Finished,
    Gate,
    Mode,
    checked_kind,
)
from aicc_async.bulk.journal.run_lock import RunLock
from aicc_async.bulk.journal.sql import Db, SQLJournal, normalise_numbers
from aicc_async.errors import CampaignError, JournalError

__all__ = ["SQLiteJournal", "sqlite_file"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_CHECKPOINT_EVERY = 30.0  # seconds between checkpoints while a campaign runs
_CHECKPOINT_TRIES = 5
_BUSY_TIMEOUT = 10.0  # seconds a write waits for another writer (aicc listen)

#: The ``rows`` table (after its name).
_ROWS = f"""(
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK ({STATE_CHECK}),
    payload TEXT NOT NULL,
    number TEXT,
    code TEXT,
    description TEXT,
    reference TEXT,
    sends INTEGER NOT NULL DEFAULT 0,
    first_load INTEGER NOT NULL DEFAULT 0,
    loaded INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    outcome TEXT CHECK (outcome IN ('answered', 'not_answered')),
    release_reason TEXT,
    talk_duration INTEGER,
    release_time TEXT,
    sent REAL,
    callback INTEGER,
    zone TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    due REAL,
    heard REAL
)"""
_ROWS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS rows_by_number ON rows (number) WHERE number IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS rows_by_reference ON rows (reference) WHERE reference IS NOT NULL",
)
_ATTEMPTS = (
    "(seq INTEGER NOT NULL, attempt INTEGER NOT NULL, number TEXT, reference TEXT, "
    "outcome TEXT, release_reason TEXT, talk_duration INTEGER, release_time TEXT, "
    "sent REAL, heard REAL, PRIMARY KEY (seq, attempt))"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS campaign (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    loads INTEGER NOT NULL DEFAULT 0,
    current_load INTEGER,
    accepted INTEGER,
    source TEXT,
    target TEXT,
    clean INTEGER NOT NULL DEFAULT 0,
    commits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rows {_ROWS};
CREATE TABLE IF NOT EXISTS early_outcomes (
    reference TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    release_reason TEXT,
    talk_duration INTEGER,
    release_time TEXT,
    received REAL NOT NULL,
    number TEXT
);
CREATE TABLE IF NOT EXISTS refused_events (
    reason TEXT PRIMARY KEY,
    events INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_samples (
    worker TEXT NOT NULL,
    time REAL NOT NULL,
    rate REAL,
    sent INTEGER NOT NULL,
    throttled INTEGER NOT NULL,
    requeued INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts {_ATTEMPTS};
CREATE INDEX IF NOT EXISTS attempts_by_reference ON attempts (reference);
{";".join(_ROWS_INDEXES)};
"""

#: Columns newer than the journal format: (table, column, SQL type). A journal written
#: before them gets them when it is opened to write; read-only, they read as NULL.
_ADDED_COLUMNS = (
    ("rows", "sent", "REAL"),
    ("rows", "callback", "INTEGER"),
    ("early_outcomes", "number", "TEXT"),
    ("rows", "zone", "TEXT"),
    ("rows", "attempt", "INTEGER NOT NULL DEFAULT 0"),
    ("rows", "due", "REAL"),
    ("rows", "heard", "REAL"),
)
_ADDED_TABLES = {
    "refused_events": "(reason TEXT PRIMARY KEY, events INTEGER NOT NULL)",
    "rate_samples": "(worker TEXT NOT NULL, time REAL NOT NULL, rate REAL, "
    "sent INTEGER NOT NULL, throttled INTEGER NOT NULL, requeued INTEGER NOT NULL)",
    "attempts": _ATTEMPTS,
}


def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    present: dict[str, set[str]] = {}
    for table, _, _ in _ADDED_COLUMNS:
        if table not in present:
            present[table] = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
    return [c for c in _ADDED_COLUMNS if c[1] not in present[c[0]]]


def _upgrade(db: sqlite3.Connection) -> None:
    """Give a journal written by an earlier release what this one records (inside a
    write transaction): nothing it held changes."""
    for table, definition in _ADDED_TABLES.items():
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} {definition}")
    for table, column, kind in _missing_columns(db):
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    _widen_states(db)
    db.execute(
        f"UPDATE campaign SET version = ? WHERE version IN ({', '.join('?' * len(UPGRADABLE))})",  # noqa: S608 - only '?' marks
        (SCHEMA_VERSION, *UPGRADABLE),
    )


def _widen_states(db: sqlite3.Connection) -> None:
    """Let the ``rows`` of a journal written before the dialer's states hold them: SQLite
    cannot change a CHECK in place, so the table is copied into one that allows every
    state (in the write transaction; its rows, their ``seq`` included, unchanged)."""
    (table,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'rows'").fetchone()
    if all(f"'{state}'" in table for state in STATES):
        return
    columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(rows)"))
    db.execute(f"CREATE TABLE rows_widened {_ROWS}")
    db.execute(f"INSERT INTO rows_widened ({columns}) SELECT {columns} FROM rows")  # noqa: S608 - its own columns
    db.execute("DROP TABLE rows")
    db.execute("ALTER TABLE rows_widened RENAME TO rows")
    for index in _ROWS_INDEXES:
        db.execute(index)


def _shadow(db: sqlite3.Connection) -> None:
    """On a read-only connection to a journal written by an earlier release: temporary
    stand-ins (in memory, the file untouched) for what it lacks, read as empty / NULL."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    for table, definition in _ADDED_TABLES.items():
        if table not in tables:
            db.execute(f"CREATE TEMP TABLE {table} {definition}")
    added: dict[str, list[str]] = {}
    for table, column, _ in _missing_columns(db):
        added.setdefault(table, []).append(f"NULL AS {column}")
    for table, columns in added.items():
        sql = f"CREATE TEMP VIEW {table} AS SELECT *, {', '.join(columns)} FROM main.{table}"  # noqa: S608 - constants
        db.execute(sql)


#: How an SQLite database file begins.
_MAGIC = b"SQLite format 3\0"
#: How an SQLite write-ahead log (a ``-wal`` file) begins (big-endian, either checksum).
_WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")


def _header(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the file at ``path`` (fewer, or none if unreadable)."""
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return b""


def _wal_header(path: Path) -> bool:
    """True when the SQLite file at ``path`` says it is in WAL mode."""
    header = _header(path, 20)
    return len(header) == 20 and header.startswith(_MAGIC) and header[18] == 2


def sqlite_file(path: Path) -> str | None:
    """What SQLite file ``path`` is, by its first bytes: ``"database"`` (an aicc journal
    is one), ``"write-ahead log"``, or ``None`` (not an SQLite file, or none there)."""
    header = _header(path, len(_MAGIC))
    if header.startswith(_MAGIC):
        return "database"
    if header[:4] in _WAL_MAGIC:
        return "write-ahead log"
    return None


def _commits_file(path: Path) -> Path:
    """Where the journal ``path`` records how many commits it made."""
    return path.with_name(path.name + ".commits")


def _commits_recorded(path: Path) -> int | None:
    """The count of commits recorded beside the journal ``path`` (``None``: no record)."""
    try:
        return int(_commits_file(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _complete_without_wal(db: sqlite3.Connection, path: Path) -> bool:
    """For a journal file whose ``-wal`` is missing: True when it holds everything,
    because it was closed cleanly, or because it holds at least as many commits as
    were recorded beside it (another SQLite client folded the ``-wal`` in)."""
    if db.execute("SELECT clean FROM campaign").fetchone()[0]:
        return True
    recorded = _commits_recorded(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(campaign)")}
    if recorded is None or "commits" not in columns:
        return False
    held = int(db.execute("SELECT commits FROM campaign").fetchone()[0])
    if held >= recorded:
        logger.info(
            "the write-ahead log of %s was folded into it after a run stopped (by another "
            "SQLite client): it holds every commit made",
            path,
        )
        return True
    return False


def _add_commits(db: sqlite3.Connection) -> None:
    """Give a journal of an earlier version its count of commits (in a transaction)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(campaign)")}
    if "commits" not in columns:
        db.execute("ALTER TABLE campaign ADD COLUMN commits INTEGER NOT NULL DEFAULT 0")


class SQLiteJournal(SQLJournal):
    """An open SQLite journal file. Create with :meth:`open`; close with :meth:`close`."""

    _BEGIN: ClassVar[str] = "BEGIN IMMEDIATE"
    _errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def __init__(
        self,
        path: Path,
        db: sqlite3.Connection,
        kind: str,
        mode: Mode,
        lock: RunLock | None = None,
    ) -> None:
        super().__init__(db, kind, mode, str(path))
        self.path = path
        self._sqlite = db
        self._lock = lock
        self._checkpointed = time.monotonic()
        self._counted: int | None = None  # the file recording the count of commits

    @property
    def files(self) -> tuple[Path, ...]:
        """The journal and the files SQLite and aicc keep beside it."""
        return (
            self.path,
            *(
                self.path.with_name(self.path.name + end)
                for end in ("-wal", "-shm", ".lock", ".commits")
            ),
        )

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, kind: str | None, *, mode: Mode = "run") -> SQLiteJournal:
        """Open ``path``: ``mode="run"`` to send (created for ``kind`` when missing;
        ``kind=None``: it must exist), ``mode="read"`` to read it without writing a byte,
        ``mode="record"`` to record call outcomes, beside a campaign running on it or
        not (a path that does not exist is created for ``kind``, if given: a listener
        may start before its campaign).

        Raises ``CampaignError`` if it cannot be created or opened, is not a journal,
        holds another kind of campaign, is in use by another campaign process, or was
        not closed cleanly and lost its ``-wal`` file; ``JournalError`` if SQLite cannot
        read it. A symlink opens the journal it points at.
        """
        path = await asyncio.to_thread(path.resolve)
        if mode == "read":
            wal_lost = _wal_header(path) and not path.with_name(path.name + "-wal").exists()
            db = await asyncio.to_thread(cls._connect_read_only, path, wal_lost)
            try:
                found = await asyncio.to_thread(cls._check_read_only, db, path, kind, wal_lost)
            except BaseException:
                db.close()
                raise
            return cls(path, db, found, mode)
        await asyncio.to_thread(cls._check_path, path, kind)
        if kind is not None:  # a campaign's run, or a listener started before it
            await asyncio.to_thread(cls._create_file, path, kind)
        wal_kept = path.with_name(path.name + "-wal").exists()
        in_wal_mode = _wal_header(path)
        db = await asyncio.to_thread(cls._connect, path)
        lock: RunLock | None = None
        try:
            lock = await asyncio.to_thread(cls._lock_for, db, path, mode == "run")
            found = await asyncio.to_thread(
                cls._check, db, path, kind, in_wal_mode and not wal_kept, mode
            )
            counted = await asyncio.to_thread(cls._open_count, db, path)
        except BaseException:
            db.close()
            if lock is not None:
                lock.release()
            raise
        journal = cls(path, db, found, mode, lock)
        journal._counted = counted
        return journal

    @staticmethod
    def _open_count(db: sqlite3.Connection, path: Path) -> int:
        """Open the file recording the count of commits, and record the count now."""
        try:
            counted = os.open(_commits_file(path), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CampaignError(
                f"cannot write beside the journal {path} ({exc.strerror or exc}): check that "
                "its directory is writable, or choose another --journal path"
            ) from None
        try:
            held = int(db.execute("SELECT commits FROM campaign").fetchone()[0])
            SQLiteJournal._record_count(counted, held, durable=True)
        except BaseException:
            os.close(counted)
            raise
        return counted

    @staticmethod
    def _record_count(counted: int, commits: int, *, durable: bool) -> None:
        """Write ``commits`` to the file ``counted`` (one write of a fixed width)."""
        os.lseek(counted, 0, os.SEEK_SET)
        os.write(counted, f"{commits:>20}\n".encode("ascii"))
        if durable:
            os.fsync(counted)

    def _transaction(self, fn: Callable[[Db], T]) -> T:
        """:meth:`SQLJournal._transaction`, counted: the transaction adds one to the
        file's count of commits, which is then recorded beside it (before anything the
        transaction claimed is sent)."""
        count: list[int] = []

        def counted(db: Db) -> T:
            result = fn(db)
            db.execute("UPDATE campaign SET commits = commits + 1")
            count.append(int(db.execute("SELECT commits FROM campaign").fetchone()[0]))
            return result

        result = super()._transaction(counted)
        if self._counted is not None:
            try:
                # Not synced: the record guards against a -wal deleted or left behind,
                # which every process sees at once; a power cut keeps the -wal (synced).
                self._record_count(self._counted, count[0], durable=False)
            except OSError as exc:
                raise JournalError(
                    f"the journal {self.location} could not record its count of commits "
                    f"beside it ({exc.strerror or exc}); the rows it recorded so far are kept"
                ) from None
        return result

    @staticmethod
    def _check_path(path: Path, kind: str | None) -> None:
        if kind is None and not path.is_file():
            raise CampaignError(f"no journal at {path}: give the path a campaign was run with")
        if not path.parent.is_dir():
            raise CampaignError(f"cannot create the journal {path}: {path.parent} does not exist")

    @staticmethod
    def _create_file(path: Path, kind: str) -> None:
        """Create the journal of a new ``kind`` campaign at ``path`` if nothing is there.

        It is made complete beside ``path`` and then linked there, so that a journal
        file always holds its campaign: an existing file that does not (an empty one
        included) is never a new campaign but refused. If another process created
        ``path`` meanwhile, that one is kept (and opened).
        """
        if os.path.lexists(path):
            return
        spare = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.new")
        try:
            db = sqlite3.connect(spare, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";")[:-1]:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO campaign (singleton, kind, version, created, clean) "
                    "VALUES (1, ?, ?, ?, 1)",
                    (kind, SCHEMA_VERSION, time.time()),
                )
                db.execute("COMMIT")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
            try:
                os.link(spare, path)
            except FileExistsError:
                pass  # created by another process meanwhile: that one is opened
            except OSError:  # a file system without hard links
                if not os.path.lexists(path):
                    os.rename(spare, path)
        except (sqlite3.Error, OSError) as exc:
            raise CampaignError(
                f"cannot write the new journal {path} ({exc}): check that its directory is "
                "writable, or choose another --journal path"
            ) from None
        finally:
            for end in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    spare.with_name(spare.name + end).unlink(missing_ok=True)

    @staticmethod
    def _not_a_journal(path: Path, tables: set[str]) -> CampaignError:
        """Why the existing file ``path`` (whose SQLite tables are ``tables``) is refused."""
        if tables:
            return CampaignError(
                f"{path} is not an aicc journal (it is another SQLite database): "
                "choose another --journal path"
            )
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        if empty:
            return CampaignError(
                f"{path} is an empty file, not an aicc journal. If it was a campaign's "
                "journal, its record is gone and running on it would phone every row again: "
                "restore the journal (with its -wal file) from a copy. Otherwise delete it, "
                "or give a --journal path that does not exist to start a new campaign. "
                "Nothing was sent."
            )
        return CampaignError(
            f"{path} is an SQLite database that holds no table, not an aicc journal: "
            "delete it, or give a --journal path that does not exist to start a new "
            "campaign. Nothing was sent."
        )

    @staticmethod
    def _lock_for(db: sqlite3.Connection, path: Path, take: bool) -> RunLock | None:
        """Refuse a file that is not a journal, then (if ``take``) take the campaign lock:
        a file beside the journal, held until it is closed."""
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as exc:
            raise SQLiteJournal._refuse(path, exc) from None
        if "campaign" not in tables:
            raise SQLiteJournal._not_a_journal(path, tables)
        if not take:
            return None
        lock = SQLiteJournal._campaign_lock(path)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise SQLiteJournal._in_use(path) from None
        except OSError as exc:
            raise CampaignError(
                f"cannot write beside the journal {path} ({exc.strerror or exc}): check that "
                "its directory is writable, or choose another --journal path"
            ) from None
        return lock

    @staticmethod
    def _campaign_lock(path: Path) -> RunLock:
        return RunLock(path.with_name(path.name + ".lock"))

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            return sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CampaignError(
                f"cannot open the journal {path} ({exc}): check that its directory is "
                "writable, or choose another --journal path"
            ) from None

    @staticmethod
    def _connect_read_only(path: Path, wal_lost: bool) -> sqlite3.Connection:
        """A read-only connection. Without a ``-wal`` file, ``immutable``: SQLite then
        creates no ``-wal``/``-shm`` (an empty one would hide that the WAL was lost)."""
        if not path.is_file():
            raise CampaignError(f"no journal at {path}: give the path a campaign was run with")
        try:
            return sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=ro{'&immutable=1' if wal_lost else ''}",
                uri=True,
                timeout=_BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise CampaignError(f"cannot read the journal {path} ({exc})") from None

    @staticmethod
    def _in_use(path: Path) -> CampaignError:
        return CampaignError(
            f"the journal {path} is in use by another aicc process; wait for it to "
            "finish (or stop it) and try again"
        )

    @staticmethod
    def _refuse(path: Path, exc: sqlite3.Error) -> CampaignError | JournalError:
        if "locked" in str(exc) or "busy" in str(exc):
            return SQLiteJournal._in_use(path)
        if "readonly" in str(exc) or "unable to open" in str(exc):
            return CampaignError(
                f"cannot write the journal {path} ({exc}): check that the file and its "
                "directory are writable, or choose another --journal path"
            )
        if "not a database" in str(exc):
            return CampaignError(f"{path} is not an aicc journal ({exc})")
        return JournalError(f"the journal {path} could not be read ({exc})")

    @staticmethod
    def _check(
        db: sqlite3.Connection,
        path: Path,
        kind: str | None,
        wal_lost: bool,
        mode: Mode,
    ) -> str:
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            held = None
            if tables:
                held = db.execute("SELECT kind, version FROM campaign").fetchone()
            if held is not None:
                SQLiteJournal._checked_kind(path, kind, (str(held[0]), int(held[1])))
                if wal_lost and not _complete_without_wal(db, path):
                    raise SQLiteJournal._wal_lost(path)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise CampaignError(f"{path}: SQLite could not switch the journal to WAL mode")
            db.execute("PRAGMA synchronous=FULL")
            if mode == "record":
                if held is None:
                    raise CampaignError(f"{path} is an empty journal: no campaign was run")
                db.execute("BEGIN IMMEDIATE")
                try:
                    _add_commits(db)
                    _upgrade(db)
                    normalise_numbers(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return SQLiteJournal._checked_kind(path, kind, (str(held[0]), int(held[1])))
            db.execute("BEGIN IMMEDIATE")
            try:
                found = SQLiteJournal._create(db, path, kind)
                normalise_numbers(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            if not SQLiteJournal._checkpoint(db, "TRUNCATE"):  # 'not closed cleanly' in the file
                logger.warning(
                    "could not checkpoint %s while opening it (a reader held it): a copy "
                    "of the file without its -wal may not show that a run is under way",
                    path,
                )
        except sqlite3.Error as exc:
            raise SQLiteJournal._refuse(path, exc) from None
        return SQLiteJournal._checked_kind(path, kind, found)

    @staticmethod
    def _check_read_only(
        db: sqlite3.Connection, path: Path, kind: str | None, wal_lost: bool
    ) -> str:
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if "campaign" not in tables:
                raise SQLiteJournal._not_a_journal(path, tables)
            found = db.execute("SELECT kind, version FROM campaign").fetchone()
            if found is None:
                raise CampaignError(f"{path} is an empty journal: no campaign was run")
            checked = SQLiteJournal._checked_kind(path, kind, (str(found[0]), int(found[1])))
            if wal_lost and not _complete_without_wal(db, path):
                raise SQLiteJournal._wal_lost(path)
            _shadow(db)
        except sqlite3.Error as exc:
            raise SQLiteJournal._refuse(path, exc) from None
        return checked

    @staticmethod
    def _wal_lost(path: Path) -> CampaignError:
        wal = path.with_name(path.name + "-wal")
        return CampaignError(
            f"{path} was not closed cleanly (a run was stopped abruptly) and its "
            f"write-ahead log {wal} is missing: without it the journal may not know every "
            "row already sent. Put the -wal file back beside it (always copy a journal "
            "together with the files beside it: its -wal, and its .commits that proves "
            "a -wal was folded in rather than lost). Nothing was sent."
        )

    @staticmethod
    def _checked_kind(path: Path, kind: str | None, found: tuple[str, int]) -> str:
        return checked_kind(str(path), kind, found, SCHEMA_VERSION, UPGRADABLE)

    @staticmethod
    def _create(db: sqlite3.Connection, path: Path, kind: str | None) -> tuple[str, int]:
        for statement in _SCHEMA.split(";")[:-1]:
            db.execute(statement)
        _upgrade(db)
        found = db.execute("SELECT kind, version FROM campaign").fetchone()
        if found is None:
            raise CampaignError(
                f"{path} is an empty journal (no campaign was recorded in it): delete it, "
                "or give a --journal path that does not exist to start a new campaign"
            )
        _add_commits(db)
        db.execute("UPDATE campaign SET clean = 0")
        return str(found[0]), int(found[1])

    @staticmethod
    def _checkpoint(db: sqlite3.Connection, mode: str) -> bool:
        """Copy the WAL into the journal file; False if a reader kept it from finishing
        (tried a few times over about a second, as a report reads for milliseconds)."""
        for attempt in range(_CHECKPOINT_TRIES):
            busy = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0]
            if not busy:
                return True
            time.sleep(0.05 * (attempt + 1))
        return False

    async def close(self) -> None:
        """Close the file: a writer marks it closed cleanly and checkpoints the WAL into
        it first. Safe to call more than once."""
        if self._worker is None:
            return
        lock = self._lock
        if self.mode == "record":  # closed cleanly only if no campaign has it open
            lock = self._campaign_lock(self.path)
            try:
                lock.acquire(timeout=0)
            except (filelock.Timeout, OSError):
                lock = None
        folded = False
        try:
            if lock is not None:
                await self._write(lambda db: db.execute("UPDATE campaign SET clean = 1"))
                folded = await self._run(self._checkpoint, self._sqlite, "TRUNCATE")
        finally:
            try:
                await self._shutdown()
            finally:
                counted, self._counted = self._counted, None
                if counted is not None:
                    os.close(counted)
                    if folded:  # closed cleanly, WAL folded in: the file alone is whole
                        with contextlib.suppress(OSError):
                            _commits_file(self.path).unlink()
                if lock is not None:
                    lock.release()

    async def set_durable(self, durable: bool) -> None:
        """Sync every commit to disk (``True``, while sending) or only at checkpoints.

        Loading runs non-durable: a power cut can only lose rows not yet sent, which
        the next run loads again.
        """
        mode = "FULL" if durable else "NORMAL"
        await self._run(self._sqlite.execute, f"PRAGMA synchronous={mode}")

    async def commit(
        self,
        finished: Sequence[Finished],
        claim: int,
        after: int,
        *,
        once_per_number: bool,
        gate: Gate | None = None,
    ) -> Claim:
        """:meth:`Journal.commit <aicc_async.bulk.journal.Journal.commit>`; checkpoints
        the WAL now and then."""
        claimed = await super().commit(
            finished, claim, after, once_per_number=once_per_number, gate=gate
        )
        if time.monotonic() - self._checkpointed > _CHECKPOINT_EVERY:
            self._checkpointed = time.monotonic()
            await self._run(self._checkpoint, self._sqlite, "PASSIVE")
        return claimed

    async def checkpoint(self) -> None:
        """Copy the WAL's content into the journal file (the end of a run)."""
        await self._run(self._checkpoint, self._sqlite, "TRUNCATE")
