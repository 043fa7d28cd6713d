"""The contact history: every call placed, or possibly placed, by number and time,
shared by campaigns and workers, so that a number is not phoned more often than a
limit allows (``--contact-history PATH|DSN --max-calls-per-number N/PERIOD``).

One interface (:class:`ContactHistory`), two backends: a SQLite file that several
processes on one machine may write at once (:mod:`.history_sqlite`), or tables in a
PostgreSQL database shared by workers on several machines (:mod:`.history_postgres`,
``aicc-async[postgres]``). :func:`open_history` picks by location as the journal does:
a ``postgresql://`` (or ``postgres://``) DSN opens PostgreSQL, anything else is a file.

What it keeps:

* An entry (:class:`HistoryEntry`) is one call attempt of one campaign row: its
  number (normalised with :func:`~aicc_async._numbers.normalise_number`), the time it
  was placed (or marked ``sending``: the call may have gone out), the campaign, the
  row's key and the attempt number. Recording is idempotent per (campaign, row key,
  attempt): recording an entry again (a resume after a kill) adds nothing and keeps
  the first entry's time, so an entry is neither lost nor doubled.
* :meth:`ContactHistory.counts` counts the entries of each number recorded at a time
  later than ``since``. "Within PERIOD" is the sliding window of PERIOD seconds
  ending now: an entry counts while ``at > now - PERIOD``; a call made exactly
  PERIOD ago no longer counts. Entries later than now (another machine's clock
  ahead of this one) count too: a clock off by S seconds can only shift the window
  by S, never hide a call recorded for the future.
* :meth:`ContactHistory.admit` checks a batch against a :class:`Limit` and records
  the entries it allows in one transaction; writes to a history are serialised
  (SQLite's one writer; an advisory lock on PostgreSQL), so two campaigns or workers
  admitting one number at the same moment never both get a call the limit forbids.
  Checking with :meth:`~ContactHistory.counts` and then recording with
  :meth:`~ContactHistory.record` leaves that gap open: use them for reports.

Clocks: times are UNIX seconds from the caller's clock (``clock``, injected;
:func:`time.time` by default): the recorder gives each entry's time, and "now" is
the reader's clock. On PostgreSQL the entries of several machines meet, so their
clocks should agree (NTP): on opening, the history measures how far this process's
clock is from the database server's (:attr:`ContactHistory.clock_skew`) and logs a
warning beyond :data:`MAX_CLOCK_SKEW` seconds. The server's clock is not used for the
times themselves: an entry's time is when its row was marked ``sending``, which a
resume may record later than it happened.

Blocking database work runs on one worker thread per open history, never on the
event loop. Every method may raise ``JournalError`` when the store cannot be read or
written (the entries recorded so far are kept), and ``CampaignError`` once closed.
"""

from __future__ import annotations

import abc
import collections
import functools
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import attrs

from aicc_async._numbers import normalise_number
from aicc_async.bulk.journal.location import is_dsn
from aicc_async.bulk.journal.thread import OneThread
from aicc_async.endpoints._validate import text
from aicc_async.errors import (
    AICCValidationError,
    CampaignError,
    JournalError,
    check_positive,
    is_int,
    is_number,
)

__all__ = [
    "FORMAT",
    "MAX_CLOCK_SKEW",
    "MAX_TEXT",
    "SCHEMA_VERSION",
    "Admission",
    "ContactHistory",
    "HistoryEntry",
    "Limit",
    "check_campaign",
    "open_history",
]

T = TypeVar("T")

#: What the version row of a contact history names itself (a journal has none).
FORMAT = "aicc-contact-history"
#: The format of the history's tables; a history of another version is refused.
SCHEMA_VERSION = 1
#: The longest campaign name and row key (characters): a SQLite journal's path fits.
MAX_TEXT = 4096
#: Seconds this process's clock may differ from a PostgreSQL server's without a warning.
MAX_CLOCK_SKEW = 60.0
#: Numbers per statement of :meth:`ContactHistory.counts` (below SQLite's 999 parameters).
NUMBERS_PER_SELECT = 500

_WHAT = "contact history"
_DIGITS = re.compile(r"[0-9]{1,40}")
# json.dumps(value, ensure_ascii=False) without building an encoder per call.
_IDENTITY_TEXT = json.JSONEncoder(ensure_ascii=False).encode


