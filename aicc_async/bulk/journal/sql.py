"""The journal's SQL, once for both backends.

:class:`SQLJournal` implements :class:`~aicc_async.bulk.journal.Journal` over a
DB-API connection used from one worker thread (never the event loop), with SQL that
SQLite and PostgreSQL read alike: tables ``campaign`` (one row), ``rows`` and
``early_outcomes``, ``?`` placeholders. The SQLite backend has those tables; the
PostgreSQL one shows its campaign's slice of the shared tables under those names
(temporary views of its session) and turns ``?`` into ``%s``. What differs (opening,
locks, durability, which ``sending`` rows a recovery may settle, how a claim locks
its rows) is a hook the backends fill in.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import attrs

from aicc_async._numbers import normalise_number
from aicc_async.bulk.journal.rules import (
    _USED,
    DUPLICATE,
    INTERRUPTED,
    INTERRUPTED_DESCRIPTION,
    INVALID,
    SETTLED,
    SETTLED_DESCRIPTION,
    SUPPRESSED,
    TALK_BUCKETS,
    WITHDRAWN,
    WITHDRAWN_DESCRIPTION,
    Activity,
    Backlog,
    Claim,
    Claimed,
    Finished,
    Gate,
    Journal,
    Known,
    LoadedRow,
    Mode,
    Outcome,
    Outcomes,
    Problem,
    ProblemRow,
    RatePoint,
    State,
    StateCounts,
    Target,
    plan_load,
    sort_claims,
)
from aicc_async.bulk.journal.thread import OneThread
from aicc_async.errors import CampaignError, JournalError

__all__ = ["SQLJournal"]

T = TypeVar("T")

_KEYS_PER_SELECT = 500  # below SQLite's oldest limit on bound parameters (999)
_RATE_EVERY = 1.0  # seconds between two points of the rate history written
#: Points of the rate history one run keeps at most: beyond, pairs of them are merged
#: (their counts added) and points are written half as often.
_MAX_RATE_POINTS = 2000


class Cursor(Protocol):
    """What the journal reads of a DB-API cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Db(Protocol):
    """A connection as the journal uses it (``sqlite3.Connection`` is one)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


def normalise_numbers(db: Db) -> int:
    """Store every row's number normalised (:func:`~aicc_async._numbers.normalise_number`),
    as rows are loaded now: a journal written before numbers were compared normalised
    holds them as written, and a row sent as ``+86...`` must block one that says
    ``0086...``. Call inside a write transaction; returns how many rows changed."""
    changed = [
        (normal, seq)
        for seq, number in db.execute("SELECT seq, number FROM rows WHERE number IS NOT NULL")
        if (normal := normalise_number(number)) != number
    ]
    db.executemany("UPDATE rows SET number = ? WHERE seq = ?", changed)
    return len(changed)


#: States a claimed row comes back in when its call was not placed (the claim is undone).
_NOT_PLACED = frozenset({"pending", "limited"})
SUPPRESSED_DESCRIPTION = "the number is on a do-not-call list; never phoned"
#: The states of rows the report lists as problems (and their export writes out).
_PROBLEMS = "('failed', 'unknown', 'duplicate', 'suppressed', 'limited')"


def _startable(gate: Gate | None) -> Clause:
    """What a ``pending`` row needs to be claimed under ``gate``: a row scheduled for a
    redial waits for its time (and for a gate allowing one more call); with calling
    hours, its zone must be open."""
    if gate is None:
        return Clause(" AND due IS NULL")
    sql = " AND (due IS NULL OR (due <= ? AND attempt < ?))"
    args: tuple[Any, ...] = (gate.now, gate.attempts)
    if gate.zones is not None:
        zones = gate.zones
        listed = f"zone IN ({marks(len(zones))}) OR " if zones else ""
        sql += f" AND ({listed}(zone IS NULL AND 1 = ?))"
        args += (*zones, int(gate.unzoned))
    return Clause(sql, args)


def marks(n: int) -> str:
    """``n`` placeholders, comma-separated."""
    return ",".join("?" * n)


@attrs.frozen
class Clause:
    """A piece of SQL and the parameters its ``?`` marks take, kept together."""

    sql: str = ""
    args: tuple[Any, ...] = ()


class Sharing:
    """What a journal adds to its claims so that several workers may share a campaign:
    nothing for one process (SQLite); PostgreSQL's workers override each method."""

    def owned(self) -> Clause:
        """Limits the rows a commit may finish (after ``WHERE seq = ?``)."""
        return Clause()

    def stamp(self) -> Clause:
        """Records who claimed a row (after the ``SET`` of its ``sending`` mark)."""
        return Clause()

    def lock_rows(self) -> str:
        """After the claim's ``SELECT``: row locks."""
        return ""

    def fence(self) -> str:
        """After the look-up of rows by number, so that it is planned on its own (by
        the number index) whatever the planner thinks of the states."""
        return ""


