"""The PostgreSQL journal: many workers (processes on several machines) run one campaign.

Needs ``aicc-async[postgres]`` (psycopg 3). Campaigns live side by side in shared
tables keyed by campaign name (``aicc_campaigns``, ``aicc_rows``,
``aicc_early_outcomes``, ``aicc_workers``), created when missing. Each open journal
shows its own campaign's slice of them as temporary views of its session named like
the SQLite tables, so both backends run the same SQL (:mod:`.sql`).

Workers:

* A worker (``mode="run"``) holds a lease in ``aicc_workers`` (worker id, host, pid,
  expiry by the server's clock) and renews it every third of its length from a
  background task on a connection of its own. A worker whose lease lapsed claims
  nothing more: its next commit raises ``JournalError``.
* A claim runs under a per-campaign transaction advisory lock, so the
  once-per-number decision (which numbers were used) is serialised across workers;
  its rows are locked ``FOR UPDATE SKIP LOCKED`` and marked ``sending`` with the
  worker's id, committed before any request leaves. A commit only finishes rows its
  own worker holds ``sending``.
* Rows left ``sending`` by a worker whose lease expired become ``unknown`` (or
  ``pending`` for an idempotent kind), never re-sent blindly: at a run's start and on
  every heartbeat of any live worker. Rows of live workers are never touched. A
  worker that was only slow records the outcomes it learnt for its rows settled
  ``unknown`` (it knows what became of them), then stops.
* Loads are serialised by a per-campaign session advisory lock. A worker that loads
  while other workers hold live leases does not start a new pass: it checks that its
  input is the campaign's current one (no new, changed or missing row) and joins, or
  is refused with ``CampaignError``. With no live worker, a load is a normal pass
  (unsent rows it leaves out are withdrawn). A pass whose loader died before it ended
  (the lock ends with its session) is never joined: the next worker to load takes it
  over with a pass of its own.
* A connection lost (a PostgreSQL restart, a failover, a network blip) is opened
  again, the session's views with it, and the interrupted statement is run again,
  for as long as the worker's lease holds (other modes: for ``DEFAULT_LEASE``
  seconds); the heartbeat reconnects on its own. A commit whose ``COMMIT`` went
  unanswered is resolved before anything is sent: the rows it claimed are sent only
  if they are found ``sending`` under this worker (the mark landed) and its lease is
  still live; otherwise they are given back (or the whole commit is run again: its
  outcomes are written under the ownership guard, so twice is harmless). PostgreSQL
  out of reach for longer than the lease stops the worker with ``JournalError``. A
  load under way goes on if its lock (which died with the session) can be taken again
  and no other pass began meanwhile; otherwise it fails with ``JournalError`` and the
  worker that took the lock carries the load.
* ``mode="read"`` sets the session read-only (``default_transaction_read_only``)
  after creating its views: it never writes a row and works beside running workers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
import psycopg
import psycopg.conninfo
from psycopg import sql

from aicc_async.bulk.journal.location import DEFAULT_LEASE, campaign_location, mask_dsn
from aicc_async.bulk.journal.pg_connect import LOCKS, connect, said, secret
from aicc_async.bulk.journal.rules import (
    INTERRUPTED,
    STATE_CHECK,
    Claim,
    Finished,
    Gate,
    LoadedRow,
    Mode,
    State,
    checked_kind,
    warn_settled,
)
from aicc_async.bulk.journal.sql import (
    Clause,
    Cursor,
    Db,
    Sharing,
    SQLJournal,
    normalise_numbers,
)
from aicc_async.errors import CampaignError, JournalError

__all__ = ["SCHEMA_VERSION", "PostgresJournal"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The format of the PostgreSQL tables (each campaign records the one it was made with).
SCHEMA_VERSION = 2
#: Earlier formats a campaign opened to write is upgraded from (read-only, read as is).
UPGRADABLE = (1,)
_CLAIM_LOCK, _LOAD_LOCK, _SCHEMA_LOCK = LOCKS, LOCKS + 1, LOCKS + 2
_LOAD_LOCK_POLL = 0.1  # seconds between tries for another worker's load to end
_ANALYZE_AFTER = 1000  # rows loaded before the first ANALYZE (then each doubling)
_RECONNECT_PAUSE = 0.25  # seconds between tries to reach a server that went away
_RENEW_RETRY = 1.0  # seconds before a failed lease renewal is tried again (at most)

#: True in the task loading the input: a lost connection fails the load (its session
#: lock is gone) instead of running the interrupted statement again.
_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("aicc_loading", default=False)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS aicc_campaigns (
        name text PRIMARY KEY,
        kind text NOT NULL,
        version integer NOT NULL,
        created double precision NOT NULL,
        loads integer NOT NULL DEFAULT 0,
        current_load integer,
        accepted integer,
        source text,
        target text
    )""",
    f"""CREATE TABLE IF NOT EXISTS aicc_rows (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        key text NOT NULL,
        fingerprint text NOT NULL,
        state text NOT NULL CHECK ({STATE_CHECK}),
        payload text NOT NULL,
        number text,
        code text,
        description text,
        reference text,
        sends integer NOT NULL DEFAULT 0,
        first_load integer NOT NULL DEFAULT 0,
        loaded integer NOT NULL DEFAULT 0,
        updated double precision NOT NULL,
        outcome text CHECK (outcome IN ('answered', 'not_answered')),
        release_reason text,
        talk_duration integer,
        release_time text,
        worker text,
        sent double precision,
        callback integer,
        zone text,
        attempt integer NOT NULL DEFAULT 0,
        due double precision,
        heard double precision,
        UNIQUE (campaign, key)
    )""",
    "CREATE INDEX IF NOT EXISTS aicc_rows_pending ON aicc_rows (campaign, seq) "
    "WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS aicc_rows_by_state ON aicc_rows (campaign, state)",
    "CREATE INDEX IF NOT EXISTS aicc_rows_by_number ON aicc_rows (campaign, number) "
    "WHERE number IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS aicc_rows_by_reference ON aicc_rows (campaign, reference) "
    "WHERE reference IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS aicc_early_outcomes (
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        reference text NOT NULL,
        outcome text NOT NULL,
        release_reason text,
        talk_duration integer,
        release_time text,
        received double precision NOT NULL,
        number text,
        PRIMARY KEY (campaign, reference)
    )""",
    """CREATE TABLE IF NOT EXISTS aicc_refused_events (
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        reason text NOT NULL,
        events bigint NOT NULL,
        PRIMARY KEY (campaign, reason)
    )""",
    """CREATE TABLE IF NOT EXISTS aicc_rate_samples (
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        worker text NOT NULL,
        time double precision NOT NULL,
        rate double precision,
        sent bigint NOT NULL,
        throttled bigint NOT NULL,
        requeued bigint NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS aicc_attempts (
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        seq bigint NOT NULL,
        attempt integer NOT NULL,
        number text,
        reference text,
        outcome text,
        release_reason text,
        talk_duration integer,
        release_time text,
        sent double precision,
        heard double precision,
        PRIMARY KEY (campaign, seq, attempt)
    )""",
    """CREATE TABLE IF NOT EXISTS aicc_do_not_call (
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        source text NOT NULL,
        number text NOT NULL,
        PRIMARY KEY (campaign, source, number)
    )""",
    """CREATE TABLE IF NOT EXISTS aicc_workers (
        campaign text NOT NULL REFERENCES aicc_campaigns (name) ON DELETE CASCADE,
        worker text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        started timestamptz NOT NULL DEFAULT clock_timestamp(),
        expires timestamptz NOT NULL,
        PRIMARY KEY (campaign, worker)
    )""",
]

#: The campaign's slice of the shared tables, under the names the shared SQL uses.
_VIEWS = [
    "CREATE TEMP VIEW campaign AS SELECT * FROM aicc_campaigns WHERE name = {name}",
    "CREATE TEMP VIEW rows AS SELECT * FROM aicc_rows WHERE campaign = {name} "
    "WITH CASCADED CHECK OPTION",
    "ALTER VIEW rows ALTER COLUMN campaign SET DEFAULT {name}",
    "CREATE TEMP VIEW early_outcomes AS SELECT * FROM aicc_early_outcomes "
    "WHERE campaign = {name} WITH CASCADED CHECK OPTION",
    "ALTER VIEW early_outcomes ALTER COLUMN campaign SET DEFAULT {name}",
    "CREATE TEMP VIEW refused_events AS SELECT * FROM aicc_refused_events "
    "WHERE campaign = {name} WITH CASCADED CHECK OPTION",
    "ALTER VIEW refused_events ALTER COLUMN campaign SET DEFAULT {name}",
    "CREATE TEMP VIEW rate_samples AS SELECT * FROM aicc_rate_samples "
    "WHERE campaign = {name} WITH CASCADED CHECK OPTION",
    "ALTER VIEW rate_samples ALTER COLUMN campaign SET DEFAULT {name}",
    "CREATE TEMP VIEW attempts AS SELECT * FROM aicc_attempts "
    "WHERE campaign = {name} WITH CASCADED CHECK OPTION",
    "ALTER VIEW attempts ALTER COLUMN campaign SET DEFAULT {name}",
    "CREATE TEMP VIEW do_not_call AS SELECT * FROM aicc_do_not_call "
    "WHERE campaign = {name} WITH CASCADED CHECK OPTION",
    "ALTER VIEW do_not_call ALTER COLUMN campaign SET DEFAULT {name}",
    "CREATE TEMP VIEW live_workers AS SELECT worker, host, pid FROM aicc_workers "
    "WHERE campaign = {name} AND expires > clock_timestamp()",
    "CREATE TEMP TABLE join_keys (key text PRIMARY KEY)",
]

#: Columns newer than the journal format: (table, column, SQL type). Tables written
#: before them get them when a campaign is opened to write.
_ADDED_COLUMNS = (
    ("aicc_rows", "sent", "double precision"),
    ("aicc_rows", "callback", "integer"),
    ("aicc_early_outcomes", "number", "text"),
    ("aicc_rows", "zone", "text"),
    ("aicc_rows", "attempt", "integer NOT NULL DEFAULT 0"),
    ("aicc_rows", "due", "double precision"),
    ("aicc_rows", "heard", "double precision"),
)
#: Tables newer than the journal format: shared table -> (its view, what a read-only
#: session of tables written before it reads instead: an empty table of its own).
_ADDED_TABLES = {
    "aicc_refused_events": ("refused_events", "(reason text, events bigint)"),
    "aicc_rate_samples": (
        "rate_samples",
        "(worker text, time double precision, rate double precision, sent bigint, "
        "throttled bigint, requeued bigint)",
    ),
    "aicc_do_not_call": ("do_not_call", "(source text, number text)"),
    "aicc_attempts": (
        "attempts",
        "(seq bigint, attempt integer, number text, reference text, outcome text, "
        "release_reason text, talk_duration integer, release_time text, "
        "sent double precision, heard double precision)",
    ),
}

_RENEW = (
    "UPDATE aicc_workers SET expires = clock_timestamp() + %s * interval '1 second' "
    "WHERE campaign = %s AND worker = %s AND expires > clock_timestamp()"
)


class _CommitUnanswered(Exception):
    """A transaction's ``COMMIT`` went out but its answer was lost with the connection:
    it may or may not have landed. ``result``: what the transaction's work returned."""

    def __init__(self, result: Any) -> None:
        super().__init__("COMMIT unanswered")
        self.result = result


def _placeholders(text: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s``."""
    return text.replace("%", "%%").replace("?", "%s")


class _PgDb:
    """A psycopg connection as the shared SQL uses it (:class:`~.sql.Db`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, text: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self.conn.execute(_placeholders(text), parameters)

    def executemany(self, text: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self.conn.cursor()
        values = list(parameters)
        if values:
            cursor.executemany(_placeholders(text), values)
        return cursor

    def close(self) -> None:
        self.conn.close()


@attrs.frozen
class Workers(Sharing):
    """The claims of ``worker``, one of the workers sharing a campaign."""

    worker: str

    def owned(self) -> Clause:
        # A commit finishes the rows this worker holds, and those it held until its
        # lease lapsed and another worker settled them `unknown`: it knows what
        # became of them.
        return Clause(
            " AND worker = ? AND (state = 'sending' OR (state = 'unknown' AND code = ?))",
            (self.worker, INTERRUPTED),
        )

    def stamp(self) -> Clause:
        return Clause(", worker = ?", (self.worker,))

    def lock_rows(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def fence(self) -> str:
        # Not flattened: planned with the statistics of a table just loaded (every row
        # pending), the states would pick the state index and scan every row sent so far.
        return " OFFSET 0"


class PostgresJournal(SQLJournal):
    """Campaign ``name`` in the PostgreSQL database at a DSN. Create with :meth:`open`;
    close with :meth:`close`."""

    shared: ClassVar[bool] = True
    _BEGIN: ClassVar[str] = "BEGIN"
    _FRESH: ClassVar[str] = "--campaign name"
    _errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)

    def __init__(
        self,
        db: _PgDb,
        kind: str,
        mode: Mode,
        *,
        dsn: str,
        name: str,
        worker: str,
        lease: float,
        beat: _PgDb | None,
    ) -> None:
        super().__init__(db, kind, mode, campaign_location(dsn, name))
        self.name = name
        self.worker = worker
        """This worker's id (host:pid:random) in ``aicc_workers``."""
        self._sharing = Workers(worker)
        self._sampler = worker  # its points of the rate history are kept apart
        self.lease = lease
        self._pg = db
        self._secret = secret(dsn)
        self._beat = beat
        self._beater: concurrent.futures.ThreadPoolExecutor | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._lost = False
        self._idempotent: bool | None = None  # known once recover() ran: heartbeats recover too
        self._load_locked = False
        self._joining: int | None = None  # the load pass a joining worker checks its input against
        self._pass: int | None = None  # the load pass this worker is loading (not joining)
        self._analyzed = self._unanalyzed = 0  # rows this journal loaded before / since ANALYZE
        self._dsn = dsn  # to connect again (never shown)
        self._generation = 0  # connections opened again so far
        self._reconnecting = asyncio.Lock()
        self._durable = True
        self._load_lost = False
        #: When the lease was last renewed (monotonic; it lasts ``lease`` from then).
        self.renewed = time.monotonic()

    def __repr__(self) -> str:
        return f"<PostgresJournal {self.location} worker={self.worker!r} mode={self.mode!r}>"

    @property
    def files(self) -> tuple[Path, ...]:
        """None: the journal lives in the database."""
        return ()

    def _problem(self, exc: Exception) -> JournalError:
        return JournalError(
            f"the journal {self.location} could not be read or written "
            f"({said(exc, self._secret)}); the rows it recorded so far are kept"
        )

    # -- a lost connection -----------------------------------------------------------------

    def _broken(self) -> bool:
        conn = self._pg.conn
        return bool(conn.broken or conn.closed)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the journal's thread; a lost connection is opened again and
        ``fn`` run again (see the module docstring); other errors are ``JournalError``."""
        if self._worker is None:
            raise CampaignError(f"the journal {self.location} is closed")
        loop = asyncio.get_running_loop()
        loading = _LOADING.get()
        while True:
            generation = self._generation
            try:
                if loading:
                    return await loop.run_in_executor(self._worker, self._in_load, fn, *args)
                return await loop.run_in_executor(self._worker, fn, *args)
            except _CommitUnanswered:
                await self._reconnect(generation)
                raise
            except psycopg.Error as exc:
                if not self._broken():
                    raise self._problem(exc) from None
                await self._reconnect(generation, exc)
                if loading and self._load_lost:
                    raise self._load_interrupted() from None

    def _in_load(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` for a load, unless its lock was lost with a connection."""
        if self._load_lost:
            raise self._load_interrupted()
        return fn(*args)

    @contextlib.contextmanager
    def _loading(self) -> Iterator[None]:
        """The statements of a load (under its session lock): a lost connection fails it
        unless the lock could be taken again with the pass untouched (:meth:`_relock`)."""
        if self._load_lost:
            raise self._load_interrupted()
        token = _LOADING.set(True)
        try:
            yield
        finally:
            _LOADING.reset(token)

    def _transaction(self, fn: Callable[[Db], T]) -> T:
        """``fn(db)`` in a transaction; ``_CommitUnanswered`` when the connection was
        lost at its ``COMMIT`` (it may have landed), else as the shared one."""
        db = self._db
        db.execute(self._BEGIN)
        try:
            result = fn(db)
        except BaseException:
            with contextlib.suppress(psycopg.Error):  # a lost connection rolled it back
                db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except psycopg.Error:
            if self._broken():
                raise _CommitUnanswered(result) from None
            raise
        return result

    async def _write(self, fn: Callable[[Db], T]) -> T:
        """``fn(db)`` in one write transaction; one whose ``COMMIT`` went unanswered is
        run again (every write but a claim, :meth:`commit`, is idempotent; a batch of
        a load records its rows once), unless it was a load's and the load lock is gone
        (see :meth:`_load_interrupted`)."""
        if self.read_only:
            raise CampaignError(f"the journal {self.location} is open read-only")
        while True:
            try:
                return await self._run(self._transaction, fn)
            except _CommitUnanswered:
                if _LOADING.get() and self._load_lost:
                    raise self._load_interrupted() from None

    def _load_interrupted(self) -> JournalError:
        return JournalError(
            f"the connection to the journal {self.location} was lost while this worker "
            "loaded the input, and the load could not go on (another worker took it over, "
            "or this one was checking its input against it). The rows recorded so far are "
            "kept and nothing unsent was lost: run the same command again."
        )

    def _open_again(self) -> None:
        """Connect again (on the journal's thread) and restore the session: views,
        durability, read-only."""
        with contextlib.suppress(psycopg.Error):
            self._pg.conn.close()
        fresh = self._connect(self._dsn, self.mode)
        try:
            self._views(fresh, self.name, self.mode)
            if not self._durable:
                fresh.execute("SET synchronous_commit = off")
            if self.mode == "read":
                fresh.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            if self._load_locked:  # the session's load lock went with the old session
                self._load_locked = self._relock(fresh)
                self._load_lost = not self._load_locked
        except BaseException:
            fresh.close()
            raise
        self._pg.conn = fresh.conn

    def _relock(self, db: _PgDb) -> bool:
        """Take the load lock again on a new session, if this worker was loading a pass
        of its own and no other pass began meanwhile: then its load goes on."""
        if self._pass is None or self._joining is not None:
            return False
        lock = (_LOAD_LOCK, self.name)
        if not db.execute("SELECT pg_try_advisory_lock(?, hashtext(?))", lock).fetchone()[0]:
            return False  # another worker took the load over
        if db.execute("SELECT loads FROM campaign").fetchone()[0] == self._pass:
            return True
        db.execute("SELECT pg_advisory_unlock(?, hashtext(?))", lock)
        return False

    async def _reconnect(self, generation: int, cause: BaseException | None = None) -> None:
        """Open the connection again unless another caller did since ``generation``;
        tries until the lease ends (``JournalError`` then)."""
        async with self._reconnecting:
            if self._generation != generation:
                return
            loop = asyncio.get_running_loop()
            now = time.monotonic()
            deadline = (self.renewed if self.mode == "run" else now) + self.lease
            logger.warning(
                "lost the connection to the journal %s%s; connecting again for up to %.0f s",
                self.location,
                "" if cause is None else f" ({said(cause, self._secret)})",
                max(0.0, deadline - now),
            )
            while True:
                assert self._worker is not None
                try:
                    await loop.run_in_executor(self._worker, self._open_again)
                    break
                except (JournalError, psycopg.Error) as exc:
                    last = exc.message if isinstance(exc, JournalError) else said(exc, self._secret)
                    if time.monotonic() + _RECONNECT_PAUSE >= deadline:
                        raise JournalError(
                            f"the journal {self.location} was out of reach for longer than "
                            f"this worker's lease ({self.lease:g} s; last error: {last}). "
                            "Its rows in flight are settled by the other workers once the "
                            "lease expired; it stops. Run it again to rejoin the campaign "
                            "once PostgreSQL answers."
                        ) from None
                await asyncio.sleep(_RECONNECT_PAUSE)
            self._generation += 1
            logger.warning("connected to the journal %s again", self.location)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        dsn: str,
        name: str,
        kind: str | None,
        *,
        mode: Mode = "run",
        lease: float = DEFAULT_LEASE,
    ) -> PostgresJournal:
        """Open campaign ``name`` in the database at ``dsn``: ``mode="run"`` to send
        (created for ``kind`` when missing, with the tables; ``kind=None``: it must
        exist) as a worker holding a lease of ``lease`` seconds, ``mode="read"`` to read
        it in a read-only session, ``mode="record"`` to record call outcomes.

        Raises ``JournalError`` if the server cannot be reached or refuses the login
        (naming host:port, never the password), ``CampaignError`` if the campaign is
        missing, of another kind or of another format.
        """
        masked, location = mask_dsn(dsn), campaign_location(dsn, name)
        worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        db = await asyncio.to_thread(cls._connect, dsn, mode)
        beat: _PgDb | None = None
        try:
            found = await asyncio.to_thread(cls._prepare, db, name, kind, mode, masked, location)
            if mode == "run":
                beat = await asyncio.to_thread(cls._connect, dsn, mode)
                await asyncio.to_thread(cls._register, db, name, worker, lease)
            if mode == "read":
                await asyncio.to_thread(
                    db.execute, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
                )
        except BaseException as exc:
            db.close()
            if beat is not None:
                beat.close()
            if isinstance(exc, psycopg.Error):
                raise JournalError(
                    f"the journal {location} could not be opened ({said(exc, secret(dsn))})"
                ) from None
            raise
        journal = cls(db, found, mode, dsn=dsn, name=name, worker=worker, lease=lease, beat=beat)
        if mode == "run":
            journal._beater = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="aicc-journal-lease"
            )
            journal._heartbeat = asyncio.create_task(journal._heartbeats())
        return journal

    @staticmethod
    def _connect(dsn: str, mode: Mode) -> _PgDb:
        return _PgDb(connect(dsn, "the PostgreSQL journal", f"aicc-async {mode}"))

    @staticmethod
    def _prepare(
        db: _PgDb, name: str, kind: str | None, mode: Mode, masked: str, location: str
    ) -> str:
        """Create the tables (``run`` mode) and the campaign (if ``kind``), check its
        kind and format, and create this session's views of it (``masked``: the DSN,
        ``location``: the campaign, as messages name them)."""
        db.execute("BEGIN")
        try:
            exists = db.execute("SELECT to_regclass('aicc_campaigns') IS NOT NULL").fetchone()[0]
            if mode != "read" and kind is not None:
                db.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
                if db.execute("SELECT to_regclass('aicc_workers') IS NULL").fetchone()[0]:
                    for statement in _SCHEMA:  # the last one creates aicc_workers
                        db.execute(statement)
                PostgresJournal._upgrade(db)
                exists = True
            elif exists and mode != "read":
                db.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
                PostgresJournal._upgrade(db)
            held = None
            if exists:
                held = db.execute(
                    "SELECT kind, version FROM aicc_campaigns WHERE name = ?", (name,)
                ).fetchone()
            if held is None:
                if kind is None or mode == "read":
                    raise CampaignError(
                        f"no campaign {name!r} in the PostgreSQL journal {masked}: "
                        "give the --campaign name a campaign was run with"
                    )
                db.execute(
                    "INSERT INTO aicc_campaigns (name, kind, version, created) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (name, kind, SCHEMA_VERSION, time.time()),
                )
                held = db.execute(
                    "SELECT kind, version FROM aicc_campaigns WHERE name = ?", (name,)
                ).fetchone()
            found = checked_kind(
                location, kind, (str(held[0]), int(held[1])), SCHEMA_VERSION, UPGRADABLE
            )
            if mode != "read" and int(held[1]) in UPGRADABLE:
                db.execute(
                    "UPDATE aicc_campaigns SET version = ? WHERE name = ?", (SCHEMA_VERSION, name)
                )
            PostgresJournal._views(db, name, mode)
            if mode != "read":
                normalise_numbers(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return found

    @staticmethod
    def _views(db: _PgDb, name: str, mode: Mode) -> None:
        """Create this session's views of campaign ``name`` (and its scratch table)."""
        literal = sql.Literal(name).as_string(db.conn)
        for view in PostgresJournal._view_statements(db, mode):
            db.execute(view.format(name=literal))

    @staticmethod
    def _view_statements(db: _PgDb, mode: Mode) -> list[str]:
        """This session's views; read-only on tables written by an earlier release,
        what they lack reads as empty / NULL (they are not altered)."""
        if mode != "read":
            return _VIEWS
        missing = PostgresJournal._missing_columns(db)
        absent = PostgresJournal._missing_tables(db)
        if not missing and not absent:
            return _VIEWS
        views = []
        for view in _VIEWS:
            stand_in = next((t for t in absent if f" FROM {t} " in view), None)
            if stand_in is not None:
                name, columns = _ADDED_TABLES[stand_in]
                view = f"CREATE TEMP TABLE {name} {columns}"
            elif any(f"VIEW {_ADDED_TABLES[t][0]} " in view for t in absent):
                continue
            for table, column, kind in missing:
                cast = kind.removesuffix(" NOT NULL DEFAULT 0")
                view = view.replace(f" FROM {table} ", f", NULL::{cast} AS {column} FROM {table} ")
            views.append(view)
        return views

    @staticmethod
    def _missing_columns(db: _PgDb) -> list[tuple[str, str, str]]:
        present = {
            (str(table), str(column))
            for table, column in db.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() "
                "AND table_name IN ('aicc_rows', 'aicc_early_outcomes')"
            ).fetchall()
        }
        return [c for c in _ADDED_COLUMNS if (c[0], c[1]) not in present]

    @staticmethod
    def _missing_tables(db: _PgDb) -> list[str]:
        """The tables of :data:`_ADDED_TABLES` the database lacks."""
        return [
            table
            for table in _ADDED_TABLES
            if db.execute("SELECT to_regclass(?) IS NULL", (table,)).fetchone()[0]
        ]

    @staticmethod
    def _upgrade(db: _PgDb) -> None:
        """Give tables written by an earlier release what this one records (under the
        schema lock); only what is missing is altered."""
        for table in PostgresJournal._missing_tables(db):
            db.execute(next(t for t in _SCHEMA if f"EXISTS {table} (" in t))
        for table, column, kind in PostgresJournal._missing_columns(db):
            db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        db.execute(
            "CREATE INDEX IF NOT EXISTS aicc_attempts_by_reference "
            "ON aicc_attempts (campaign, reference)"
        )
        db.execute(
            "CREATE INDEX IF NOT EXISTS aicc_do_not_call_by_number "
            "ON aicc_do_not_call (campaign, number)"
        )
        checks = [
            (str(name), str(definition))
            for name, definition in db.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'aicc_rows'::regclass AND contype = 'c'"
            ).fetchall()
        ]
        for name, definition in checks:  # the states of an earlier release: widened
            if "state" in definition and "'limited'" not in definition:
                old = sql.Identifier(name).as_string(db.conn)
                db.execute(
                    f"ALTER TABLE aicc_rows DROP CONSTRAINT {old}, "
                    f"ADD CONSTRAINT aicc_rows_state_check CHECK ({STATE_CHECK})"
                )

    @staticmethod
    def _register(db: _PgDb, name: str, worker: str, lease: float) -> None:
        db.execute(
            "INSERT INTO aicc_workers (campaign, worker, host, pid, expires) "
            "VALUES (?, ?, ?, ?, clock_timestamp() + ? * interval '1 second')",
            (name, worker, socket.gethostname(), os.getpid(), lease),
        )

    # -- the lease ------------------------------------------------------------------------

    def _lease_lost(self) -> JournalError:
        return JournalError(
            f"the lease of this worker ({self.worker}) on {self.location} lapsed (it could "
            "not be renewed in time): its rows in flight may be settled by the other "
            "workers, so it claims no more rows. Run it again to rejoin the campaign."
        )

    def _renew(self) -> bool:
        assert self._beat is not None
        beat = self._beat
        for retry in (False, True):
            if beat.conn.broken or beat.conn.closed:  # lost (a restart): connect it again
                with contextlib.suppress(psycopg.Error):
                    beat.conn.close()
                beat.conn = self._connect(self._dsn, self.mode).conn
            asked = time.monotonic()  # the new expiry counts from a moment after this
            try:
                alive = beat.conn.execute(_RENEW, (self.lease, self.name, self.worker)).rowcount
            except psycopg.Error:
                if retry or not (beat.conn.broken or beat.conn.closed):
                    raise
                continue  # the server closed it (a restart): once more on a new one
            if alive == 1:
                self.renewed = asked
            return alive == 1
        raise AssertionError("unreachable")

    async def renew(self) -> None:
        """Renew this worker's lease now (the heartbeat does it every third of it);
        ``JournalError`` if it had lapsed. Then settle the rows of expired workers
        (once :meth:`recover` ran)."""
        if self._beater is None or self._lost:
            raise self._lease_lost()
        try:
            alive = await asyncio.get_running_loop().run_in_executor(self._beater, self._renew)
        except psycopg.Error as exc:
            raise self._problem(exc) from None
        if not alive:
            self._lost = True
            raise self._lease_lost()
        if self._idempotent is not None:
            settled = await self.recover(idempotent=self._idempotent)
            if settled:
                warn_settled(
                    settled,
                    f"of {self.location} were in flight on workers whose lease expired",
                    idempotent=self._idempotent,
                )

    async def _heartbeats(self) -> None:
        pause = self.lease / 3
        while True:
            await asyncio.sleep(pause)
            pause = self.lease / 3
            try:
                await self.renew()
            except JournalError as exc:
                if self._lost:
                    logger.error("%s", exc.message)
                    return
                logger.warning("could not renew the worker lease: %s", exc.message)
                pause = min(pause, _RENEW_RETRY)  # try again soon: the lease is running out
            except CampaignError:  # closed meanwhile
                return

    def _may_claim(self, db: Db) -> bool:
        db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_CLAIM_LOCK, self.name))
        live = db.execute("SELECT 1 FROM live_workers WHERE worker = ?", (self.worker,)).fetchone()
        if live is None:
            self._lost = True
        return not self._lost

    _PER_SELECT: ClassVar[int] = 5000

    def _whole_second(self, column: str) -> str:
        return f"floor({column})"  # PostgreSQL's CAST rounds

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """One array parameter: parsed and planned once, whatever its length."""
        return f"{column} = ANY(?)", (list(values),)

    async def commit(
        self,
        finished: Sequence[Finished],
        claim: int,
        after: int,
        *,
        once_per_number: bool,
        gate: Gate | None = None,
    ) -> Claim:
        """:meth:`Journal.commit <aicc_async.bulk.journal.Journal.commit>` under the
        campaign's claim lock; ``JournalError`` once this worker's lease lapsed (the
        outcomes of rows it still holds are recorded first).

        A commit whose ``COMMIT`` went unanswered (the connection was lost) is resolved
        once connected again: if the rows it claimed are ``sending`` under this worker,
        it landed and they are returned (to send) while the lease is live, or given back
        ``pending`` if it lapsed; if not, it did not land and the whole commit is run
        again (its outcomes are written under the ownership guard: idempotent)."""
        if self.mode != "run":
            raise CampaignError(f"the journal {self.location} is not open to send")
        unsure: Claim | None = None

        def work(db: Db) -> Claim:
            if unsure is not None and unsure.rows:
                landed = self._landed(db, unsure)
                if landed is not None:
                    return landed
            return self._commit(db, finished, claim, after, once_per_number, gate)

        while True:
            try:
                claimed: Claim = await self._run(self._transaction, work)
                break
            except _CommitUnanswered as exc:
                unsure = exc.result
        if self._lost:
            raise self._lease_lost()
        return claimed

    def _landed(self, db: Db, unsure: Claim) -> Claim | None:
        """The claim ``unsure`` if its ``sending`` marks are committed (``None`` if they
        are not: it did not land); if this worker's lease lapsed meanwhile, its rows go
        back to ``pending`` instead, those the other workers settled ``unknown`` too
        (they were never sent)."""
        live = self._may_claim(db)
        where, args = self._in("seq", [c.seq for c in unsure.rows])
        owned = self._sharing.owned()  # this worker's, or settled from it
        mine = f"{where}{owned.sql}"
        found = {
            int(seq)
            for (seq,) in db.execute(
                f"SELECT seq FROM rows WHERE {mine}",  # noqa: S608 - only '?' marks
                (*args, *owned.args),
            )
        }
        if not found:
            return None
        if not live:
            db.execute(
                "UPDATE rows SET state = 'pending', code = NULL, description = NULL, "  # noqa: S608 - only '?' marks
                f"worker = NULL, sends = sends - 1, attempt = attempt - 1 WHERE {mine}",
                (*args, *owned.args),
            )
            return attrs.evolve(unsure, rows=[])
        return attrs.evolve(unsure, rows=[c for c in unsure.rows if c.seq in found])

    async def share_do_not_call(self, source: str, numbers: Collection[str]) -> None:
        def work(db: Db) -> None:
            db.execute("DELETE FROM do_not_call WHERE source = ?", (source,))
            db.execute(
                "INSERT INTO do_not_call (source, number) SELECT ?, unnest(?::text[]) "
                "ON CONFLICT DO NOTHING",
                (source, sorted(numbers)),
            )

        await self._write(work)

    def _listed(self, db: Db, gate: Gate, numbers: Sequence[str]) -> set[str]:
        """Also the numbers of the lists the campaign's workers shared."""
        listed = super()._listed(db, gate, numbers)
        if gate.shared_lists and numbers:
            listed.update(
                str(n)
                for (n,) in db.execute(
                    "SELECT DISTINCT number FROM do_not_call WHERE number = ANY(?)",
                    (list(numbers),),
                )
            )
        return listed

    def _stale(self) -> str:
        """Rows ``sending`` on a worker with no live lease."""
        return (
            "state = 'sending' AND (worker IS NULL "
            "OR worker NOT IN (SELECT worker FROM live_workers))"
        )

    def _recover(self, db: Db, idempotent: bool) -> int:
        db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (_CLAIM_LOCK, self.name))
        settled = super()._recover(db, idempotent)
        db.execute(
            "DELETE FROM aicc_workers WHERE campaign = ? AND expires <= clock_timestamp()",
            (self.name,),
        )
        return settled

    async def recover(self, *, idempotent: bool) -> int:
        """Settle the rows left ``sending`` by workers whose lease expired (never those
        of live workers): ``unknown``, or ``pending`` if ``idempotent``. From then on
        every heartbeat does it too. Returns how many."""
        self._idempotent = idempotent
        return await super().recover(idempotent=idempotent)

    async def workers(self) -> list[tuple[str, str, int]]:
        """The live workers of the campaign: (worker id, host, pid)."""
        found = await self._run(
            lambda: self._pg.execute("SELECT worker, host, pid FROM live_workers").fetchall()
        )
        return [(str(w), str(h), int(p)) for w, h, p in found]

    # -- loading --------------------------------------------------------------------------

    async def _take_load_lock(self) -> None:
        self._load_lost = False
        waited = False
        while not self._load_locked:
            self._load_locked = await self._run(
                lambda: bool(
                    self._pg.execute(
                        "SELECT pg_try_advisory_lock(?, hashtext(?))", (_LOAD_LOCK, self.name)
                    ).fetchone()[0]
                )
            )
            if not self._load_locked:
                if not waited:
                    logger.info("waiting for another worker's load of %s to end", self.location)
                    waited = True
                await asyncio.sleep(_LOAD_LOCK_POLL)

    async def _release_load_lock(self) -> None:
        self._pass = None
        if self._load_locked:
            self._load_locked = False
            self._joining = None
            await self._run(
                self._pg.execute,
                "SELECT pg_advisory_unlock(?, hashtext(?))",
                (_LOAD_LOCK, self.name),
            )

    async def begin_load(
        self, source: str | None = None, *, stream: bool = False
    ) -> tuple[int, bool]:
        """:meth:`Journal.begin_load <aicc_async.bulk.journal.Journal.begin_load>`, one
        worker at a time. While other workers hold live leases and the current pass was
        loaded in full, no new pass: this worker's input is checked against it
        (:meth:`load`, :meth:`end_load`) and it joins. A pass that never ended (its
        loader died or failed) is taken over: this worker loads its input in a pass of
        its own (the rows already sent are kept, the unsent ones of that pass are
        loaded again)."""
        await self._take_load_lock()
        try:

            def joins(db: Db) -> int | None:
                current, accepted = db.execute(
                    "SELECT current_load, accepted FROM campaign"
                ).fetchone()
                others = db.execute(
                    "SELECT count(*) FROM live_workers WHERE worker <> ?", (self.worker,)
                ).fetchone()[0]
                # Only a pass loaded in full can be joined. One that never ended was
                # left by a loader that died or failed (this worker holds the load
                # lock now): a pass of this worker's own takes it over.
                if current is None or current != accepted or not others:
                    return None
                db.execute("DELETE FROM join_keys")
                return int(current)

            with self._loading():
                self._joining = await self._write(joins)
                if self._joining is not None:
                    return self._joining, False
                load, streams = await super().begin_load(source, stream=stream)
                self._pass = load
                return load, streams
        except BaseException:
            await self._release_load_lock()
            raise

    async def _refuse_input(self, what: str) -> CampaignError:
        workers = await self.workers()
        others = [f"{host} pid {pid}" for worker, host, pid in workers if worker != self.worker]
        return CampaignError(
            f"campaign {self.name!r} is being run by {len(others)} other worker(s) "
            f"({', '.join(others) or 'whose leases just expired'}) with another input: {what}. "
            "Give every worker the same input, or change the campaign's input once no "
            "worker runs it (or their leases expired)."
        )

    async def load(self, rows: Sequence[LoadedRow], load: int) -> tuple[list[State], int, int]:
        with self._loading():
            return await self._load_batch(rows, load)

    async def _load_batch(
        self, rows: Sequence[LoadedRow], load: int
    ) -> tuple[list[State], int, int]:
        if self._joining is None:
            loaded = await super().load(rows, load)
            self._unanalyzed += len(rows)
            if self._unanalyzed >= max(_ANALYZE_AFTER, self._analyzed):
                await self._analyze()
            return loaded

        def check(db: Db) -> tuple[str | None, int]:
            keys = [row.key for row in rows]
            held = self._known(db, keys)
            for row in rows:
                found = held.get(row.key)
                if found is None:
                    return f"its row {row.key!r} is not in the campaign", 0
                if found[0] != row.fingerprint or found[3] != load:
                    return f"its row {row.key!r} differs from the campaign's", 0
            added = db.execute(
                "INSERT INTO join_keys SELECT unnest(?::text[]) ON CONFLICT DO NOTHING", (keys,)
            ).rowcount
            return None, added

        problem, known = await self._write(check)
        if problem is not None:
            raise await self._refuse_input(problem)
        return [], 0, known

    async def _analyze(self) -> None:
        """Bring PostgreSQL's statistics up to date after rows were loaded, at 1,000 rows
        and then each time the rows loaded since doubled them: planned with the
        statistics of a smaller table, a claim's look-up by number may scan every row of
        the campaign instead of using the number index. (A user who does not own the
        tables gets a skipped ``ANALYZE`` and autovacuum's statistics.)"""
        await self._write(lambda db: db.execute("ANALYZE aicc_rows"))
        self._analyzed += self._unanalyzed
        self._unanalyzed = 0

    async def end_load(self, load: int, known: int, source: str | None) -> int:
        try:
            with self._loading():
                return await self._end_load(load, known, source)
        finally:
            await self._release_load_lock()

    async def _end_load(self, load: int, known: int, source: str | None) -> int:
        if self._joining is None:
            if self._unanalyzed:
                await self._analyze()
            return await super().end_load(load, known, source)
        current = await self._run(
            lambda: self._pg.execute(
                "SELECT (SELECT count(*) FROM rows WHERE loaded = ?), "
                "(SELECT count(*) FROM join_keys)",
                (load,),
            ).fetchone()
        )
        missing = int(current[0]) - int(current[1])
        if missing > 0:
            refused = await self._refuse_input(f"it leaves out {missing:,} of the campaign's rows")
            raise CampaignError(f"{refused.message} Nothing was sent.")
        return 0

    async def set_durable(self, durable: bool) -> None:
        """Wait for every commit to reach the server's disk (``True``, while sending) or
        not (``synchronous_commit = off``, while loading)."""
        self._durable = durable  # a connection opened again gets it too
        await self._run(self._pg.execute, f"SET synchronous_commit = {'on' if durable else 'off'}")

    async def checkpoint(self) -> None:
        """Nothing to do: the server keeps its own write-ahead log."""

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the heartbeat, give up the lease (rows this worker still holds
        ``sending`` are then settled by the others, or the next run) and disconnect.
        Safe to call more than once."""
        if self._worker is None:
            return
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        try:
            if self.mode == "run":
                await self._run(
                    self._pg.execute,
                    "DELETE FROM aicc_workers WHERE campaign = ? AND worker = ?",
                    (self.name, self.worker),
                )
        except (JournalError, CampaignError) as exc:
            logger.warning("could not end the lease of %s: %s", self.worker, exc.message)
        finally:
            beater, self._beater = self._beater, None
            if beater is not None:
                if self._beat is not None:
                    with contextlib.suppress(psycopg.Error):
                        await asyncio.get_running_loop().run_in_executor(beater, self._beat.close)
                beater.shutdown()
            await self._shutdown()
