"""The campaign journal: one SQLite file (WAL) holding every row's key, request and state.

A row moves ``pending -> sending -> done | failed | unknown``. The ``sending`` mark
is committed (``synchronous=FULL``) before the request goes out, so after a crash
a row that may have been sent never looks unsent. One process at a time may hold
a journal open (SQLite's exclusive locking mode); SQLite calls run on one worker
thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs

from aicc_async.errors import CampaignError

__all__ = ["Claimed", "Finished", "Journal", "LoadedRow", "Problem", "StateCounts"]

T = TypeVar("T")

State = Literal["pending", "sending", "done", "failed", "unknown"]

SCHEMA_VERSION = 1
#: ``code`` of a row whose input could not become a request (it was never sent).
INVALID = "invalid"
#: ``code`` of a row that was in flight when a run stopped.
INTERRUPTED = "interrupted"
_KEYS_PER_SELECT = 500  # below SQLite's oldest limit on bound parameters (999)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaign (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    loads INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rows (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'sending', 'done', 'failed', 'unknown')),
    payload TEXT NOT NULL,
    code TEXT,
    description TEXT,
    reference TEXT,
    sends INTEGER NOT NULL DEFAULT 0,
    loaded INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
"""


@attrs.frozen
class StateCounts:
    """How many rows are in each state."""

    pending: int = 0
    sending: int = 0
    done: int = 0
    failed: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        """All rows."""
        return self.pending + self.sending + self.done + self.failed + self.unknown

    @property
    def finished(self) -> int:
        """Rows with a final state (done, failed or unknown)."""
        return self.done + self.failed + self.unknown

    def moved(self, source: State, targets: Sequence[State]) -> StateCounts:
        """These counts after one row per item of ``targets`` left ``source`` for it."""
        counts = attrs.asdict(self)
        counts[source] -= len(targets)
        for target in targets:
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
class LoadedRow:
    """One input row as the journal stores it."""

    key: str
    fingerprint: str
    state: State
    payload: str
    code: str | None = None
    description: str | None = None


@attrs.frozen
class Claimed:
    """A row marked ``sending``: send its payload now."""

    seq: int
    key: str
    payload: str


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


