"""The dialer's rules in a campaign run: calling hours, do-not-call lists, redials of
the unanswered and per-number contact limits (:class:`DialerSettings`, checked once;
:class:`Dialer`, one run's lists and history).

The journal applies them where rows are claimed (:class:`~aicc_async.bulk.journal.Gate`):
a row starts only inside its zone's calling hours, a number on a list becomes
``suppressed`` in the claiming transaction, and a claimed row whose number the contact
history refuses becomes ``limited`` before anything is sent. Between passes over the
rows, the run schedules redials and waits (:meth:`Dialer.waiting`) for what comes next.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime, tzinfo
from datetime import timezone as _timezone
from types import TracebackType
from typing import Protocol

import attrs

from aicc_async.bulk.dialer.do_not_call import DoNotCall
from aicc_async.bulk.dialer.history import (
    ContactHistory,
    HistoryEntry,
    Limit,
    check_campaign,
    open_history,
)
from aicc_async.bulk.dialer.hours import (
    CallingHours,
    describe_waiting,
    machine_zone,
    parse_calling_hours,
    resolve_zone,
    zone_name,
)
from aicc_async.bulk.dialer.specs import check_attempts, parse_duration, parse_limit
from aicc_async.bulk.journal.rules import LIMITED, Backlog, Claimed, Finished, Gate
from aicc_async.errors import (
    AICCValidationError,
    CampaignError,
    JournalError,
    check_flag,
    check_positive,
)

__all__ = ["DialerSettings", "SystemClock", "Waiting", "WallClock"]

logger = logging.getLogger(__name__)

UTC = _timezone.utc

_REFRESH_EVERY = 1.0  # seconds between looks at the do-not-call files
_LONGEST_NAP = 60.0  # seconds a waiting run sleeps at most (the wall clock may jump)
_POLL = 1.0  # seconds between looks while release events or a readable list are awaited


class WallClock(Protocol):
    """The time of day a run goes by (calling hours, redial times): UNIX seconds, and a
    sleep that lasts until that clock moved on (tests give one that moves at once)."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The machine's clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@attrs.frozen
class Waiting:
    """What a run's rows wait for: ``rows`` of them, the next of which may start at
    ``until`` (UNIX time; ``None``: when a list can be read again), said in ``text``."""

    rows: int
    until: float | None
    text: str


def _rows_wait(rows: int) -> str:
    return "1 row waits" if rows == 1 else f"{rows:,} rows wait"


def _shown_time(at: float, zone: tzinfo) -> str:
    moment = datetime.fromtimestamp(at, UTC).astimezone(zone)
    return f"{moment:%Y-%m-%d %H:%M} {zone_name(zone, moment)}"