def _number(value: object) -> str:
    """``value`` normalised; ``AICCValidationError`` unless it is then 1..40 digits."""
    found = normalise_number(value) if isinstance(value, str) else None
    if found is None or not _DIGITS.fullmatch(found):
        raise AICCValidationError(
            "number: must be a phone number (digits, separators and a leading + allowed), "
            f"got {value!r}",
            field="number",
        )
    return found


def _check_time(name: str, value: object) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise AICCValidationError(
            f"{name}: must be a finite number of UNIX seconds, got {value!r}", field=name
        )
    return float(value)


def _time(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_time(attribute.name, value)


def _attempt(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not is_int(value) or value < 1:
        raise AICCValidationError(
            f"attempt: must be a whole number >= 1, got {value!r}", field="attempt"
        )


@attrs.frozen
class HistoryEntry:
    """One call placed (or possibly placed: its row was marked ``sending``).

    ``number`` is kept normalised (separators dropped, a leading ``+`` read as
    ``00``) and must then be digits; ``at`` is UNIX seconds; ``campaign`` (any name
    that tells campaigns apart, a SQLite journal's path for instance) and ``key`` (the
    row's key) are non-blank single-line texts of at most :data:`MAX_TEXT` characters;
    ``attempt`` counts from 1. Raises ``AICCValidationError`` naming the field otherwise.
    """

    number: str = attrs.field(converter=_number)
    at: float = attrs.field(validator=_time)
    campaign: str = attrs.field(validator=text(_WHAT, MAX_TEXT))
    key: str = attrs.field(validator=text(_WHAT, MAX_TEXT))
    attempt: int = attrs.field(default=1, validator=_attempt)

    @classmethod
    def _of_journal(
        cls, number: str, at: float, campaign: str, key: str, attempt: int
    ) -> HistoryEntry:
        """For the campaign run only, never for values from outside: an entry of a
        call a campaign journal holds, built without checking its values again (a
        campaign builds one per call, on the event loop): the number
        was normalised and the key checked when the row was loaded, ``at`` is a time
        the journal or the run's clock gave and ``campaign`` was checked once
        (:func:`check_campaign`)."""
        entry = object.__new__(cls)
        set_ = object.__setattr__
        set_(entry, "number", number)
        set_(entry, "at", at)
        set_(entry, "campaign", campaign)
        set_(entry, "key", key)
        set_(entry, "attempt", attempt)
        return entry

    @property
    def slot(self) -> tuple[str, str, int]:
        """(campaign, key, attempt): what makes the entry one."""
        return (self.campaign, self.key, self.attempt)

    @functools.cached_property
    def identity(self) -> bytes:
        """What makes the entry one: a digest of (campaign, key, attempt). A fixed size
        whatever the names' length (an index of PostgreSQL holds ~2.7 kB at most).
        Worked out once per entry: a batch's admission asks for it several times."""
        text_ = _IDENTITY_TEXT([self.campaign, self.key, self.attempt])
        return hashlib.sha256(text_.encode("utf-8")).digest()


def check_campaign(name: str) -> str:
    """``name`` if it may name a campaign in a history (what :class:`HistoryEntry`
    checks); ``AICCValidationError`` (field ``campaign``) else."""
    field = attrs.fields(HistoryEntry).campaign
    assert field.validator is not None
    field.validator(None, field, name)
    return name


@attrs.frozen
class Limit:
    """At most ``count`` calls to a number within any ``period_seconds`` (the sliding
    window ending now): ``--max-calls-per-number 3/7d`` is ``Limit(3, 604800)``.

    Raises ``AICCValidationError`` unless ``count`` is a whole number >= 1 and
    ``period_seconds`` a finite number > 0.
    """

    count: int
    period_seconds: float

    def __attrs_post_init__(self) -> None:
        if not is_int(self.count) or self.count < 1:
            raise AICCValidationError(
                f"count: must be a whole number of calls >= 1, got {self.count!r}",
                field="count",
            )
        check_positive("period_seconds", self.period_seconds, "a finite number of seconds")

    def since(self, now: float) -> float:
        """The start of the window ending at ``now``: entries later than it count."""
        return now - self.period_seconds

    def limited(self, counts: Mapping[str, int]) -> frozenset[str]:
        """The numbers of ``counts`` (number -> calls within the window) that may not be
        phoned now: those with ``count`` calls or more already."""
        return frozenset(number for number, calls in counts.items() if calls >= self.count)


@attrs.frozen
class Admission:
    """What :meth:`ContactHistory.admit` decided, each in the order given."""

    admitted: tuple[HistoryEntry, ...]
    """Recorded (or recorded already): their calls may be placed."""
    limited: tuple[HistoryEntry, ...]
    """Not recorded: their numbers had as many calls as the limit allows."""


class ContactHistory(OneThread):
    """An open contact history. Create with :func:`open_history`; close with
    :meth:`close` (or use it as an async context manager)."""

    location: str
    """The history as messages name it (a PostgreSQL password masked)."""
    clock: Callable[[], float]
    """The clock of "now" (UNIX seconds)."""
    _what: ClassVar[str] = "contact history"

    def __init__(self, location: str, clock: Callable[[], float]) -> None:
        super().__init__("aicc-history")
        self.location = location
        self.clock = clock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"

    @property
    def clock_skew(self) -> float | None:
        """Seconds the database server's clock is ahead of :attr:`clock` (measured on
        opening); ``None`` for a file, whose writers share this machine's clock."""
        return None

    # -- the interface ---------------------------------------------------------------------

    async def record(self, entries: Iterable[HistoryEntry]) -> int:
        """Record ``entries`` in one transaction (all or none); returns how many were new.
        An entry whose (campaign, key, attempt) is recorded already is left as it is."""
        batch = _unique(entries)
        if not batch:
            return 0
        return await self._run(self._write, lambda: self._insert(batch))

    async def counts(self, numbers: Iterable[str], since: float) -> dict[str, int]:
        """How many entries each of ``numbers`` has with a time later than ``since``
        (UNIX seconds), by any campaign: keyed by the normalised number, every number
        asked for present (0: none). ``AICCValidationError`` for a value that is not a
        phone number."""
        start_ = _check_time("since", since)
        wanted = sorted({_number(number) for number in numbers})
        found = dict.fromkeys(wanted, 0)
        for start in range(0, len(wanted), NUMBERS_PER_SELECT):
            chunk = wanted[start : start + NUMBERS_PER_SELECT]
            found.update(await self._run(self._count, chunk, start_))
        return found

    async def admit(self, entries: Iterable[HistoryEntry], limit: Limit) -> Admission:
        """Check ``entries`` against ``limit`` and record those it allows, in one
        transaction that no other writer of the history interleaves with: of two
        campaigns or workers admitting one number at once, only as many calls as the
        limit allows are admitted. In order, an entry is admitted (and recorded) while
        its number has fewer than ``limit.count`` calls within the window ending now
        (:attr:`clock`), counting those admitted before it; an entry recorded already
        (the same campaign, key and attempt: a resume) is admitted again as it was.
        ``CampaignError`` (nothing recorded) if such an entry was recorded with another
        number: a row key must always name the same row."""
        if not isinstance(limit, Limit):
            raise AICCValidationError(f"limit: must be a Limit, got {limit!r}", field="limit")
        batch = _unique(entries)
        if not batch:
            return Admission((), ())
        since = limit.since(self.clock())
        return await self._run(self._write, lambda: self._admit(batch, limit, since))

    def _admit(self, batch: Sequence[HistoryEntry], limit: Limit, since: float) -> Admission:
        """:meth:`admit` inside the write transaction (on the worker thread)."""
        numbers = sorted({entry.number for entry in batch})
        calls: dict[str, int] = {}
        for start in range(0, len(numbers), NUMBERS_PER_SELECT):
            calls.update(self._count(numbers[start : start + NUMBERS_PER_SELECT], since))
        wanted = collections.Counter(entry.number for entry in batch)
        if all(calls.get(number, 0) + n <= limit.count for number, n in wanted.items()):
            # Every entry is admitted, whichever were recorded already (those only need
            # no room): record them, then check any recorded before are the same calls.
            if self._insert(batch) < len(batch):
                self._same_numbers(batch, self._known(batch))
            return Admission(tuple(batch), ())
        known = self._known(batch)
        self._same_numbers(batch, known)
        admitted: list[HistoryEntry] = []
        limited: list[HistoryEntry] = []
        new: list[HistoryEntry] = []
        for entry in batch:
            if entry.slot in known:
                admitted.append(entry)
                continue
            made = calls.get(entry.number, 0)
            if made < limit.count:
                calls[entry.number] = made + 1
                admitted.append(entry)
                new.append(entry)
            else:
                limited.append(entry)
        self._insert(new)
        return Admission(tuple(admitted), tuple(limited))

    def _same_numbers(
        self, batch: Sequence[HistoryEntry], known: Mapping[tuple[str, str, int], str]
    ) -> None:
        """``CampaignError`` (the transaction rolls back) if an entry of ``batch`` was
        recorded already with another number."""
        for entry in batch:
            recorded = known.get(entry.slot)
            if recorded is not None and recorded != entry.number:
                raise CampaignError(
                    f"row {_shown(entry.key)} of campaign {_shown(entry.campaign)} (attempt "
                    f"{entry.attempt}) is in the contact history {self.location} with another "
                    "number: a row key must always name the same row"
                )

    async def limited(self, numbers: Iterable[str], limit: Limit) -> frozenset[str]:
        """The normalised ``numbers`` that already had ``limit.count`` calls within
        ``limit.period_seconds`` ending now (:attr:`clock`): not to be phoned now."""
        return limit.limited(await self.counts(numbers, limit.since(self.clock())))

    async def close(self) -> None:
        """Close it (safe to call more than once)."""
        await self._shutdown()

    async def __aenter__(self) -> ContactHistory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what a backend fills in (run on the worker thread) ---------------------------------

    @abc.abstractmethod
    def _write(self, fn: Callable[[], T]) -> T:
        """``fn()`` in one write transaction that excludes every other writer of the
        history (``ROLLBACK`` if it raises)."""

    @abc.abstractmethod
    def _insert(self, entries: Sequence[HistoryEntry]) -> int:
        """Insert ``entries`` (inside :meth:`_write`), skipping known identities; how
        many were new."""

    @abc.abstractmethod
    def _known(self, entries: Sequence[HistoryEntry]) -> dict[tuple[str, str, int], str]:
        """The recorded number of each of ``entries`` recorded already, by its
        :attr:`~HistoryEntry.slot` (inside :meth:`_write`)."""

    @abc.abstractmethod
    def _count(self, numbers: Sequence[str], since: float) -> dict[str, int]:
        """Entries later than ``since`` per number of ``numbers`` (missing: none)."""

    @abc.abstractmethod
    def _close_db(self) -> None:
        """Close the connection."""

    # -- running SQL -------------------------------------------------------------------------

    def _problem(self, exc: Exception) -> JournalError:
        return JournalError(
            f"the contact history {self.location} could not be read or written ({exc}); "
            "the calls it recorded so far are kept"
        )


def _shown(name: str) -> str:
    """A campaign name or row key as a message shows it (long ones cut)."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _unique(entries: Iterable[HistoryEntry]) -> list[HistoryEntry]:
    """``entries`` with one entry per slot (the first), in order."""
    seen: dict[tuple[str, str, int], HistoryEntry] = {}
    for entry in entries:
        if not isinstance(entry, HistoryEntry):
            raise AICCValidationError(
                f"entries: must be HistoryEntry values, got {type(entry).__name__}",
                field="entries",
            )
        seen.setdefault(entry.slot, entry)
    return list(seen.values())


def check_version(where: str, found: tuple[object, object] | None) -> None:
    """Refuse a version row that is missing, of another format or another version."""
    if found is None or found[0] != FORMAT:
        raise CampaignError(
            f"{where} is not a contact history (its version row is missing or names "
            f"{None if found is None else found[0]!r})"
        )
    if found[1] != SCHEMA_VERSION:
        raise CampaignError(
            f"{where} is a contact history of another version of aicc-async (format "
            f"{found[1]!r}, this one reads {SCHEMA_VERSION}): use that version, or "
            "another --contact-history"
        )


async def open_history(
    location: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
) -> ContactHistory:
    """Open the contact history at ``location``: a ``postgresql://`` / ``postgres://``
    DSN opens (creating its tables when missing) the history in that database; anything
    else is a file path, created when nothing exists there. ``clock`` gives "now" in
    UNIX seconds (see the module's text).

    Raises ``CampaignError`` when the location cannot hold a contact history: a file
    that exists and is not one (empty, a campaign journal, another database), a
    history of another format version, a DSN that cannot be read, or a missing
    PostgreSQL driver; ``JournalError`` when the store cannot be reached or read.
    """
    if is_dsn(location):
        try:
            from aicc_async.bulk.dialer.history_postgres import PostgresHistory
        except ImportError as exc:
            raise CampaignError(
                f"a PostgreSQL contact history needs psycopg ({exc}): "
                "pip install 'aicc-async[postgres]'"
            ) from None
        assert isinstance(location, str)
        return await PostgresHistory.open(location, clock)
    from aicc_async.bulk.dialer.history_sqlite import SQLiteHistory

    return await SQLiteHistory.open(os.fspath(location), clock)