def _locked(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class Journal:
    """An open journal file. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, path: Path, db: sqlite3.Connection, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._db = db
        self._worker: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aicc-journal")
        )

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, kind: str | None) -> Journal:
        """Open ``path`` (created for ``kind`` when missing; ``kind=None``: must exist).

        Raises ``CampaignError`` if it cannot be created or opened, is not a journal,
        holds another kind of campaign, or is in use by another process.
        """
        db = await asyncio.to_thread(cls._connect, path, kind)
        try:
            found = await asyncio.to_thread(cls._check, db, path, kind)
        except BaseException:
            db.close()
            raise
        return cls(path, db, found)

    @staticmethod
    def _connect(path: Path, kind: str | None) -> sqlite3.Connection:
        if kind is None and not path.is_file():
            raise CampaignError(f"no journal at {path}: give the path a campaign was run with")
        if not path.parent.is_dir():
            raise CampaignError(f"cannot create the journal {path}: {path.parent} does not exist")
        try:
            db = sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CampaignError(
                f"cannot open the journal {path} ({exc}): check that its directory is "
                "writable, or choose another --journal path"
            ) from None
        return db

    @staticmethod
    def _check(db: sqlite3.Connection, path: Path, kind: str | None) -> str:
        try:
            # EXCLUSIVE before WAL: the WAL index lives in this process only, and no
            # other process can open the journal while a campaign runs.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            if tables and "campaign" not in tables:
                raise CampaignError(
                    f"{path} is not an aicc journal (it is another SQLite database): "
                    "choose another --journal path"
                )
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise CampaignError(f"{path}: SQLite could not switch the journal to WAL mode")
            db.execute("PRAGMA synchronous=FULL")
            # The transaction takes the exclusive lock now, or fails fast.
            found = _transaction(db, lambda db: Journal._create(db, path, kind))
        except sqlite3.DatabaseError as exc:
            if _locked(exc):
                raise CampaignError(
                    f"the journal {path} is in use by another aicc process; wait for it to "
                    "finish (or stop it) and try again"
                ) from None
            if "readonly" in str(exc) or "unable to open" in str(exc):
                raise CampaignError(
                    f"cannot write the journal {path} ({exc}): check that the file and its "
                    "directory are writable, or choose another --journal path"
                ) from None
            raise CampaignError(f"{path} is not an aicc journal ({exc})") from None
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
        return str(found_kind)

    @staticmethod
    def _create(db: sqlite3.Connection, path: Path, kind: str | None) -> tuple[str, int]:
        for statement in _SCHEMA.split(";")[:-1]:
            db.execute(statement)
        found = db.execute("SELECT kind, version FROM campaign").fetchone()
        if found is not None:
            return str(found[0]), int(found[1])
        if kind is None:
            raise CampaignError(f"{path} is an empty journal: no campaign was run")
        db.execute(
            "INSERT INTO campaign (singleton, kind, version, created) VALUES (1, ?, ?, ?)",
            (kind, SCHEMA_VERSION, time.time()),
        )
        return kind, SCHEMA_VERSION

    async def close(self) -> None:
        """Close the file (the WAL is checkpointed). Safe to call more than once."""
        worker = self._worker
        if worker is None:
            return
        await self._run(self._db.close)
        worker.shutdown()
        self._worker = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._worker is None:
            raise CampaignError(f"the journal {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, fn, *args)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(db)`` in one write transaction on the journal's thread."""
        return await self._run(_transaction, self._db, fn)

    # -- loading input ------------------------------------------------------------------

    async def new_load(self) -> int:
        """Number a new pass over the input (see :meth:`load`)."""

        def work(db: sqlite3.Connection) -> int:
            db.execute("UPDATE campaign SET loads = loads + 1")
            return int(db.execute("SELECT loads FROM campaign").fetchone()[0])

        return await self._write(work)

    async def load(self, rows: Sequence[LoadedRow], load: int) -> tuple[int, int]:
        """Add ``rows`` of input pass ``load`` in one transaction; returns (added, replaced).

        A key already in the journal with the same fingerprint is left alone. With a
        different fingerprint it is replaced if an earlier pass left it unsent
        (``pending``, or ``failed`` as invalid input). Otherwise, or when this pass
        already gave the key another row, ``CampaignError`` is raised and nothing of
        ``rows`` is written.
        """
        return await self._write(lambda db: self._load(db, rows, load))

    def _load(
        self, db: sqlite3.Connection, rows: Sequence[LoadedRow], load: int
    ) -> tuple[int, int]:
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
        for row in rows:
            values = (row.fingerprint, row.state, row.payload, row.code, row.description, load, now)
            old = known.get(row.key)
            if old is None:
                added.append((row.key, *values))
                known[row.key] = (row.fingerprint, row.state, row.code, load)
                continue
            fingerprint, state, code, loaded = old
            if fingerprint == row.fingerprint:
                seen.append((load, row.key))
                continue
            if loaded == load:
                raise CampaignError(
                    f"the input gives key {row.key!r} to two different rows: each row needs "
                    "its own id. Nothing was sent."
                )
            if state != "pending" and not (state == "failed" and code == INVALID):
                raise CampaignError(
                    f"the input's row for key {row.key!r} differs from the one this journal "
                    f"holds (state {state}). A key must always name the same row: restore "
                    "the row, give it a new id, or use a new --journal for a new campaign. "
                    "Nothing was sent."
                )
            replaced.append((*values, row.key))
            known[row.key] = (row.fingerprint, row.state, row.code, load)
        db.executemany(
            "INSERT INTO rows (key, fingerprint, state, payload, code, description, loaded, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            added,
        )
        db.executemany(
            "UPDATE rows SET fingerprint = ?, state = ?, payload = ?, code = ?, "
            "description = ?, loaded = ?, updated = ?, reference = NULL WHERE key = ?",
            replaced,
        )
        db.executemany("UPDATE rows SET loaded = ? WHERE key = ?", seen)
        return len(added), len(replaced)

    def set_durable(self, durable: bool) -> Any:
        """Sync every commit to disk (``True``, while sending) or only at checkpoints.

        Loading runs non-durable: a power cut can only lose rows not yet sent, which
        the next run loads again.
        """
        mode = "FULL" if durable else "NORMAL"
        return self._run(self._db.execute, f"PRAGMA synchronous={mode}")

    # -- sending ------------------------------------------------------------------------

    async def requeue(self, *, unknown: bool, failed: bool) -> StateCounts:
        """Turn ``unknown`` (if asked) and sent-but-``failed`` (if asked) rows back into
        ``pending``; returns the counts afterwards."""

        def work(db: sqlite3.Connection) -> StateCounts:
            if unknown:
                db.execute(
                    "UPDATE rows SET state = 'pending', updated = ? WHERE state = 'unknown'",
                    (time.time(),),
                )
            if failed:
                db.execute(
                    "UPDATE rows SET state = 'pending', updated = ? "
                    "WHERE state = 'failed' AND code IS NOT ?",
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

    async def commit(self, finished: Sequence[Finished], claim: int, after: int) -> list[Claimed]:
        """In one transaction: record ``finished`` outcomes, then mark up to ``claim``
        ``pending`` rows with ``seq > after`` as ``sending`` and return them."""
        return await self._write(lambda db: self._commit(db, finished, claim, after))

    @staticmethod
    def _commit(
        db: sqlite3.Connection, finished: Sequence[Finished], claim: int, after: int
    ) -> list[Claimed]:
        now = time.time()
        db.executemany(
            "UPDATE rows SET state = ?, code = ?, description = ?, reference = ?, updated = ? "
            "WHERE seq = ?",
            [(f.state, f.code, f.description, f.reference, now, f.seq) for f in finished],
        )
        if claim <= 0:
            return []
        claimed = [
            Claimed(seq, key, payload)
            for seq, key, payload in db.execute(
                "SELECT seq, key, payload FROM rows WHERE state = 'pending' AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, claim),
            )
        ]
        db.executemany(
            "UPDATE rows SET state = 'sending', sends = sends + 1, updated = ? WHERE seq = ?",
            [(now, c.seq) for c in claimed],
        )
        return claimed

    # -- reporting ----------------------------------------------------------------------

    async def counts(self) -> StateCounts:
        """How many rows are in each state."""
        return await self._run(self._counts, self._db)

    @staticmethod
    def _counts(db: sqlite3.Connection) -> StateCounts:
        found = dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
        return StateCounts(**found)

    async def problems(self) -> list[Problem]:
        """Failed and unknown rows grouped by state and code, largest group first."""

        def work() -> list[Problem]:
            return [
                Problem(state, code or "", count, example or "")
                for state, code, count, example in self._db.execute(
                    "SELECT state, code, count(*), min(description) FROM rows "
                    "WHERE state IN ('failed', 'unknown') GROUP BY state, code "
                    "ORDER BY count(*) DESC, state, code"
                )
            ]

        return await self._run(work)

    async def problem_rows(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` failed or unknown rows with ``seq > after``, in input order,
        as (seq, key, state, code, description, reference, payload)."""

        def work() -> list[tuple[Any, ...]]:
            return self._db.execute(
                "SELECT seq, key, state, code, description, reference, payload FROM rows "
                "WHERE state IN ('failed', 'unknown') AND seq > ? ORDER BY seq LIMIT ?",
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
