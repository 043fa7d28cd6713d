"""The contact history in a PostgreSQL database, shared by campaigns and workers on
several machines.

Needs ``aicc-async[postgres]`` (psycopg 3, the journal's driver). Two tables,
created when missing (under an advisory lock, so that workers starting together
create them once): ``aicc_contact_history`` (one version row) and ``aicc_contacts``
(the entries). One connection per open history, used from its worker thread; a
batch is one statement (arrays), in one short transaction under an advisory lock that
serialises the history's writers. A connection the server dropped (a restart) is made
anew once and the operation run again: recording is idempotent, so that is safe.
Times are the callers' clocks (see :mod:`.history`); the server's clock is read
once, on opening, to measure how far this process's clock is from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import psycopg
import psycopg.conninfo

from aicc_async.bulk.dialer.history import (
    FORMAT,
    MAX_CLOCK_SKEW,
    SCHEMA_VERSION,
    ContactHistory,
    HistoryEntry,
    check_version,
)
from aicc_async.bulk.journal.location import mask_dsn
from aicc_async.bulk.journal.pg_connect import LOCKS, connect, said, secret
from aicc_async.errors import JournalError

__all__ = ["PostgresHistory"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_LOCK = LOCKS + 16  # (class, 0): creating the tables; (class, 1): writing entries

_SCHEMA = [
    """CREATE TABLE aicc_contact_history (
        singleton integer PRIMARY KEY CHECK (singleton = 1),
        format text NOT NULL,
        version integer NOT NULL,
        created double precision NOT NULL
    )""",
    """CREATE TABLE aicc_contacts (
        id bytea PRIMARY KEY,
        number text NOT NULL,
        at double precision NOT NULL,
        campaign text NOT NULL,
        key text NOT NULL,
        attempt integer NOT NULL
    )""",
    "CREATE INDEX aicc_contacts_by_number ON aicc_contacts (number, at)",
]

_INSERT = (
    "INSERT INTO aicc_contacts (id, number, at, campaign, key, attempt) "
    "SELECT * FROM unnest(%s::bytea[], %s::text[], %s::float8[], %s::text[], %s::text[], "
    "%s::integer[]) ON CONFLICT (id) DO NOTHING"
)
_COUNT = (
    "SELECT number, count(*) FROM aicc_contacts WHERE number = ANY(%s) AND at > %s GROUP BY number"
)


class PostgresHistory(ContactHistory):
    """The contact history of a PostgreSQL database. Create with
    :func:`~.history.open_history`."""

    _errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        dsn: str,
        clock: Callable[[], float],
        skew: float,
    ) -> None:
        super().__init__(mask_dsn(dsn), clock)
        self._conn = conn
        self._dsn = dsn
        self._secret = secret(dsn)
        self._skew = skew

    @property
    def clock_skew(self) -> float:
        """Seconds the server's clock was ahead of :attr:`clock` on opening."""
        return self._skew

    @classmethod
    async def open(cls, dsn: str, clock: Callable[[], float]) -> PostgresHistory:
        """Open the history of the database at ``dsn``, creating its tables if missing."""
        conn = await asyncio.to_thread(cls._connect, dsn)
        try:
            server = await asyncio.to_thread(cls._prepare, conn, mask_dsn(dsn))
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise JournalError(
                    f"the contact history {mask_dsn(dsn)} could not be opened "
                    f"({said(exc, secret(dsn))})"
                ) from None
            raise
        skew = server - clock()
        if abs(skew) > MAX_CLOCK_SKEW:
            logger.warning(
                "this machine's clock is %.0f s %s the clock of the contact history's "
                "database server (%s): calls it records and counts are placed by this "
                "machine's clock, so the limit's window shifts by as much. Synchronise "
                "the clocks (NTP).",
                abs(skew),
                "behind" if skew > 0 else "ahead of",
                mask_dsn(dsn),
            )
        return cls(conn, dsn, clock, skew)

    @staticmethod
    def _connect(dsn: str) -> psycopg.Connection[Any]:
        return connect(dsn, "the contact history's PostgreSQL", "aicc-async contact history")

    @staticmethod
    def _prepare(conn: psycopg.Connection[Any], masked: str) -> float:
        """Create the tables if missing, check the version row; the server's clock."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK,))
            found = conn.execute("SELECT to_regclass('aicc_contact_history')").fetchone()
            if found is None or found[0] is None:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO aicc_contact_history (singleton, format, version, created) "
                    "VALUES (1, %s, %s, %s)",
                    (FORMAT, SCHEMA_VERSION, time.time()),
                )
            row = conn.execute("SELECT format, version FROM aicc_contact_history").fetchone()
            check_version(f"the database {masked}", row)
            now = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        assert now is not None
        return float(now[0])

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`ContactHistory._run`, on a connection made anew if the server dropped
        the last one (a restart): every operation may run again, as recording an entry
        twice records it once."""
        return await super()._run(self._reconnecting, fn, *args)

    def _reconnecting(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
        logger.warning("the contact history %s lost its connection: reconnecting", self.location)
        self._conn.close()
        self._conn = self._connect(self._dsn)
        return fn(*args)

    def _problem(self, exc: Exception) -> JournalError:
        return JournalError(
            f"the contact history {self.location} could not be read or written "
            f"({said(exc, self._secret)}); the calls it recorded so far are kept"
        )

    # -- reading and writing (on the worker thread) ----------------------------------------

    def _insert(self, entries: Sequence[HistoryEntry]) -> int:
        columns = (
            [e.identity for e in entries],
            [e.number for e in entries],
            [e.at for e in entries],
            [e.campaign for e in entries],
            [e.key for e in entries],
            [e.attempt for e in entries],
        )
        return self._conn.execute(_INSERT, columns).rowcount if entries else 0

    def _write(self, fn: Callable[[], T]) -> T:
        with self._conn.transaction():
            # One writer of the history at a time, as SQLite has: an admission's count
            # and its inserts are never interleaved with another writer's.
            self._conn.execute("SELECT pg_advisory_xact_lock(%s, 1)", (_LOCK,))
            return fn()

    def _known(self, entries: Sequence[HistoryEntry]) -> dict[tuple[str, str, int], str]:
        slots = {entry.identity: entry.slot for entry in entries}
        found = self._conn.execute(
            "SELECT id, number FROM aicc_contacts WHERE id = ANY(%s)", (list(slots),)
        )
        return {slots[bytes(identity)]: str(number) for identity, number in found}

    def _count(self, numbers: Sequence[str], since: float) -> dict[str, int]:
        found = self._conn.execute(_COUNT, (list(numbers), since))
        return {str(number): int(calls) for number, calls in found}

    def _close_db(self) -> None:
        self._conn.close()