@attrs.frozen
class DialerSettings:
    """The dialer's arguments of one run, checked (:meth:`check`)."""

    hours: CallingHours | None = None
    zone: tzinfo = UTC
    """The zone of rows that name none."""
    do_not_call: tuple[str, ...] = ()
    attempts: int = 1
    redial_after: int = 1800
    contact_history: str | None = None
    limit: Limit | None = None
    wait_outcomes: float = 120.0
    no_wait: bool = False
    clock: WallClock = attrs.field(factory=SystemClock, eq=False)

    @property
    def active(self) -> bool:
        """Whether any rule applies beyond a plain run."""
        return bool(
            self.hours is not None
            or self.do_not_call
            or self.attempts > 1
            or self.limit is not None
            or self.no_wait
        )

    @classmethod
    def check(
        cls,
        *,
        calling_hours: str | None,
        timezone: str | None,
        no_wait: bool,
        do_not_call: Sequence[str | os.PathLike[str]],
        attempts: int,
        redial_after: str | int,
        contact_history: str | os.PathLike[str] | None,
        max_calls_per_number: str | None,
        wait_outcomes: float,
        clock: WallClock | None,
        callbacks: bool,
    ) -> DialerSettings:
        """The settings; ``AICCValidationError`` naming the first bad argument.
        ``callbacks``: the kind of campaign has release events (redials need them)."""
        hours = None
        if calling_hours is not None:
            if not isinstance(calling_hours, str):
                raise AICCValidationError(
                    f"calling_hours: must be a SPEC string, got {calling_hours!r}",
                    field="calling_hours",
                )
            hours = parse_calling_hours(calling_hours)
        if timezone is not None:
            zone: tzinfo = resolve_zone(timezone)
        elif hours is not None:
            zone = machine_zone()
        else:
            zone = UTC  # no calling hours: zones decide nothing
        check_flag("no_wait", no_wait)
        if isinstance(do_not_call, (str, bytes, os.PathLike)) or not isinstance(
            do_not_call, Sequence
        ):
            raise AICCValidationError(
                f"do_not_call: must be a list of file paths, got {do_not_call!r}",
                field="do_not_call",
            )
        lists = []
        for path in do_not_call:
            if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
                raise AICCValidationError(
                    f"do_not_call: must hold file paths, got {path!r}", field="do_not_call"
                )
            lists.append(os.fspath(path))
        calls = check_attempts(attempts)
        if calls > 1 and not callbacks:
            raise AICCValidationError(
                "attempts: only a voice campaign's calls can be redialed", field="attempts"
            )
        limit = None
        if max_calls_per_number is not None:
            if contact_history is None:
                raise AICCValidationError(
                    "max_calls_per_number: needs a contact_history to count calls in",
                    field="max_calls_per_number",
                )
            limit = Limit(*parse_limit(max_calls_per_number))
        history = None
        if contact_history is not None:
            if not isinstance(contact_history, (str, os.PathLike)) or not os.fspath(
                contact_history
            ):
                raise AICCValidationError(
                    "contact_history: must be a SQLite file path or a postgresql:// DSN, "
                    f"got {contact_history!r}",
                    field="contact_history",
                )
            history = os.fspath(contact_history)
        return cls(
            hours=hours,
            zone=zone,
            do_not_call=tuple(lists),
            attempts=calls,
            redial_after=parse_duration(redial_after),
            contact_history=history,
            limit=limit,
            wait_outcomes=check_positive("wait_outcomes", wait_outcomes, "a number of seconds"),
            no_wait=no_wait,
            clock=SystemClock() if clock is None else _check_clock(clock),
        )


def _check_clock(clock: object) -> WallClock:
    """``clock`` if it has ``time()`` and an ``async sleep(seconds)`` (a
    :class:`WallClock`); ``AICCValidationError`` else."""
    sleep = getattr(clock, "sleep", None)
    if not callable(getattr(clock, "time", None)) or not inspect.iscoroutinefunction(sleep):
        raise AICCValidationError(
            "clock: must be a WallClock, with time() (UNIX seconds) and async sleep(seconds), "
            f"got {clock!r}",
            field="clock",
        )
    return clock  # type: ignore[return-value]  # checked above


