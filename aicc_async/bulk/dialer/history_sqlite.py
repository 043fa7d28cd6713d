"""The contact history in a SQLite file, which several processes on one machine (the
campaigns and their ``aicc`` commands) may write at once.

WAL mode, a busy timeout, one short ``BEGIN IMMEDIATE`` transaction per batch.
Commits are not synced one by one (``synchronous=NORMAL``, a checkpoint every
:data:`_CHECKPOINT_PAGES` pages): an entry recorded before its call goes out survives
the process being killed, and a power cut can lose only the last entries, which a
campaign records again from its journal when it runs next (see
:meth:`~aicc_async.bulk.campaign.run.Campaign.run`). Entries are keyed by campaign,
row and attempt, so a batch's land together; only the number index takes a page per
call. (Keyed by a digest, synced per commit and checkpointed every 1,000 pages,
SQLite's default, an admission cost 28 µs a call; now about 12.)

Only a path where nothing exists becomes a history: the file is made complete under a
temporary name beside it and then linked into place, so no process ever sees a
half-made history, and two processes creating one at once both end up with the same
file. Any other file is refused: an empty one, a campaign journal, another SQLite
database, a history of another format version.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from aicc_async.bulk.dialer.history import (
    FORMAT,
    NUMBERS_PER_SELECT,
    SCHEMA_VERSION,
    ContactHistory,
    HistoryEntry,
    check_version,
)
from aicc_async.bulk.journal.sql import marks
from aicc_async.errors import CampaignError, JournalError

__all__ = ["SQLiteHistory"]

T = TypeVar("T")

_BUSY_TIMEOUT = 10.0  # seconds a write waits for another writer
#: Pages of write-ahead log between two checkpoints (at most ~40 MiB of log).
_CHECKPOINT_PAGES = 10_000
_HEADER = b"SQLite format 3\0"

_SCHEMA = [
    """CREATE TABLE contact_history (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        format TEXT NOT NULL,
        version INTEGER NOT NULL,
        created REAL NOT NULL
    )""",
    "CREATE TABLE campaigns (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # Keyed by campaign then row: a batch's entries land together, not each on a page
    # of its own (a digest key made every commit write pages all over the file).
    """CREATE TABLE contacts (
        campaign INTEGER NOT NULL REFERENCES campaigns (id),
        key TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        number TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (campaign, key, attempt)
    ) WITHOUT ROWID""",
    "CREATE INDEX contacts_by_number ON contacts (number, at)",
]

_INSERT = (
    "INSERT INTO contacts (campaign, key, attempt, number, at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)


_USE_ANOTHER = (
    "give --contact-history the path of a contact history, or one where no file exists "
    "yet (it is created there)"
)


class SQLiteHistory(ContactHistory):
    """A contact history file. Create with :func:`~.history.open_history`."""

    _errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def __init__(self, path: Path, db: sqlite3.Connection, clock: Callable[[], float]) -> None:
        super().__init__(str(path), clock)
        self.path = path
        self._db = db
        self._campaigns: dict[str, int] = {}  # campaign name -> its number in the file

    @classmethod
    async def open(cls, location: str, clock: Callable[[], float]) -> SQLiteHistory:
        """Open the history file at ``location``, creating it if nothing exists there."""
        path = Path(location)
        db = await asyncio.to_thread(cls._open, path)
        return cls(path, db, clock)

    @property
    def files(self) -> tuple[Path, ...]:
        """The history and the files SQLite keeps beside it while it is open."""
        return (self.path, *(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm")))

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def _open(cls, path: Path) -> sqlite3.Connection:
        if not os.path.lexists(path):
            cls._create(path)
        cls._check_file(path)
        try:
            db = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CampaignError(f"cannot open the contact history {path} ({exc})") from None
        try:
            cls._check(db, path)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _check_file(path: Path) -> None:
        """Refuse what is plainly not a history file, before SQLite touches it."""
        if not path.is_file():
            raise CampaignError(f"{path} is not a file, so not a contact history: {_USE_ANOTHER}")
        try:
            with path.open("rb") as f:
                header = f.read(len(_HEADER))
        except OSError as exc:
            raise CampaignError(
                f"cannot read the contact history {path} ({exc.strerror or exc})"
            ) from None
        if not header:
            raise CampaignError(
                f"{path} is an empty file, not a contact history (a history is never "
                f"empty; its calls may have been lost): {_USE_ANOTHER}"
            )
        if header != _HEADER:
            raise CampaignError(
                f"{path} is not a contact history (not a SQLite database): {_USE_ANOTHER}"
            )

    @staticmethod
    def _check(db: sqlite3.Connection, path: Path) -> None:
        """Refuse a SQLite file that is not a history of this format; set it up."""
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if "contact_history" not in tables:
                what = "a campaign journal" if "campaign" in tables else "another SQLite database"
                raise CampaignError(f"{path} is {what}, not a contact history: {_USE_ANOTHER}")
            found = db.execute("SELECT format, version FROM contact_history").fetchone()
            check_version(str(path), found)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise CampaignError(f"{path}: SQLite could not switch the history to WAL mode")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise JournalError(
                    f"the contact history {path} stayed locked by another process for "
                    f"{_BUSY_TIMEOUT:g} s ({exc}); try again"
                ) from None
            raise CampaignError(
                f"{path} could not be read as a contact history ({exc}): {_USE_ANOTHER}"
            ) from None

    @staticmethod
    def _create(path: Path) -> None:
        """Make a complete history under a temporary name beside ``path`` and link it
        there; a history another process linked there first is kept."""
        if not path.parent.is_dir():
            raise CampaignError(
                f"cannot create the contact history {path}: {path.parent} does not exist"
            )
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.creating")
        try:
            try:
                with contextlib.closing(sqlite3.connect(temporary, isolation_level=None)) as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("BEGIN IMMEDIATE")
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO contact_history (singleton, format, version, created) "
                        "VALUES (1, ?, ?, ?)",
                        (FORMAT, SCHEMA_VERSION, time.time()),
                    )
                    db.execute("COMMIT")
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process created it meantime: open theirs
            except (OSError, sqlite3.Error) as exc:
                raise CampaignError(
                    f"cannot create the contact history {path} ({exc}): check that its "
                    "directory is writable"
                ) from None
        finally:
            for leftover in (temporary, *(Path(f"{temporary}{end}") for end in ("-wal", "-shm"))):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    # -- reading and writing (on the worker thread) ----------------------------------------

    def _write(self, fn: Callable[[], T]) -> T:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # SQLite's one writer at a time, taken now
        try:
            result = fn()
        except BaseException:
            db.execute("ROLLBACK")
            self._campaigns.clear()  # a campaign numbered in it may be gone again
            raise
        db.execute("COMMIT")
        return result

    def _campaign(self, name: str, *, create: bool) -> int | None:
        """The number the history gives campaign ``name`` (inside a write; ``create``:
        give it one if it has none)."""
        found = self._campaigns.get(name)
        if found is not None:
            return found
        if create:
            self._db.execute(
                "INSERT INTO campaigns (name) VALUES (?) ON CONFLICT DO NOTHING", (name,)
            )
        row = self._db.execute("SELECT id FROM campaigns WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        self._campaigns[name] = int(row[0])
        return int(row[0])

    def _insert(self, entries: Sequence[HistoryEntry]) -> int:
        numbered = {
            name: self._campaign(name, create=True) for name in {e.campaign for e in entries}
        }
        rows = [(numbered[e.campaign], e.key, e.attempt, e.number, e.at) for e in entries]
        return self._db.executemany(_INSERT, rows).rowcount if rows else 0

    def _known(self, entries: Sequence[HistoryEntry]) -> dict[tuple[str, str, int], str]:
        found: dict[tuple[str, str, int], str] = {}
        wanted = {entry.slot for entry in entries}
        for name in {entry.campaign for entry in entries}:
            campaign = self._campaign(name, create=False)
            if campaign is None:
                continue  # a campaign the history has no entry of
            keys = sorted({entry.key for entry in entries if entry.campaign == name})
            for start in range(0, len(keys), NUMBERS_PER_SELECT):
                chunk = keys[start : start + NUMBERS_PER_SELECT]
                for key, attempt, number in self._db.execute(
                    "SELECT key, attempt, number FROM contacts WHERE campaign = ? "  # noqa: S608 - placeholders
                    f"AND key IN ({marks(len(chunk))})",
                    (campaign, *chunk),
                ):
                    slot = (name, str(key), int(attempt))
                    if slot in wanted:
                        found[slot] = str(number)
        return found

    def _count(self, numbers: Sequence[str], since: float) -> dict[str, int]:
        found = self._db.execute(
            f"SELECT number, count(*) FROM contacts WHERE number IN ({marks(len(numbers))}) "  # noqa: S608 - placeholders
            "AND at > ? GROUP BY number",
            (*numbers, since),
        )
        return {str(number): int(calls) for number, calls in found}

    def _close_db(self) -> None:
        self._db.close()
