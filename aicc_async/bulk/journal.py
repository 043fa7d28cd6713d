"""The campaign journal: one SQLite file (WAL) holding every row's key, request and state.

A row moves ``pending -> sending -> done | failed | unknown``; rows that leave the
input become ``withdrawn``, and a voice row whose number was already used becomes
``duplicate``. The ``sending`` mark is committed (``synchronous=FULL``) before the
request goes out, so after a crash a row that may have been sent never looks unsent.

A journal belongs to one target (base URL, app key, sandbox or not) and sends only
rows of the input it was last given in full. One process at a time may run a
campaign on it (a lock file beside it); readers (``aicc report``) open it read-only
and may do so while it runs. The ``-wal`` file is part of the journal until the
journal is closed: a journal not closed cleanly whose ``-wal`` is missing is
refused. SQLite calls run on one worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import filelock

from aicc_async.errors import CampaignError, JournalError

__all__ = [
    "Claim",
    "Claimed",
    "Finished",
    "Journal",
    "LoadedRow",
    "Outcome",
    "Outcomes",
    "Problem",
    "StateCounts",
    "Target",
]

T = TypeVar("T")
logger = logging.getLogger("aicc_async")

State = Literal["pending", "sending", "done", "failed", "unknown", "withdrawn", "duplicate"]

SCHEMA_VERSION = 2
#: ``code`` of a row whose input could not become a request (it was never sent).
INVALID = "invalid"
#: ``code`` of a row that was in flight when a run stopped.
INTERRUPTED = "interrupted"
#: ``code`` of a row left out of the latest input (it was never sent).
WITHDRAWN = "withdrawn"
#: ``code`` of a row whose number another row of the campaign already used.
DUPLICATE = "duplicate"
_KEYS_PER_SELECT = 500  # below SQLite's oldest limit on bound parameters (999)
_CHECKPOINT_EVERY = 30.0  # seconds between checkpoints while a campaign runs
_CHECKPOINT_TRIES = 5
_BUSY_TIMEOUT = 10.0  # seconds a write waits for another writer (aicc listen)

_SCHEMA = """
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
    clean INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rows (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN
        ('pending', 'sending', 'done', 'failed', 'unknown', 'withdrawn', 'duplicate')),
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
    release_time TEXT
);
CREATE TABLE IF NOT EXISTS early_outcomes (
    reference TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    release_reason TEXT,
    talk_duration INTEGER,
    release_time TEXT,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_by_number ON rows (number) WHERE number IS NOT NULL;
CREATE INDEX IF NOT EXISTS rows_by_reference ON rows (reference) WHERE reference IS NOT NULL;
"""

#: Rows whose number counts as used: they were (or are being) sent.
_USED = "(state IN ('sending', 'done', 'unknown') OR (state = 'failed' AND code IS NOT 'invalid'))"


@attrs.frozen
class StateCounts:
    """How many rows are in each state."""

    pending: int = 0
    sending: int = 0
    done: int = 0
    failed: int = 0
    unknown: int = 0
    withdrawn: int = 0
    """Left out of the latest input before they were sent: never phoned."""
    duplicate: int = 0
    """Not sent: another row of the campaign already used the number."""

    @property
    def total(self) -> int:
        """All rows."""
        return sum(attrs.astuple(self))

    @property
    def finished(self) -> int:
        """Rows with a final state (all but pending and sending)."""
        return self.total - self.pending - self.sending

    @property
    def settled(self) -> bool:
        """True when nothing is left to act on: every row is done, withdrawn or duplicate."""
        return self.done + self.withdrawn + self.duplicate == self.total

    def added(self, states: Iterable[State]) -> StateCounts:
        """These counts with one more row per item of ``states``."""
        counts = attrs.asdict(self)
        for state in states:
            counts[state] += 1
        return StateCounts(**counts)

    def moved(self, source: State, targets: Iterable[State]) -> StateCounts:
        """These counts after one row per item of ``targets`` left ``source`` for it."""
        counts = attrs.asdict(self)
        for target in targets:
            counts[source] -= 1
            counts[target] += 1
        return StateCounts(**counts)


@attrs.frozen
class Problem:
    """Rows that failed (or whose outcome is unknown) with one code."""

    state: State
    code: str
    count: int
    example: str
    """The description of one such row."""


@attrs.frozen
class Target:
    """Where a campaign sends: recorded in its journal on the first run, checked on every
    later one. The app secret is never part of it."""

    base_url: str
    app_key: str
    sandbox: bool = False

    def describe(self) -> str:
        """The target as messages name it."""
        if self.sandbox:
            return "the sandbox (FakeAICC)"
        return f"{self.base_url} (app key {self.app_key})"


@attrs.frozen
class LoadedRow:
    """One input row as the journal stores it."""

    key: str
    fingerprint: str
    state: State
    payload: str
    number: str | None = None
    code: str | None = None
    description: str | None = None


@attrs.frozen
class Claimed:
    """A row marked ``sending``: send its payload now."""

    seq: int
    key: str
    payload: str


@attrs.frozen
class Claim:
    """What one commit claimed: the rows to send, how many rows it marked ``duplicate``
    instead, and the last ``seq`` it looked at (the next claim starts after it)."""

    rows: list[Claimed]
    duplicates: int
    cursor: int


@attrs.frozen
class Finished:
    """The outcome of one claimed row, to be committed."""

    seq: int
    state: State
    code: str | None = None
    description: str | None = None
    reference: str | None = None


def _transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(db)`` inside ``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` if it raises)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _wal_header(path: Path) -> bool:
    """True when the SQLite file at ``path`` says it is in WAL mode."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return len(header) == 20 and header.startswith(b"SQLite format 3\0") and header[18] == 2


Mode = Literal["run", "read", "record"]
"""``run``: send (one process at a time); ``read``: read without writing a byte;
``record``: record call outcomes only, beside a run or after it."""


@attrs.frozen
class Outcome:
    """What a release event said about one row's call."""

    answered: bool
    release_reason: str | None = None
    talk_duration: int | None = None
    release_time: str | None = None
    """ISO 8601, tenant local time, when AICC sent one."""


@attrs.frozen
class Outcomes:
    """Call outcomes of a campaign's ``done`` rows."""

    answered: int = 0
    not_answered: int = 0
    awaiting: int = 0
    """Done rows whose release event has not arrived (yet)."""
    reasons: tuple[tuple[str, int], ...] = ()
    """(release reason code, rows), most rows first."""


class Journal:
    """An open journal file. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        db: sqlite3.Connection,
        kind: str,
        mode: Mode,
        lock: filelock.BaseFileLock | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.mode = mode
        self.read_only = mode == "read"
        self._db = db
        self._lock = lock
        self._checkpointed = time.monotonic()
        self._accepted: int | None = None  # the accepted load before the one under way
        self._worker: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aicc-journal")
        )

    @property
    def files(self) -> tuple[Path, ...]:
        """The journal and the files SQLite and aicc keep beside it."""
        return (
            self.path,
            *(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm", ".lock")),
        )

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, kind: str | None, *, mode: Mode = "run") -> Journal:
        """Open ``path``: ``mode="run"`` to send (created for ``kind`` when missing;
        ``kind=None``: it must exist), ``mode="read"`` to read it without writing a byte,
        ``mode="record"`` to record call outcomes in an existing journal, beside a
        campaign running on it or not.

        Raises ``CampaignError`` if it cannot be created or opened, is not a journal,
        holds another kind of campaign, is in use by another campaign process, or was
        not closed cleanly and lost its ``-wal`` file; ``JournalError`` if SQLite cannot
        read it.
        """
        if mode == "read":
            wal_lost = _wal_header(path) and not path.with_name(path.name + "-wal").exists()
            db = await asyncio.to_thread(cls._connect_read_only, path, wal_lost)
            try:
                found = await asyncio.to_thread(cls._check_read_only, db, path, kind, wal_lost)
            except BaseException:
                db.close()
                raise
            return cls(path, db, found, mode)
        await asyncio.to_thread(cls._check_path, path, kind if mode == "run" else None)
        wal_kept = path.with_name(path.name + "-wal").exists()
        in_wal_mode = _wal_header(path)
        db = await asyncio.to_thread(cls._connect, path)
        lock: filelock.BaseFileLock | None = None
        try:
            lock = await asyncio.to_thread(cls._lock_for, db, path, mode == "run")
            found = await asyncio.to_thread(
                cls._check, db, path, kind, in_wal_mode and not wal_kept, mode
            )
        except BaseException:
            db.close()
            if lock is not None:
                lock.release()
            raise
        return cls(path, db, found, mode, lock)

    @staticmethod
    def _check_path(path: Path, kind: str | None) -> None:
        if kind is None and not path.is_file():
            raise CampaignError(f"no journal at {path}: give the path a campaign was run with")
        if not path.parent.is_dir():
            raise CampaignError(f"cannot create the journal {path}: {path.parent} does not exist")

    @staticmethod
    def _lock_for(db: sqlite3.Connection, path: Path, take: bool) -> filelock.BaseFileLock | None:
        """Refuse a file that is not a journal, then (if ``take``) take the campaign lock:
        a file beside the journal, held until it is closed."""
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error as exc:
            raise Journal._refuse(path, exc) from None
        if tables and "campaign" not in tables:
            raise CampaignError(
                f"{path} is not an aicc journal (it is another SQLite database): "
                "choose another --journal path"
            )
        if not take:
            return None
        lock = Journal._campaign_lock(path)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise Journal._in_use(path) from None
        except OSError as exc:
            raise CampaignError(
                f"cannot write beside the journal {path} ({exc.strerror or exc}): check that "
                "its directory is writable, or choose another --journal path"
            ) from None
        return lock

    @staticmethod
    def _campaign_lock(path: Path) -> filelock.BaseFileLock:
        return filelock.FileLock(
            path.with_name(path.name + ".lock"), is_singleton=False, thread_local=False
        )

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
    def _refuse(path: Path, exc: sqlite3.Error) -> CampaignError:
        if "locked" in str(exc) or "busy" in str(exc):
            return Journal._in_use(path)
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
        db: sqlite3.Connection, path: Path, kind: str | None, wal_lost: bool, mode: Mode
    ) -> str:
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            held = None
            if tables:
                held = db.execute("SELECT kind, version FROM campaign").fetchone()
            if held is not None:
                Journal._checked_kind(path, kind, (str(held[0]), int(held[1])))
                if wal_lost and not db.execute("SELECT clean FROM campaign").fetchone()[0]:
                    raise Journal._wal_lost(path)
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise CampaignError(f"{path}: SQLite could not switch the journal to WAL mode")
            db.execute("PRAGMA synchronous=FULL")
            if mode == "record":
                if held is None:
                    raise CampaignError(f"{path} is an empty journal: no campaign was run")
                return Journal._checked_kind(path, kind, (str(held[0]), int(held[1])))
            found = _transaction(db, lambda db: Journal._create(db, path, kind))
            if not Journal._checkpoint(db, "TRUNCATE"):  # 'not closed cleanly' in the file
                logger.warning(
                    "could not checkpoint %s while opening it (a reader held it): a copy "
                    "of the file without its -wal may not show that a run is under way",
                    path,
                )
        except sqlite3.Error as exc:
            raise Journal._refuse(path, exc) from None
        return Journal._checked_kind(path, kind, found)

    @staticmethod
    def _check_read_only(
        db: sqlite3.Connection, path: Path, kind: str | None, wal_lost: bool
    ) -> str:
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if "campaign" not in tables:
                raise CampaignError(f"{path} is not an aicc journal")
            found = db.execute("SELECT kind, version FROM campaign").fetchone()
            if found is None:
                raise CampaignError(f"{path} is an empty journal: no campaign was run")
            checked = Journal._checked_kind(path, kind, (str(found[0]), int(found[1])))
            if wal_lost and not db.execute("SELECT clean FROM campaign").fetchone()[0]:
                raise Journal._wal_lost(path)
        except sqlite3.Error as exc:
            raise Journal._refuse(path, exc) from None
        return checked

    @staticmethod
    def _wal_lost(path: Path) -> CampaignError:
        wal = path.with_name(path.name + "-wal")
        return CampaignError(
            f"{path} was not closed cleanly (a run was stopped abruptly) and its "
            f"write-ahead log {wal} is missing: without it the journal may not know every "
            "row already sent. Put the -wal file back beside it (always copy a journal "
            "together with its -wal file). Nothing was sent."
        )

    @staticmethod
    def _checked_kind(path: Path, kind: str | None, found: tuple[str, int]) -> str:
        found_kind, version = found
        if version != SCHEMA_VERSION:
            raise CampaignError(
                f"{path} was written by another version of aicc-async (journal format "
                f"{version}, this one reads {SCHEMA_VERSION})"
            )
        if kind is not None and found_kind != kind:
            raise CampaignError(
                f"{path} holds a {found_kind} campaign, not {kind}: use the command that "
                "created it, or another --journal path"
            )
        return found_kind

    @staticmethod
    def _create(db: sqlite3.Connection, path: Path, kind: str | None) -> tuple[str, int]:
        for statement in _SCHEMA.split(";")[:-1]:
            db.execute(statement)
        found = db.execute("SELECT kind, version FROM campaign").fetchone()
        if found is not None:
            db.execute("UPDATE campaign SET clean = 0")
            return str(found[0]), int(found[1])
        if kind is None:
            raise CampaignError(f"{path} is an empty journal: no campaign was run")
        db.execute(
            "INSERT INTO campaign (singleton, kind, version, created) VALUES (1, ?, ?, ?)",
            (kind, SCHEMA_VERSION, time.time()),
        )
        return kind, SCHEMA_VERSION

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
        worker = self._worker
        if worker is None:
            return
        lock = self._lock
        if self.mode == "record":  # closed cleanly only if no campaign has it open
            lock = self._campaign_lock(self.path)
            try:
                lock.acquire(timeout=0)
            except (filelock.Timeout, OSError):
                lock = None
        try:
            if lock is not None:
                await self._write(lambda db: db.execute("UPDATE campaign SET clean = 1"))
                await self._run(self._checkpoint, self._db, "TRUNCATE")
        finally:
            await self._run(self._db.close)
            worker.shutdown()
            self._worker = None
            if lock is not None:
                lock.release()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._worker is None:
            raise CampaignError(f"the journal {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker, fn, *args)
        except sqlite3.Error as exc:
            raise JournalError(
                f"the journal {self.path} could not be read or written ({exc}); the rows "
                "it recorded so far are kept"
            ) from None

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(db)`` in one write transaction on the journal's thread."""
        if self.read_only:
            raise CampaignError(f"the journal {self.path} is open read-only")
        return await self._run(_transaction, self._db, fn)

    # -- binding ------------------------------------------------------------------------

    async def bind(self, target: Target) -> None:
        """Record ``target`` as this journal's on first use; raise ``CampaignError`` if
        the journal already belongs to another one."""

        def work(db: sqlite3.Connection) -> None:
            found = db.execute("SELECT target FROM campaign").fetchone()[0]
            if found is None:
                db.execute("UPDATE campaign SET target = ?", (self.dumps(attrs.asdict(target)),))
                return
            bound = Target(**json.loads(found))
            if bound == target:
                return
            if db.execute(f"SELECT 1 FROM rows WHERE {_USED} LIMIT 1").fetchone() is None:  # noqa: S608 - constant
                # Nothing was ever sent: the journal may still move to another target.
                db.execute("UPDATE campaign SET target = ?", (self.dumps(attrs.asdict(target)),))
                return
            raise CampaignError(
                f"the journal {self.path} belongs to a campaign sent to "
                f"{bound.describe()}, not {target.describe()}: use a new --journal for "
                "this target. Nothing was sent."
            )

        await self._write(work)

    async def source(self) -> str | None:
        """The input file the latest load named, if any."""
        return await self._run(
            lambda: self._db.execute("SELECT source FROM campaign").fetchone()[0]
        )

    # -- loading input ------------------------------------------------------------------

    async def begin_load(
        self, source: str | None = None, *, stream: bool = False
    ) -> tuple[int, bool]:
        """Number a new pass over the input (see :meth:`load`), read from the file
        ``source`` if any; returns (pass, streams).

        Rows that a pass never accepted added and never sent are dropped first: they
        are not the campaign's input. Until :meth:`end_load` accepts the pass, nothing
        can be sent; except, when ``stream`` is asked and the journal holds no rows yet,
        the rows of this pass can be sent as they are loaded (``streams`` is then
        True): a new campaign has no earlier input whose rows the new one could leave out.
        """

        def work(db: sqlite3.Connection) -> tuple[int, bool]:
            self._accepted = db.execute("SELECT current_load FROM campaign").fetchone()[0]
            accepted = db.execute("SELECT accepted FROM campaign").fetchone()[0]
            db.execute("DELETE FROM rows WHERE first_load > ? AND sends = 0", (accepted or 0,))
            db.execute("UPDATE campaign SET source = coalesce(?, source)", (source,))
            empty = db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is None
            db.execute("UPDATE campaign SET loads = loads + 1, current_load = NULL")
            load = int(db.execute("SELECT loads FROM campaign").fetchone()[0])
            streams = stream and empty
            if streams:
                db.execute("UPDATE campaign SET current_load = ?", (load,))
            return load, streams

        return await self._write(work)

    async def load(self, rows: Sequence[LoadedRow], load: int) -> tuple[list[State], int, int]:
        """Add ``rows`` of input pass ``load`` in one transaction; returns (added,
        replaced, known): the states of the rows new to the journal, how many replaced
        an unsent row of the same key, and how many had a key the journal already held.

        A key already in the journal with the same fingerprint is kept (a ``withdrawn``
        row becomes ``pending`` again). With a different fingerprint it
        is replaced if it was never sent (``pending``, ``withdrawn``, ``duplicate``, or
        ``failed`` as invalid input). Otherwise, or when this pass already gave the key
        another row, ``CampaignError`` is raised and nothing of ``rows`` is written (the
        caller says what that means for sending).
        """
        return await self._write(lambda db: self._load(db, rows, load))

    def _load(
        self, db: sqlite3.Connection, rows: Sequence[LoadedRow], load: int
    ) -> tuple[list[State], int, int]:
        known: dict[str, tuple[str, str, str | None, int]] = {}
        keys = [row.key for row in rows]
        for i in range(0, len(keys), _KEYS_PER_SELECT):
            part = keys[i : i + _KEYS_PER_SELECT]
            marks = ",".join("?" * len(part))
            for key, fingerprint, state, code, loaded in db.execute(
                f"SELECT key, fingerprint, state, code, loaded FROM rows WHERE key IN ({marks})",  # noqa: S608 - only '?' marks
                part,
            ):
                known[key] = (fingerprint, state, code, loaded)
        now = time.time()
        added: list[tuple[Any, ...]] = []
        replaced: list[tuple[Any, ...]] = []
        seen: list[tuple[int, str]] = []
        revived: list[tuple[float, str]] = []
        for row in rows:
            values = (
                row.fingerprint,
                row.state,
                row.payload,
                row.number,
                row.code,
                row.description,
                load,
                now,
            )
            old = known.get(row.key)
            if old is None:
                added.append((row.key, *values, load))
                known[row.key] = (row.fingerprint, row.state, row.code, load)
                continue
            fingerprint, state, code, loaded = old
            if loaded == load:
                if fingerprint == row.fingerprint:
                    continue  # the same row twice in one input: it is one row
                raise CampaignError(
                    f"the input gives key {row.key!r} to two different rows: each row needs "
                    "its own id."
                )
            if fingerprint == row.fingerprint:
                seen.append((load, row.key))
                known[row.key] = (fingerprint, state, code, load)
                if state == "withdrawn":  # back in the input (a duplicate stays one)
                    revived.append((now, row.key))
                continue
            if state not in ("pending", "withdrawn", "duplicate") and not (
                state == "failed" and code == INVALID
            ):
                raise CampaignError(
                    f"the input's row for key {row.key!r} differs from the one this journal "
                    f"holds (state {state}). A key must always name the same row: restore "
                    "the row, give it a new id, or use a new --journal for a new campaign."
                )
            replaced.append((*values, row.key))
            known[row.key] = (row.fingerprint, row.state, row.code, load)
        db.executemany(
            "INSERT INTO rows (key, fingerprint, state, payload, number, code, description, "
            "loaded, updated, first_load) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            added,
        )
        db.executemany(
            "UPDATE rows SET fingerprint = ?, state = ?, payload = ?, number = ?, code = ?, "
            "description = ?, loaded = ?, updated = ?, reference = NULL WHERE key = ?",
            replaced,
        )
        db.executemany("UPDATE rows SET loaded = ? WHERE key = ?", seen)
        db.executemany(
            "UPDATE rows SET state = 'pending', code = NULL, description = NULL, updated = ? "
            "WHERE key = ?",
            revived,
        )
        return [a[2] for a in added], len(replaced), len(seen) + len(replaced)

    async def end_load(self, load: int, known: int, source: str | None) -> int:
        """Accept input pass ``load`` (complete; ``known`` of its rows had keys the journal
        already held; read from the file ``source``, if any): rows not in it that were
        never sent become ``withdrawn``. Returns how many.

        Raises ``CampaignError`` (and removes the rows this pass added) when the journal
        held rows before and the input has no key in common with them.
        """

        def work(db: sqlite3.Connection) -> int:
            earlier = db.execute(
                "SELECT count(*) FROM rows WHERE first_load < ?", (load,)
            ).fetchone()[0]
            if earlier and not known:
                db.execute("DELETE FROM rows WHERE first_load = ?", (load,))
                db.execute("UPDATE campaign SET current_load = ?", (self._accepted,))
                return -1
            db.execute(
                "UPDATE campaign SET current_load = ?, accepted = ?, source = coalesce(?, source)",
                (load, load, source),
            )
            return int(
                db.execute(
                    "UPDATE rows SET state = 'withdrawn', code = ?, description = ?, "
                    "updated = ? WHERE state IN ('pending', 'duplicate') AND loaded != ?",
                    (WITHDRAWN, "not in the latest input; never sent", time.time(), load),
                ).rowcount
            )

        withdrawn = await self._write(work)
        if withdrawn < 0:
            raise CampaignError(
                f"this input has no row in common with the campaign in {self.path}: it looks "
                "like another file. Use a new --journal for a new campaign. Nothing was sent."
            )
        return withdrawn

    async def current_load(self) -> int | None:
        """The input pass the next run sends from (``None``: no complete load yet)."""
        found = await self._run(
            lambda: self._db.execute("SELECT current_load FROM campaign").fetchone()[0]
        )
        return None if found is None else int(found)

    def set_durable(self, durable: bool) -> Any:
        """Sync every commit to disk (``True``, while sending) or only at checkpoints.

        Loading runs non-durable: a power cut can only lose rows not yet sent, which
        the next run loads again.
        """
        mode = "FULL" if durable else "NORMAL"
        return self._run(self._db.execute, f"PRAGMA synchronous={mode}")

    # -- sending ------------------------------------------------------------------------

    async def requeue(self, *, unknown: bool, failed: bool, duplicate: bool = False) -> StateCounts:
        """Turn ``unknown`` (if asked), sent-but-``failed`` (if asked) and ``duplicate``
        (if asked) rows of the current input back into ``pending``; returns the counts
        afterwards."""

        def work(db: sqlite3.Connection) -> StateCounts:
            current = "loaded = (SELECT current_load FROM campaign)"
            if duplicate:
                db.execute(
                    f"UPDATE rows SET state = 'pending', code = NULL, description = NULL, "  # noqa: S608 - constant
                    f"updated = ? WHERE state = 'duplicate' AND {current}",
                    (time.time(),),
                )
            if unknown:
                db.execute(
                    f"UPDATE rows SET state = 'pending', updated = ? "  # noqa: S608 - constant
                    f"WHERE state = 'unknown' AND {current}",
                    (time.time(),),
                )
            if failed:
                db.execute(
                    f"UPDATE rows SET state = 'pending', updated = ? "  # noqa: S608 - constant
                    f"WHERE state = 'failed' AND code IS NOT ? AND {current}",
                    (time.time(), INVALID),
                )
            return self._counts(db)

        return await self._write(work)

    async def recover(self, *, idempotent: bool) -> int:
        """Settle rows left ``sending`` by a run that stopped without recording them.

        Non-idempotent campaigns mark them ``unknown`` (they may have been processed);
        idempotent ones put them back to ``pending``. Returns how many there were.
        """
        now = time.time()
        sql = "UPDATE rows SET state = 'pending', updated = ? WHERE state = 'sending'"
        args: tuple[Any, ...] = (now,)
        if not idempotent:
            sql = (
                "UPDATE rows SET state = 'unknown', code = ?, description = ?, updated = ? "
                "WHERE state = 'sending'"
            )
            args = (
                INTERRUPTED,
                "was being sent when a run stopped; AICC may have processed it",
                now,
            )
        return await self._write(lambda db: db.execute(sql, args).rowcount)

    async def commit(
        self, finished: Sequence[Finished], claim: int, after: int, *, once_per_number: bool
    ) -> Claim:
        """In one transaction: record ``finished`` outcomes, then mark up to ``claim``
        ``pending`` rows of the current input with ``seq > after`` as ``sending``.

        With ``once_per_number``, a row whose number another row already used is marked
        ``duplicate`` instead of being claimed. Checkpoints the WAL now and then.
        """
        claimed = await self._write(
            lambda db: self._commit(db, finished, claim, after, once_per_number)
        )
        if time.monotonic() - self._checkpointed > _CHECKPOINT_EVERY:
            self._checkpointed = time.monotonic()
            await self._run(self._checkpoint, self._db, "PASSIVE")
        return claimed

    @staticmethod
    def _commit(
        db: sqlite3.Connection,
        finished: Sequence[Finished],
        claim: int,
        after: int,
        once_per_number: bool,
    ) -> Claim:
        now = time.time()
        db.executemany(
            "UPDATE rows SET state = ?, code = ?, description = ?, reference = ?, updated = ? "
            "WHERE seq = ?",
            [(f.state, f.code, f.description, f.reference, now, f.seq) for f in finished],
        )
        if any(f.reference is not None for f in finished):
            Journal._adopt_early_outcomes(db)
        claimed: list[Claimed] = []
        duplicates: list[tuple[str, float, int]] = []
        taken: dict[str, str] = {}  # number -> key of the row that used it
        while len(claimed) < claim:
            found = db.execute(
                "SELECT seq, key, payload, number FROM rows WHERE state = 'pending' "
                "AND loaded = (SELECT current_load FROM campaign) AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, claim - len(claimed)),
            ).fetchall()
            if not found:
                break
            if once_per_number:
                Journal._numbers_used(db, [r[3] for r in found if r[3] not in taken], taken)
            for seq, key, payload, number in found:
                after = seq
                if once_per_number and number is not None:
                    owner = taken.setdefault(number, key)
                    if owner != key:
                        duplicates.append((f"number already used by row {owner!r}", now, seq))
                        continue
                claimed.append(Claimed(seq, key, payload))
        db.executemany(
            "UPDATE rows SET state = 'duplicate', code = ?, description = ?, "
            "updated = ? WHERE seq = ?",
            [(DUPLICATE, *d) for d in duplicates],
        )
        if claimed:
            marks = ",".join("?" * len(claimed))
            db.execute(
                "UPDATE rows SET state = 'sending', sends = sends + 1, updated = ? "  # noqa: S608 - only '?' marks
                f"WHERE seq IN ({marks})",
                (now, *(c.seq for c in claimed)),
            )
        return Claim(claimed, len(duplicates), after)

    @staticmethod
    def _numbers_used(
        db: sqlite3.Connection, numbers: Sequence[str | None], taken: dict[str, str]
    ) -> None:
        """Add to ``taken`` which of ``numbers`` a row already used (number -> its key)."""
        wanted = sorted({n for n in numbers if n is not None})
        for i in range(0, len(wanted), _KEYS_PER_SELECT):
            part = wanted[i : i + _KEYS_PER_SELECT]
            marks = ",".join("?" * len(part))
            for number, key in db.execute(
                f"SELECT number, min(key) FROM rows WHERE number IN ({marks}) AND {_USED} "  # noqa: S608 - only '?' marks
                "GROUP BY number",
                part,
            ):
                taken.setdefault(number, key)

    async def checkpoint(self) -> None:
        """Copy the WAL's content into the journal file (the end of a run)."""
        await self._run(self._checkpoint, self._db, "TRUNCATE")

    # -- reporting ----------------------------------------------------------------------

    async def counts(self) -> StateCounts:
        """How many rows are in each state."""
        return await self._run(self._counts, self._db)

    @staticmethod
    def _counts(db: sqlite3.Connection) -> StateCounts:
        found = dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
        return StateCounts(**found)

    async def target(self) -> Target | None:
        """The target this journal is bound to (``None`` before its first run)."""
        found = await self._run(
            lambda: self._db.execute("SELECT target FROM campaign").fetchone()[0]
        )
        return None if found is None else Target(**json.loads(found))

    async def problems(self) -> list[Problem]:
        """Failed, unknown and duplicate rows grouped by state and code, largest first."""

        def work() -> list[Problem]:
            return [
                Problem(state, code or "", count, example or "")
                for state, code, count, example in self._db.execute(
                    "SELECT state, code, count(*), min(description) FROM rows "
                    "WHERE state IN ('failed', 'unknown', 'duplicate') GROUP BY state, code "
                    "ORDER BY count(*) DESC, state, code"
                )
            ]

        return await self._run(work)

    async def problem_rows(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` failed, unknown or duplicate rows with ``seq > after``, in input
        order, as (seq, key, state, code, description, reference, payload)."""

        def work() -> list[tuple[Any, ...]]:
            return self._db.execute(
                "SELECT seq, key, state, code, description, reference, payload FROM rows "
                "WHERE state IN ('failed', 'unknown', 'duplicate') AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()

        return await self._run(work)

    # -- call outcomes ------------------------------------------------------------------

    async def record_outcome(self, reference: str, outcome: Outcome) -> bool:
        """Record ``outcome`` on the row whose call has serial number ``reference``.

        Returns False when no row has it yet: the outcome is kept and recorded when a
        row with that serial number is (an event may overtake the commit of its send).
        Recording the same event again changes nothing.
        """
        values = (
            "answered" if outcome.answered else "not_answered",
            outcome.release_reason,
            outcome.talk_duration,
            outcome.release_time,
        )

        def work(db: sqlite3.Connection) -> bool:
            found = db.execute(
                "UPDATE rows SET outcome = ?, release_reason = ?, talk_duration = ?, "
                "release_time = ? WHERE reference = ?",
                (*values, reference),
            ).rowcount
            if not found:
                db.execute(
                    "INSERT OR REPLACE INTO early_outcomes (outcome, release_reason, "
                    "talk_duration, release_time, reference, received) VALUES (?, ?, ?, ?, ?, ?)",
                    (*values, reference, time.time()),
                )
            return found > 0

        return await self._write(work)

    async def has_outcome(self, reference: str) -> bool:
        """True when the outcome of the call with serial number ``reference`` is recorded."""
        found = await self._run(
            lambda: self._db.execute(
                "SELECT 1 FROM rows WHERE reference = ? AND outcome IS NOT NULL "
                "UNION ALL SELECT 1 FROM early_outcomes WHERE reference = ?",
                (reference, reference),
            ).fetchone()
        )
        return found is not None

    @staticmethod
    def _adopt_early_outcomes(db: sqlite3.Connection) -> None:
        """Move outcomes that arrived before their row's serial number was recorded."""
        if db.execute("SELECT 1 FROM early_outcomes LIMIT 1").fetchone() is None:
            return
        matched = db.execute(
            "SELECT e.reference, e.outcome, e.release_reason, e.talk_duration, e.release_time "
            "FROM early_outcomes e JOIN rows r ON r.reference = e.reference"
        ).fetchall()
        db.executemany(
            "UPDATE rows SET outcome = ?, release_reason = ?, talk_duration = ?, "
            "release_time = ? WHERE reference = ?",
            [(o, reason, talk, at, ref) for ref, o, reason, talk, at in matched],
        )
        db.executemany("DELETE FROM early_outcomes WHERE reference = ?", [(m[0],) for m in matched])

    async def outcomes(self) -> Outcomes:
        """The call outcomes recorded so far."""

        def work() -> Outcomes:
            found = dict(
                self._db.execute(
                    "SELECT coalesce(outcome, 'awaiting'), count(*) FROM rows "
                    "WHERE state = 'done' AND reference IS NOT NULL GROUP BY 1"
                ).fetchall()
            )
            reasons = self._db.execute(
                "SELECT coalesce(release_reason, ''), count(*) FROM rows "
                "WHERE outcome IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
            return Outcomes(
                answered=found.get("answered", 0),
                not_answered=found.get("not_answered", 0),
                awaiting=found.get("awaiting", 0),
                reasons=tuple((str(r), int(n)) for r, n in reasons),
            )

        return await self._run(work)

    async def unanswered_rows(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` rows whose call was not answered with ``seq > after``, in input
        order, as (seq, key, payload)."""

        def work() -> list[tuple[int, str, str]]:
            return self._db.execute(
                "SELECT seq, key, payload FROM rows WHERE outcome = 'not_answered' AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()

        return await self._run(work)

    @staticmethod
    def loads(payload: str) -> Any:
        """A payload back as Python values."""
        return json.loads(payload)

    @staticmethod
    def dumps(value: Any) -> str:
        """The canonical JSON used for payloads and fingerprints."""
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