class Dialer:
    """One run's dialer: its do-not-call lists (re-read while it runs) and contact
    history, open between ``async with`` and its end."""

    def __init__(
        self,
        settings: DialerSettings,
        campaign: str,
        share: Callable[[str, Collection[str]], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._campaign = campaign
        self._share = share
        """Keeps the lists in a journal other workers share (``None``: not shared)."""
        host = socket.gethostname()
        self._sources = {
            given: f"{host}:{os.path.abspath(given)}" for given in settings.do_not_call
        }
        """Each list as the other workers know it: this host's file."""
        self.lists: DoNotCall | None = None
        self.history: ContactHistory | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._zones: dict[str, tzinfo] = {}
        self.limited = 0
        """Rows the contact history refused in this run."""

    async def __aenter__(self) -> Dialer:
        settings = self.settings
        if settings.do_not_call:
            self.lists = await asyncio.to_thread(DoNotCall.load, settings.do_not_call)
        if settings.contact_history is not None:
            self._check_name()  # once: each call's entry is built unchecked
            self.history = await open_history(settings.contact_history, clock=settings.clock.time)
        if self.lists is not None:
            await self._shared(self.lists)
            self._watcher = asyncio.ensure_future(self._watch(self.lists))
        return self

    def _check_name(self) -> None:
        """Refuse a campaign name the contact history cannot hold (a SQLite journal's
        path with a line break or a control character in it), before any call."""
        try:
            check_campaign(self._campaign)
        except AICCValidationError as exc:
            raise AICCValidationError(
                f"contact_history: a contact history names a campaign by its journal, and "
                f"{self._campaign[:200]!r} cannot be such a name ({exc.message}); move the "
                "journal to a path without line breaks or control characters",
                field="contact_history",
            ) from None

    async def _shared(self, lists: DoNotCall) -> None:
        """Hand the lists to the other workers (each file as this host names it)."""
        if self._share is None:
            return
        for given, numbers in lists.lists():
            await self._share(self._sources[given], numbers)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.history is not None:
            await self.history.close()

    async def _watch(self, lists: DoNotCall) -> None:
        """Re-read the lists that changed, about once a second (off the event loop)."""
        blocked = None
        while True:
            await asyncio.sleep(_REFRESH_EVERY)
            if await asyncio.to_thread(lists.refresh):
                logger.info("re-read the do-not-call lists (%d numbers)", len(lists))
                try:
                    await self._shared(lists)
                except (CampaignError, JournalError) as exc:  # this worker still checks them
                    logger.warning("could not share the do-not-call lists: %s", exc)
            if lists.blocked != blocked:
                blocked = lists.blocked
                if blocked is not None:
                    logger.warning("%s", blocked.message)

    @property
    def gates(self) -> bool:
        """Whether claims need :meth:`gate` (else rows start as in a plain run: any row
        not scheduled for a redial)."""
        return self.settings.active or self._share is not None

    def know_zones(self, backlog: Backlog) -> None:
        """Learn the zones the rows name (from the journal's backlog)."""
        for name, _ in backlog.zones:
            if name is not None and name not in self._zones:
                self._zones[name] = resolve_zone(name)

    def gate(self) -> Gate | None:
        """Which rows may start now; ``None`` when none may (a list cannot be read)."""
        settings = self.settings
        lists = self.lists
        if lists is not None and lists.blocked is not None:
            return None
        now = settings.clock.time()
        zones = None
        unzoned = True
        hours = settings.hours
        if hours is not None:
            at = datetime.fromtimestamp(now, UTC)
            zones = tuple(name for name, zone in self._zones.items() if hours.is_open(at, zone))
            unzoned = hours.is_open(at, settings.zone)
        # The claim checks each row against the lists as last read in full: if one
        # turns unreadable meanwhile, the next gate starts nothing.
        return Gate(
            now,
            settings.attempts,
            zones,
            unzoned,
            None if lists is None else lists.held,
            shared_lists=self._share is not None,
        )

    async def restore(self, calls: Sequence[tuple[str, str, int, float]]) -> int:
        """Record ``calls`` made before, (key, number, attempt, when), in the contact
        history; returns how many it did not hold."""
        if self.history is None or not calls:
            return 0
        restored = await self.history.record(
            HistoryEntry._of_journal(number, at, self._campaign, key, attempt)
            for key, number, attempt, at in calls
        )
        if restored:
            logger.warning(
                "the contact history %s lacked %d calls this campaign made (lost to a "
                "crash or restored from a copy?): recorded again",
                self.history.location,
                restored,
            )
        return restored

    async def admit(self, claimed: Sequence[Claimed]) -> list[Finished]:
        """Record the calls ``claimed`` in the contact history before they are placed;
        returns the rows it refused (``limited``: not sent)."""
        history, limit = self.history, self.settings.limit
        if history is None or not claimed:
            return []
        now, campaign, entry = self.settings.clock.time(), self._campaign, HistoryEntry._of_journal
        entries = [
            (c.seq, entry(c.number, now, campaign, c.key, c.attempt))
            for c in claimed
            if c.number is not None
        ]
        if limit is None:
            await history.record(e for _, e in entries)
            return []
        admission = await history.admit((e for _, e in entries), limit)
        if not admission.limited:
            return []
        refused = {e.slot for e in admission.limited}
        limited = [
            Finished(
                seq,
                "limited",
                LIMITED,
                f"the number had {limit.count} call(s) within the contact limit's period "
                "already; a later run checks it again",
            )
            for seq, e in entries
            if e.slot in refused
        ]
        self.limited += len(limited)
        return limited

    def startable(self, backlog: Backlog) -> bool:
        """Whether some row of the ``backlog`` may start now."""
        gate = self.gate()
        if gate is None:
            return False
        return any(
            gate.zones is None or (gate.unzoned if name is None else name in gate.zones)
            for name, _ in backlog.zones
        )

    def waiting(self, backlog: Backlog) -> Waiting | None:
        """What the rows of the ``backlog`` wait for; ``None`` when nothing does."""
        lists = self.lists
        if lists is not None and lists.blocked is not None:
            pending = sum(count for _, count in backlog.zones) + backlog.redials
            return Waiting(pending, None, f"Paused: {lists.blocked.message}")
        now = self.settings.clock.time()
        texts: list[str] = []
        times: list[float] = []
        rows = 0
        closed = self._closed(backlog, now)
        if closed is not None:
            count, opens, zone = closed
            rows += count
            times.append(opens.timestamp())
            texts.append(describe_waiting(count, opens, zone, datetime.fromtimestamp(now, UTC)))
        zone = self.settings.zone
        if backlog.redials and backlog.next_redial is not None:
            rows += backlog.redials
            due = backlog.next_redial
            rows_wait = _rows_wait(backlog.redials)
            text = f"{rows_wait} for a redial (the next at {_shown_time(due, zone)})"
            window = self._opens(due)
            # Compared as datetimes: a timestamp made one loses its sub-microsecond part
            # and may come back a hair later than ``due`` while hours are open.
            if window is not None and window[0] > datetime.fromtimestamp(due, UTC):
                due = window[0].timestamp()
                text = (
                    f"{rows_wait} for a redial, then for calling hours (the next "
                    f"at {_shown_time(due, window[1])})"
                )
            times.append(due)
            texts.append(text)
        if backlog.awaiting and backlog.awaiting_until is not None:
            rows += backlog.awaiting
            times.append(min(backlog.awaiting_until, now + _POLL))
            texts.append(
                f"{_rows_wait(backlog.awaiting)} for the release event of their call (a "
                "redial if not answered; waited for until "
                f"{_shown_time(backlog.awaiting_until, zone)})"
            )
        if not texts:
            return None
        return Waiting(rows, min(times), "; ".join(texts))

    def _opens(self, at: float) -> tuple[datetime, tzinfo] | None:
        """When calling hours are first open at or after ``at`` in a zone of the rows."""
        hours = self.settings.hours
        if hours is None:
            return None
        moment = datetime.fromtimestamp(at, UTC)
        found = [
            (opens, zone)
            for zone in (self.settings.zone, *self._zones.values())
            if (opens := hours.next_open(moment, zone)) is not None
        ]
        return min(found, key=lambda pair: pair[0]) if found else None

    def _closed(self, backlog: Backlog, now: float) -> tuple[int, datetime, tzinfo] | None:
        """(rows waiting for calling hours, when the first window opens, its zone)."""
        hours = self.settings.hours
        if hours is None:
            return None
        at = datetime.fromtimestamp(now, UTC)
        count = 0
        first: tuple[datetime, tzinfo] | None = None
        for name, rows in backlog.zones:
            zone = self.settings.zone if name is None else self._zones[name]
            if hours.is_open(at, zone):
                continue
            count += rows
            opens = hours.next_open(at, zone)
            if opens is not None and (first is None or opens < first[0]):
                first = (opens, zone)
        if not count or first is None:
            return None
        return count, first[0], first[1]

    async def nap(self, until: float | None) -> None:
        """Sleep until ``until`` (``None``: a second), at most a minute."""
        clock = self.settings.clock
        left = _POLL if until is None else until - clock.time()
        await clock.sleep(max(0.0, min(left, _LONGEST_NAP)))