class SQLJournal(Journal, OneThread):
    """A journal over a :class:`Db` used from one worker thread."""

    _sharing: Sharing = Sharing()
    """How its claims stay safe among the workers that share the campaign."""

    _BEGIN: ClassVar[str] = "BEGIN"
    """The statement that starts a write transaction."""
    _FRESH: ClassVar[str] = "--journal"
    """What to give anew for another campaign (messages)."""
    _errors: ClassVar[tuple[type[Exception], ...]] = ()
    """The driver's exceptions: they become ``JournalError``."""

    def __init__(self, db: Db, kind: str, mode: Mode, location: str) -> None:
        self.kind = kind
        self.mode = mode
        self.read_only = mode == "read"
        self.location = location
        self._db = db
        self._accepted: int | None = None  # the accepted load before the one under way
        OneThread.__init__(self, "aicc-journal")
        self._sampler = uuid.uuid4().hex[:12]
        """Whose points of the rate history this journal writes (a worker's id on
        PostgreSQL): one run's points are thinned apart from the others'."""
        self._rate_due: RatePoint | None = None  # noted, not yet written
        self._rate_written = -math.inf  # when the last point written was taken
        self._rate_every = _RATE_EVERY
        self._rate_points = 0  # written by this journal (and kept)

    def _whole_second(self, column: str) -> str:
        """SQL for the second the UNIX time ``column`` falls in (SQLite's CAST truncates)."""
        return f"CAST({column} AS INTEGER)"

    # -- running SQL ----------------------------------------------------------------------

    def _problem(self, exc: Exception) -> JournalError:
        return JournalError(
            f"the journal {self.location} could not be read or written ({exc}); the rows "
            "it recorded so far are kept"
        )

    def _transaction(self, fn: Callable[[Db], T]) -> T:
        """``fn(db)`` inside ``BEGIN`` .. ``COMMIT`` (``ROLLBACK`` if it raises)."""
        db = self._db
        db.execute(self._BEGIN)
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def _write(self, fn: Callable[[Db], T]) -> T:
        """Run ``fn(db)`` in one write transaction on the journal's thread."""
        if self.read_only:
            raise CampaignError(f"the journal {self.location} is open read-only")
        return await self._run(self._transaction, fn)

    def _close_db(self) -> None:
        close: Callable[[], object] = getattr(self._db, "close")  # noqa: B009 - any Db
        close()

    # -- binding --------------------------------------------------------------------------

    async def bind(self, target: Target) -> None:
        def work(db: Db) -> None:
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
                f"the journal {self.location} belongs to a campaign sent to "
                f"{bound.describe()}, not {target.describe()}: use a new {self._FRESH} for "
                "this target. Nothing was sent."
            )

        await self._write(work)

    async def source(self) -> str | None:
        return await self._run(
            lambda: self._db.execute("SELECT source FROM campaign").fetchone()[0]
        )

    async def target(self) -> Target | None:
        found = await self._run(
            lambda: self._db.execute("SELECT target FROM campaign").fetchone()[0]
        )
        return None if found is None else Target(**json.loads(found))

    # -- loading input --------------------------------------------------------------------

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

        def work(db: Db) -> tuple[int, bool]:
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
        return await self._write(lambda db: self._load(db, rows, load))

    _PER_SELECT: ClassVar[int] = _KEYS_PER_SELECT
    """How many values one ``IN`` list holds at most."""

    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """SQL saying ``column`` is one of ``values``, and its parameters."""
        return f"{column} IN ({marks(len(values))})", tuple(values)

    def _known(self, db: Db, keys: Sequence[str]) -> dict[str, Known]:
        """What the journal holds for ``keys``."""
        known: dict[str, Known] = {}
        for i in range(0, len(keys), self._PER_SELECT):
            where, args = self._in("key", keys[i : i + self._PER_SELECT])
            for key, fingerprint, state, code, loaded in db.execute(
                # A row waiting for a redial was sent: its key names it for good.
                "SELECT key, fingerprint, CASE WHEN state = 'pending' AND attempt > 0 "  # noqa: S608 - only '?' marks
                f"THEN 'done' ELSE state END, code, loaded FROM rows WHERE {where}",
                args,
            ):
                known[key] = (fingerprint, state, code, loaded)
        return known

    def _load(self, db: Db, rows: Sequence[LoadedRow], load: int) -> tuple[list[State], int, int]:
        plan = plan_load(rows, self._known(db, [row.key for row in rows]), load)
        now = time.time()

        def values(row: LoadedRow) -> tuple[Any, ...]:
            return (
                row.fingerprint,
                row.state,
                row.payload,
                row.number,
                row.code,
                row.description,
                row.zone,
                load,
                now,
            )

        db.executemany(
            "INSERT INTO rows (key, fingerprint, state, payload, number, code, description, "
            "zone, loaded, updated, first_load) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(row.key, *values(row), load) for row in plan.added],
        )
        db.executemany(
            "UPDATE rows SET fingerprint = ?, state = ?, payload = ?, number = ?, code = ?, "
            "description = ?, zone = ?, loaded = ?, updated = ?, reference = NULL WHERE key = ?",
            [(*values(row), row.key) for row in plan.replaced],
        )
        db.executemany("UPDATE rows SET loaded = ? WHERE key = ?", [(load, k) for k in plan.seen])
        db.executemany(
            "UPDATE rows SET state = 'pending', code = NULL, description = NULL, updated = ? "
            "WHERE key = ?",
            [(now, k) for k in plan.revived],
        )
        return [row.state for row in plan.added], len(plan.replaced), plan.known

    async def end_load(self, load: int, known: int, source: str | None) -> int:
        def work(db: Db) -> int:
            earlier = db.execute(
                "SELECT count(*) FROM rows WHERE first_load < ?", (load,)
            ).fetchone()[0]
            if earlier and not known:
                db.execute("DELETE FROM rows WHERE first_load = ?", (load,))
                db.execute("UPDATE campaign SET current_load = ?", (self._accepted,))
                sent = db.execute(f"SELECT count(*) FROM rows WHERE {_USED}").fetchone()[0]  # noqa: S608 - constant
                return -1 - int(sent)
            db.execute(
                "UPDATE campaign SET current_load = ?, accepted = ?, source = coalesce(?, source)",
                (load, load, source),
            )
            return int(
                db.execute(
                    "UPDATE rows SET state = 'withdrawn', code = ?, description = ?, "
                    "updated = ? WHERE state IN ('pending', 'duplicate', 'suppressed', 'limited') "
                    "AND loaded != ?",
                    (WITHDRAWN, WITHDRAWN_DESCRIPTION, time.time(), load),
                ).rowcount
            )

        withdrawn = await self._write(work)
        if withdrawn < 0:
            sent = -1 - withdrawn
            if not sent:
                raise CampaignError(
                    f"this input has no row in common with the campaign in {self.location}: "
                    f"it looks like another file. Use a new {self._FRESH} for a new "
                    "campaign. Nothing was sent."
                )
            raise CampaignError(
                f"this input has no row in common with the campaign in {self.location}, "
                f"which already sent {sent:,} rows: it looks like another file, or this "
                "campaign's input with other keys (an id column added, removed or "
                "renumbered?). If it is this campaign's input, give its rows back the keys "
                f"they had: a new {self._FRESH} would send those {sent:,} rows again. "
                f"Another campaign's input needs a {self._FRESH} of its own. Nothing was sent."
            )
        return withdrawn

    async def current_load(self) -> int | None:
        found = await self._run(
            lambda: self._db.execute("SELECT current_load FROM campaign").fetchone()[0]
        )
        return None if found is None else int(found)

    # -- sending --------------------------------------------------------------------------

    async def requeue(
        self, *, unknown: bool, failed: bool, duplicate: bool = False, limited: bool = True
    ) -> StateCounts:
        def work(db: Db) -> StateCounts:
            current = "loaded = (SELECT current_load FROM campaign)"
            # Never sent, so back as they were loaded: a limited row is checked against the
            # contact history again when claimed, a duplicate against the numbers used.
            unsent = [s for s, asked in (("limited", limited), ("duplicate", duplicate)) if asked]
            if unsent:
                db.execute(
                    f"UPDATE rows SET state = 'pending', code = NULL, description = NULL, "  # noqa: S608 - only '?' marks
                    f"updated = ? WHERE state IN ({marks(len(unsent))}) AND {current}",
                    (time.time(), *unsent),
                )
            if unknown:
                self._settle_unknown(db)  # never re-send a row its release event settled
                db.execute(
                    f"UPDATE rows SET state = 'pending', updated = ? "  # noqa: S608 - constant
                    f"WHERE state = 'unknown' AND {current}",
                    (time.time(),),
                )
            if failed:
                db.execute(
                    f"UPDATE rows SET state = 'pending', updated = ? "  # noqa: S608 - constant
                    f"WHERE state = 'failed' AND coalesce(code, '') <> ? AND {current}",
                    (time.time(), INVALID),
                )
            return self._counts(db)

        return await self._write(work)

    def _stale(self) -> str:
        """The rows a recovery settles: SQLite's single process, every ``sending`` row."""
        return "state = 'sending'"

    def _recover(self, db: Db, idempotent: bool) -> int:
        now = time.time()
        if idempotent:
            sql = (
                "UPDATE rows SET state = 'pending', updated = ?, "  # noqa: S608 - constant
                f"attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END WHERE {self._stale()}"
            )
            return db.execute(sql, (now,)).rowcount
        recovered = db.execute(
            "UPDATE rows SET state = 'unknown', code = ?, description = ?, updated = ? "  # noqa: S608 - constant
            f"WHERE {self._stale()}",
            (INTERRUPTED, INTERRUPTED_DESCRIPTION, now),
        ).rowcount
        if recovered:
            self._settle_unknown(db)
        return recovered

    async def recover(self, *, idempotent: bool) -> int:
        """Settle rows left ``sending`` by a run that stopped without recording them.

        Non-idempotent campaigns mark them ``unknown`` (they may have been processed);
        idempotent ones put them back to ``pending``. Returns how many there were.
        """
        return await self._write(lambda db: self._recover(db, idempotent))

    async def commit(
        self,
        finished: Sequence[Finished],
        claim: int,
        after: int,
        *,
        once_per_number: bool,
        gate: Gate | None = None,
    ) -> Claim:
        return await self._write(
            lambda db: self._commit(db, finished, claim, after, once_per_number, gate)
        )

    def _may_claim(self, db: Db) -> bool:
        """Called first in each commit's transaction: False to claim nothing."""
        return True

    def _mark_sending(self, db: Db, seqs: Sequence[int], now: float, sent: float) -> None:
        where, args = self._in("seq", seqs)
        stamp = self._sharing.stamp()
        db.execute(
            "UPDATE rows SET state = 'sending', sends = sends + 1, updated = ?, sent = ?, "  # noqa: S608 - only '?' marks
            f"attempt = attempt + 1, due = NULL{stamp.sql} WHERE {where}",
            (now, sent, *stamp.args, *args),
        )

    def _commit(
        self,
        db: Db,
        finished: Sequence[Finished],
        claim: int,
        after: int,
        once_per_number: bool,
        gate: Gate | None = None,
    ) -> Claim:
        if not self._may_claim(db):
            claim = 0
        now = time.time()
        due = self._rate_due
        if due is not None and due.time - self._rate_written >= self._rate_every:
            self._write_rate(db)
        owned = self._sharing.owned()
        db.executemany(
            "UPDATE rows SET state = ?, code = ?, description = ?, reference = ?, updated = ?, "  # noqa: S608 - constant
            f"callback = ?, attempt = attempt - ? WHERE seq = ?{owned.sql}",
            [
                (
                    f.state,
                    f.code,
                    f.description,
                    f.reference,
                    now,
                    int(f.callback),
                    int(f.state in _NOT_PLACED),  # back unsent: that call was not placed
                    f.seq,
                    *owned.args,
                )
                for f in finished
            ],
        )
        if any(f.reference is not None for f in finished):
            self._adopt_early_outcomes(db)
        unknown = [f.seq for f in finished if f.state == "unknown"]
        if unknown and db.execute("SELECT 1 FROM early_outcomes LIMIT 1").fetchone() is not None:
            numbers: set[str] = set()
            for i in range(0, len(unknown), self._PER_SELECT):
                where, args = self._in("seq", unknown[i : i + self._PER_SELECT])
                numbers.update(
                    n
                    for (n,) in db.execute(
                        f"SELECT number FROM rows WHERE {where} AND number IS NOT NULL",  # noqa: S608 - only '?' marks
                        args,
                    )
                )
            for number in sorted(numbers):
                self._settle_unknown(db, number)
        claimed: list[Claimed] = []
        duplicates: list[tuple[str, int]] = []
        suppressed: list[int] = []
        taken: dict[str, str] = {}  # number -> key of the row that used it
        startable = _startable(gate)
        while len(claimed) < claim:
            found = db.execute(
                "SELECT seq, key, payload, number, attempt FROM rows WHERE state = 'pending' "  # noqa: S608 - constant
                f"AND loaded = (SELECT current_load FROM campaign) AND seq > ?{startable.sql} "
                f"ORDER BY seq LIMIT ?{self._sharing.lock_rows()}",
                (after, *startable.args, claim - len(claimed)),
            ).fetchall()
            if not found:
                break
            after = found[-1][0]
            if gate is not None and (gate.screen is not None or gate.shared_lists):
                listed = self._listed(db, gate, [r[3] for r in found if r[3] is not None])
                suppressed += [r[0] for r in found if r[3] in listed]
                found = [r for r in found if r[3] not in listed]
            if once_per_number:
                self._numbers_used(db, [r[3] for r in found if r[3] not in taken], taken)
            more, repeated = sort_claims(found, taken, once_per_number)
            claimed += more
            duplicates += repeated
        db.executemany(
            "UPDATE rows SET state = 'duplicate', code = ?, description = ?, "
            "updated = ? WHERE seq = ?",
            [(DUPLICATE, description, now, seq) for description, seq in duplicates],
        )
        db.executemany(
            "UPDATE rows SET state = 'suppressed', code = ?, description = ?, due = NULL, "
            "updated = ? WHERE seq = ?",
            [(SUPPRESSED, SUPPRESSED_DESCRIPTION, now, seq) for seq in suppressed],
        )
        if claimed:
            self._mark_sending(db, [c.seq for c in claimed], now, now if gate is None else gate.now)
        return Claim(claimed, len(duplicates), after, len(suppressed))

    async def share_do_not_call(self, source: str, numbers: Collection[str]) -> None:
        """Nothing to keep: one process's run checks its own lists."""

    def _listed(self, db: Db, gate: Gate, numbers: Sequence[str]) -> set[str]:
        """Which of ``numbers`` are on a do-not-call list ``gate`` names."""
        screen = gate.screen
        return set() if screen is None else {n for n in numbers if screen(n)}

    def _numbers_used(self, db: Db, numbers: Sequence[str | None], taken: dict[str, str]) -> None:
        """Add to ``taken`` which of ``numbers`` a row already used (number -> its key)."""
        wanted = sorted({n for n in numbers if n is not None})
        for i in range(0, len(wanted), self._PER_SELECT):
            where, args = self._in("number", wanted[i : i + self._PER_SELECT])
            for number, key in db.execute(
                "SELECT number, min(key) FROM (SELECT number, key, state, code FROM rows "  # noqa: S608 - only '?' marks
                f"WHERE {where}{self._sharing.fence()}) AS found WHERE {_USED} GROUP BY number",
                args,
            ):
                taken.setdefault(number, key)

    # -- the rate history -----------------------------------------------------------------

    def note_rate(self, point: RatePoint) -> None:
        due = self._rate_due
        self._rate_due = point if due is None else due.then(point)

    async def flush_rate(self) -> None:
        if self._rate_due is not None:
            await self._write(self._write_rate)

    def _write_rate(self, db: Db) -> None:
        """Write the point held back (inside a write transaction); thin this run's
        points once they are too many."""
        point, self._rate_due = self._rate_due, None
        if point is None:
            return
        db.execute(
            "INSERT INTO rate_samples (worker, time, rate, sent, throttled, requeued) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self._sampler, *attrs.astuple(point)),
        )
        self._rate_written = point.time
        self._rate_points += 1
        if self._rate_points <= _MAX_RATE_POINTS:
            return
        held = [
            RatePoint(float(t), None if r is None else float(r), int(s), int(th), int(q))
            for t, r, s, th, q in db.execute(
                "SELECT time, rate, sent, throttled, requeued FROM rate_samples "
                "WHERE worker = ? ORDER BY time",
                (self._sampler,),
            ).fetchall()
        ]
        merged = [
            held[i] if i + 1 == len(held) else held[i].then(held[i + 1])
            for i in range(0, len(held), 2)
        ]
        db.execute("DELETE FROM rate_samples WHERE worker = ?", (self._sampler,))
        db.executemany(
            "INSERT INTO rate_samples (worker, time, rate, sent, throttled, requeued) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(self._sampler, *attrs.astuple(p)) for p in merged],
        )
        self._rate_points = len(merged)
        self._rate_every *= 2

    async def rate_history(self) -> tuple[RatePoint, ...]:
        def work() -> tuple[RatePoint, ...]:
            return tuple(
                RatePoint(float(t), None if r is None else float(r), int(s), int(th), int(q))
                for t, r, s, th, q in self._db.execute(
                    "SELECT max(time), max(rate), sum(sent), sum(throttled), sum(requeued) "  # noqa: S608 - constant
                    f"FROM rate_samples GROUP BY {self._whole_second('time')} ORDER BY 1"
                ).fetchall()
            )

        return await self._run(work)

    # -- reporting ------------------------------------------------------------------------

    async def counts(self) -> StateCounts:
        return await self._run(self._counts, self._db)

    @staticmethod
    def _counts(db: Db) -> StateCounts:
        found = dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
        return StateCounts(**found)

    async def problems(self) -> list[Problem]:
        def work() -> list[Problem]:
            return [
                Problem(state, code or "", count, example or "")
                for state, code, count, example in self._db.execute(
                    "SELECT state, code, count(*), min(description) FROM rows "  # noqa: S608 - constant
                    f"WHERE state IN {_PROBLEMS} GROUP BY state, code "
                    "ORDER BY count(*) DESC, state, code"
                )
            ]

        return await self._run(work)

    async def problem_rows(self, after: int, limit: int) -> list[ProblemRow]:
        def work() -> list[ProblemRow]:
            return [
                ProblemRow(*row)
                for row in self._db.execute(
                    "SELECT seq, key, state, code, description, reference, payload FROM rows "  # noqa: S608 - constant
                    f"WHERE state IN {_PROBLEMS} AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (after, limit),
                ).fetchall()
            ]

        return await self._run(work)

    # -- call outcomes --------------------------------------------------------------------

    async def record_outcome(
        self,
        reference: str,
        outcome: Outcome,
        *,
        number: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Record ``outcome`` on the row whose call has serial number ``reference``.

        When no row has it, the event's called ``number`` (normalised) may settle the
        one ``unknown`` row it matches (see :meth:`_settle_unknown`). Returns False
        when no row took it: the outcome is kept (with its number) and recorded when a
        row with that serial number is, or when the one row in flight with its number
        turns ``unknown``. Recording the same event again changes nothing.
        """
        values = (
            "answered" if outcome.answered else "not_answered",
            outcome.release_reason,
            outcome.talk_duration,
            outcome.release_time,
        )
        heard = time.time() if now is None else now

        def work(db: Db) -> bool:
            found = db.execute(
                "UPDATE rows SET outcome = ?, release_reason = ?, talk_duration = ?, "
                "release_time = ?, heard = coalesce(heard, ?) WHERE reference = ?",
                (*values, heard, reference),
            ).rowcount
            if found:
                return True
            if db.execute(  # an earlier call of a row redialed since (sent again)
                "UPDATE attempts SET outcome = ?, release_reason = ?, talk_duration = ?, "
                "release_time = ? WHERE reference = ?",
                (*values, reference),
            ).rowcount:
                return True
            db.execute("DELETE FROM early_outcomes WHERE reference = ?", (reference,))
            db.execute(
                "INSERT INTO early_outcomes (outcome, release_reason, talk_duration, "
                "release_time, reference, received, number) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*values, reference, heard, number),
            )
            return number is not None and reference in self._settle_unknown(db, number)

        return await self._write(work)

    async def record_refused(self, reason: str) -> None:
        def work(db: Db) -> None:
            if not db.execute(
                "UPDATE refused_events SET events = events + 1 WHERE reason = ?", (reason,)
            ).rowcount:
                db.execute("INSERT INTO refused_events (reason, events) VALUES (?, 1)", (reason,))

        await self._write(work)

    async def has_outcome(self, reference: str) -> bool:
        found = await self._run(
            lambda: self._db.execute(
                "SELECT 1 FROM rows WHERE reference = ? AND outcome IS NOT NULL "
                "UNION ALL SELECT 1 FROM early_outcomes WHERE reference = ? "
                "UNION ALL SELECT 1 FROM attempts WHERE reference = ? AND outcome IS NOT NULL",
                (reference, reference, reference),
            ).fetchone()
        )
        return found is not None

    @staticmethod
    def _adopt_early_outcomes(db: Db) -> None:
        """Move outcomes that arrived before their row's serial number was recorded."""
        if db.execute("SELECT 1 FROM early_outcomes LIMIT 1").fetchone() is None:
            return
        matched = db.execute(
            "SELECT e.reference, e.outcome, e.release_reason, e.talk_duration, e.release_time, "
            "e.received FROM early_outcomes e JOIN rows r ON r.reference = e.reference"
        ).fetchall()
        db.executemany(
            "UPDATE rows SET outcome = ?, release_reason = ?, talk_duration = ?, "
            "release_time = ?, heard = ? WHERE reference = ?",
            [(o, reason, talk, at, heard, ref) for ref, o, reason, talk, at, heard in matched],
        )
        db.executemany("DELETE FROM early_outcomes WHERE reference = ?", [(m[0],) for m in matched])

    @staticmethod
    def _settle_unknown(db: Db, number: str | None = None) -> set[str]:
        """Settle ``unknown`` rows by the kept release events of their number (all kept
        events, or those of ``number``); returns the serial numbers that settled one.

        An event settles a row when its called number matches exactly one row that is
        ``unknown`` or in flight (``sending``) and was sent before the event came, and
        that row is ``unknown``: AICC placed the call, so the row is ``done`` with the
        event's serial number and outcome, and is never sent again. Two candidates
        (repeated numbers) settle nothing; a row in flight is settled once its send is
        recorded ``unknown`` (a send recorded ``done`` takes its own event).
        """
        where, args = (
            ("number = ?", (number,)) if number is not None else ("number IS NOT NULL", ())
        )
        events = db.execute(
            "SELECT reference, number, received, outcome, release_reason, talk_duration, "  # noqa: S608 - constant
            f"release_time FROM early_outcomes WHERE {where}",
            args,
        ).fetchall()
        settled: set[str] = set()
        for reference, called, received, outcome, reason, talk, at in events:
            candidates = db.execute(
                "SELECT seq, state FROM rows WHERE number = ? AND state IN ('unknown', 'sending') "
                "AND sent IS NOT NULL AND sent <= ?",
                (called, received),
            ).fetchall()
            if len(candidates) != 1 or candidates[0][1] != "unknown":
                continue
            if db.execute(
                "UPDATE rows SET state = 'done', code = ?, description = ?, reference = ?, "
                "outcome = ?, release_reason = ?, talk_duration = ?, release_time = ?, "
                "heard = ?, updated = ? WHERE seq = ? AND state = 'unknown'",
                (
                    SETTLED,
                    SETTLED_DESCRIPTION,
                    reference,
                    outcome,
                    reason,
                    talk,
                    at,
                    received,
                    time.time(),
                    candidates[0][0],
                ),
            ).rowcount:
                db.execute("DELETE FROM early_outcomes WHERE reference = ?", (reference,))
                settled.add(reference)
        return settled

    async def outcomes(self) -> Outcomes:
        def work() -> Outcomes:
            found = dict(
                self._db.execute(
                    "SELECT coalesce(outcome, 'awaiting'), count(*) FROM rows "
                    "WHERE state = 'done' AND reference IS NOT NULL "
                    "AND (outcome IS NOT NULL OR coalesce(callback, 1) = 1) GROUP BY 1"
                ).fetchall()
            )
            reasons = self._db.execute(  # of every call: the earlier calls of redials too
                "SELECT coalesce(release_reason, ''), count(*) FROM ("
                "SELECT release_reason FROM rows WHERE outcome IS NOT NULL UNION ALL "
                "SELECT release_reason FROM attempts WHERE outcome IS NOT NULL"
                ") AS calls GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
            refused = self._db.execute(
                "SELECT reason, events FROM refused_events ORDER BY 2 DESC, 1"
            ).fetchall()
            unmatched = self._db.execute("SELECT count(*) FROM early_outcomes").fetchone()[0]
            settled = self._db.execute(
                "SELECT count(*) FROM rows WHERE state = 'done' AND code = ?", (SETTLED,)
            ).fetchone()[0]
            return Outcomes(
                answered=found.get("answered", 0),
                not_answered=found.get("not_answered", 0),
                awaiting=found.get("awaiting", 0),
                reasons=tuple((str(r), int(n)) for r, n in reasons),
                refused=tuple((str(r), int(n)) for r, n in refused),
                unmatched=int(unmatched),
                settled=int(settled),
            )

        return await self._run(work)

    async def activity(self) -> Activity:
        ranges = " ".join(
            f"WHEN talk_duration < {upper} THEN {lower}"
            for lower, upper in itertools.pairwise(TALK_BUCKETS)
        )

        def work() -> Activity:
            sent = self._db.execute(
                "SELECT CAST(updated AS BIGINT) / 60, count(*) FROM rows WHERE sends > 0 "
                "AND state IN ('done', 'failed', 'unknown') GROUP BY 1 ORDER BY 1"
            ).fetchall()
            talks = self._db.execute(
                f"SELECT CASE {ranges} ELSE {TALK_BUCKETS[-1]} END, count(*) FROM rows "  # noqa: S608 - constants
                "WHERE outcome = 'answered' AND talk_duration IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
            return Activity(
                tuple((int(m), int(n)) for m, n in sent),
                tuple((int(b), int(n)) for b, n in talks),
            )

        return await self._run(work)

    async def unanswered_rows(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        def work() -> list[tuple[int, str, str]]:
            return [
                (int(seq), str(key), str(payload))
                for seq, key, payload in self._db.execute(
                    "SELECT seq, key, payload FROM rows WHERE outcome = 'not_answered' "
                    "AND seq > ? ORDER BY seq LIMIT ?",
                    (after, limit),
                ).fetchall()
            ]

        return await self._run(work)

    # -- redials --------------------------------------------------------------------------

    #: ``done`` rows of the current input whose call was not answered and may be called
    #: again: fewer than ``?`` calls, the event heard within ``?`` seconds of the send.
    _REDIALABLE = (
        "state = 'done' AND outcome = 'not_answered' AND attempt > 0 AND attempt < ? "
        "AND heard IS NOT NULL AND sent IS NOT NULL AND heard - sent <= ? "
        "AND loaded = (SELECT current_load FROM campaign)"
    )

    async def redial(self, attempts: int, after: float, wait: float) -> int:
        def work(db: Db) -> int:
            # The rows are chosen (and, shared, locked) once: an event recorded by another
            # connection meanwhile must not reset a row whose call was not archived.
            seqs = [
                seq
                for (seq,) in db.execute(
                    f"SELECT seq FROM rows WHERE {self._REDIALABLE}"  # noqa: S608 - constant
                    f"{self._sharing.lock_rows()}",
                    (attempts, wait),
                ).fetchall()
            ]
            for i in range(0, len(seqs), self._PER_SELECT):
                where, chosen = self._in("seq", seqs[i : i + self._PER_SELECT])
                db.execute(
                    "INSERT INTO attempts (seq, attempt, number, reference, outcome, "  # noqa: S608 - only '?' marks
                    "release_reason, talk_duration, release_time, sent, heard) "
                    "SELECT seq, attempt, number, reference, outcome, release_reason, "
                    f"talk_duration, release_time, sent, heard FROM rows WHERE {where} "
                    "ON CONFLICT DO NOTHING",  # archived already: the row is reset all the same
                    chosen,
                )
                db.execute(
                    "UPDATE rows SET state = 'pending', due = heard + ?, code = NULL, "  # noqa: S608 - only '?' marks
                    "description = NULL, reference = NULL, outcome = NULL, "
                    "release_reason = NULL, talk_duration = NULL, release_time = NULL, "
                    f"heard = NULL, callback = NULL, updated = ? WHERE {where}",
                    (after, time.time(), *chosen),
                )
            return len(seqs)

        return await self._write(work)

    async def backlog(self, attempts: int, wait: float, now: float) -> Backlog:
        def work() -> Backlog:
            db = self._db
            current = "loaded = (SELECT current_load FROM campaign)"
            zones = db.execute(
                f"SELECT zone, count(*) FROM rows WHERE state = 'pending' AND {current} "  # noqa: S608 - constant
                "AND (due IS NULL OR (due <= ? AND attempt < ?)) GROUP BY zone ORDER BY 1",
                (now, attempts),
            ).fetchall()
            redials, first = db.execute(
                f"SELECT count(*), min(due) FROM rows WHERE state = 'pending' AND {current} "  # noqa: S608 - constant
                "AND due > ? AND attempt < ?",
                (now, attempts),
            ).fetchone()
            beyond = db.execute(
                f"SELECT count(*) FROM rows WHERE state = 'pending' AND {current} "  # noqa: S608 - constant
                "AND due IS NOT NULL AND attempt >= ?",
                (attempts,),
            ).fetchone()[0]
            awaiting, last = db.execute(
                f"SELECT count(*), max(sent) FROM rows WHERE state = 'done' AND {current} "  # noqa: S608 - constant
                "AND reference IS NOT NULL AND outcome IS NULL AND coalesce(callback, 1) = 1 "
                "AND attempt > 0 AND attempt < ? AND sent > ?",
                (attempts, now - wait),
            ).fetchone()
            return Backlog(
                zones=tuple((zone, int(count)) for zone, count in zones),
                redials=int(redials),
                next_redial=None if first is None else float(first),
                beyond=int(beyond),
                awaiting=int(awaiting),
                awaiting_until=None if last is None else float(last) + wait,
            )

        return await self._run(work)

    async def attempts(self) -> tuple[tuple[int, int], ...]:
        def work() -> tuple[tuple[int, int], ...]:
            return tuple(
                (int(calls), int(rows))
                for calls, rows in self._db.execute(
                    "SELECT attempt, count(*) FROM rows WHERE attempt > 0 GROUP BY attempt "
                    "ORDER BY attempt"
                ).fetchall()
            )

        return await self._run(work)

    async def calls(self, after: int, limit: int) -> list[tuple[int, str, str, int, float]]:
        def work() -> list[tuple[int, str, str, int, float]]:
            return [
                (int(seq), str(key), str(number), int(attempt), float(sent))
                for seq, key, number, attempt, sent in self._db.execute(
                    "SELECT seq, key, number, attempt, sent FROM ("
                    "SELECT seq, key, number, attempt, sent FROM rows WHERE seq > ? "
                    "AND attempt > 0 AND number IS NOT NULL AND sent IS NOT NULL UNION "
                    "SELECT a.seq, r.key, a.number, a.attempt, a.sent FROM attempts a "
                    "JOIN rows r ON r.seq = a.seq WHERE a.seq > ? AND a.number IS NOT NULL "
                    "AND a.sent IS NOT NULL) AS made ORDER BY seq, attempt LIMIT ?",
                    (after, after, limit),
                ).fetchall()
            ]

        return await self._run(work)

    async def call_attempts(self, key: str) -> list[dict[str, Any]]:
        columns = (
            "attempt, number, reference, outcome, release_reason, talk_duration, "
            "release_time, sent, heard"
        )

        def work() -> list[dict[str, Any]]:
            found = self._db.execute(
                f"SELECT {columns} FROM attempts WHERE seq = (SELECT seq FROM rows WHERE key = ?) "  # noqa: S608 - constant
                f"UNION ALL SELECT {columns} FROM rows WHERE key = ? AND attempt > 0 "
                "AND state IN ('sending', 'done', 'failed', 'unknown') ORDER BY 1",
                (key, key),
            ).fetchall()
            names = [name.strip() for name in columns.split(",")]
            return [dict(zip(names, row, strict=True)) for row in found]

        return await self._run(work)
