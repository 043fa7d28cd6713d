"""Calling hours: the weekly windows inside which a row may be *started*, in its zone.

A SPEC is comma-separated windows ``[DAYS ]HH:MM-HH:MM``::

    "mon-fri 09:00-20:00, sat 10:00-16:00"
    "mon,wed,fri 09:00-12:00"
    "08:30-18:00"                 # no DAYS: every day

DAYS are ``mon tue wed thu fri sat sun`` (any case; full names too), a range
(``mon-fri``; ``fri-mon`` wraps over the weekend) or a list joined by ``,``.

Decisions:

- A window is wall-clock time in the row's zone: ``09:00`` is nine on that zone's
  clocks, summer time or not. A window runs from its start (included) to its end
  (excluded).
- ``24:00`` is allowed as an end only, meaning the end of that day
  (``sat 20:00-24:00``).
- A window may not cross midnight (``22:00-02:00``) or be empty (``09:00-09:00``):
  both are refused. Calling at night is what regulators fine, and a reversed window
  is far more often a typo than a wish; write the two halves instead:
  ``fri 22:00-24:00, sat 00:00-02:00``.
- Summer time: when the clocks jump forward over a window's start, the window opens
  at the first real moment inside it (the jump); a window wholly inside the skipped
  hour is not open that day. When the clocks go back, a wall time that happens twice
  is inside its window both times.

Nothing here reads the clock: every function takes the moment it is about.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from aicc_async.errors import invalid

__all__ = [
    "CallingHours",
    "Window",
    "ZoneResolver",
    "describe_wait",
    "describe_waiting",
    "machine_zone",
    "parse_calling_hours",
    "resolve_zone",
    "zone_name",
]

MAX_SPEC_LENGTH: Final = 1000
"""Longest SPEC accepted (a week of windows fits many times over)."""

_DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS: Final = {name: i for names in (_DAY_NAMES, _FULL_NAMES) for i, name in enumerate(names)}
_DAY: Final = r"[a-z]+"
_DAY_ITEM: Final = rf"{_DAY}(?:\s*-\s*{_DAY})?"
_TIME: Final = r"[0-9]{1,2}:[0-9]{2}"
_DAYS_ONLY: Final = re.compile(rf"({_DAY_ITEM})", re.ASCII | re.IGNORECASE)
_WINDOW: Final = re.compile(
    rf"(?:({_DAY_ITEM})\s+)?({_TIME})\s*-\s*({_TIME})", re.ASCII | re.IGNORECASE
)
_FORM: Final = (
    'expected comma-separated windows "[DAYS ]HH:MM-HH:MM", DAYS like mon-fri, sat '
    'or mon,wed,fri (e.g. "mon-fri 09:00-20:00, sat 10:00-16:00")'
)
_FIELD: Final = "calling_hours"
_MINUTES_PER_DAY: Final = 24 * 60
_SEARCH_DAYS: Final = 8  # a week of windows, plus a day for summer-time shifts
_STEP: Final = timedelta(hours=6)  # zone transitions are never closer than this
_ZONE_ROOT: Final = "zoneinfo/"
_MAX_ZONE_NAME: Final = 100
_MAX_ZONES_SEEN: Final = 1000


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted as the user wrote it, control characters escaped, cut if long."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return repr(cut)


@attrs.frozen
class Window:
    """One weekly window: on ``days`` (0 = Monday), from ``start`` to ``end``, in
    minutes after midnight (``end`` up to 1440, always after ``start``)."""

    days: frozenset[int]
    start: int
    end: int

    def __str__(self) -> str:
        return f"{_days_text(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "every day"
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


@attrs.frozen
class CallingHours:
    """Weekly windows in wall-clock time (see the module doc); build with
    :func:`parse_calling_hours`. ``spec`` is the text it was parsed from."""

    windows: tuple[Window, ...]
    spec: str = attrs.field(eq=False)
    #: Per weekday, the sorted (start, end) minute ranges open that day.
    _by_day: tuple[tuple[tuple[int, int], ...], ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_day = tuple(
            tuple(sorted((w.start, w.end) for w in self.windows if day in w.days))
            for day in range(7)
        )
        object.__setattr__(self, "_by_day", by_day)

    def is_open(self, at: datetime, zone: tzinfo) -> bool:
        """Whether a row in ``zone`` may be started at ``at`` (an aware datetime)."""
        local = _aware(at).astimezone(zone)
        minute = local.hour * 60 + local.minute  # within [start, end) iff the minute is
        return any(start <= minute < end for start, end in self._by_day[local.weekday()])

    def next_open(self, at: datetime, zone: tzinfo) -> datetime | None:
        """The first moment at or after ``at`` when a row in ``zone`` may start:
        ``at`` itself when open, else the next window's opening (in ``zone``).
        None only when no window opens within 8 days (a spec whose every window
        lies in an hour the clocks skip)."""
        at = _aware(at)
        if self.is_open(at, zone):
            return at.astimezone(zone)
        best: datetime | None = None
        for candidate in self._candidates(at, zone):
            later = candidate > at and (best is None or candidate < best)
            if later and self.is_open(candidate, zone):
                best = candidate
        return None if best is None else best.astimezone(zone)

    def _candidates(self, at: datetime, zone: tzinfo) -> Iterator[datetime]:
        """Moments where the wall time may enter a window: each window's start on
        each of the next days (both readings of an ambiguous time) and each jump of
        the zone's clocks."""
        first = at.astimezone(zone).date() - timedelta(days=1)
        for offset in range(_SEARCH_DAYS + 1):
            day = first + timedelta(days=offset)
            for start, _end in self._by_day[day.weekday()]:
                yield from _instants(day, start, zone)
        yield from _transitions(at, at + timedelta(days=_SEARCH_DAYS), zone)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("calling hours need an aware datetime (one with a tzinfo)")
    return at


def _instants(day: date, minute: int, zone: tzinfo) -> Iterator[datetime]:
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    for fold in (0, 1):
        yield wall.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc)


def _transitions(since: datetime, until: datetime, zone: tzinfo) -> Iterator[datetime]:
    """The first instant after each change of ``zone``'s UTC offset in the range."""
    moment = since.astimezone(timezone.utc)
    offset = moment.astimezone(zone).utcoffset()
    while moment < until:
        step = moment + _STEP
        step_offset = step.astimezone(zone).utcoffset()
        if step_offset != offset:
            low, high = moment, step  # offset(low) == offset, offset(high) differs
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            yield high.replace(microsecond=0) if high.microsecond else high
            offset = step_offset
        moment = step


def parse_calling_hours(spec: str) -> CallingHours:
    """Parse a SPEC (see the module doc).

    Raises AICCValidationError (field ``calling_hours``) naming the bad part, as
    written, and the form expected.
    """
    if not isinstance(spec, str):
        raise invalid(_FIELD, f"must be a string, got {type(spec).__name__}")
    if len(spec) > MAX_SPEC_LENGTH:
        raise invalid(_FIELD, f"is {len(spec)} characters long, at most {MAX_SPEC_LENGTH}")
    if not spec.strip():
        raise invalid(_FIELD, f"is empty; {_FORM}")
    windows: list[Window] = []
    pending: list[str] = []
    for part in spec.split(","):
        text = part.strip()
        if not text:
            raise invalid(_FIELD, f"has an empty window in {_shown(spec)}; {_FORM}")
        if _DAYS_ONLY.fullmatch(text):
            pending.append(text)
            continue
        match = _WINDOW.fullmatch(text)
        if match is None:
            raise invalid(_FIELD, f"cannot read {_shown(text)}; {_FORM}")
        day_texts = [*pending, match.group(1)] if match.group(1) else pending
        days = frozenset(d for t in day_texts for d in _parse_days(t)) if day_texts else None
        start = _minutes(match.group(2), text, end=False)
        end = _minutes(match.group(3), text, end=True)
        if end < start:
            raise invalid(
                _FIELD,
                f"window {_shown(text)} crosses midnight; write its two halves as two "
                'windows (e.g. "fri 22:00-24:00, sat 00:00-02:00")',
            )
        if end == start:
            raise invalid(_FIELD, f"window {_shown(text)} is empty (it ends when it starts)")
        windows.append(Window(days if days is not None else frozenset(range(7)), start, end))
        pending = []
    if pending:
        raise invalid(_FIELD, f"days {_shown(','.join(pending))} have no HH:MM-HH:MM; {_FORM}")
    return CallingHours(tuple(windows), spec)


def _parse_days(text: str) -> frozenset[int]:
    names = [n.strip().lower() for n in text.split("-")]
    unknown = [n for n in names if n not in _DAYS]
    if unknown:
        raise invalid(
            _FIELD,
            f"unknown day {_shown(unknown[0])} in {_shown(text)}; days are "
            "mon, tue, wed, thu, fri, sat, sun",
        )
    if len(names) == 1:
        return frozenset({_DAYS[names[0]]})
    first, last = _DAYS[names[0]], _DAYS[names[1]]
    return frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))


def _minutes(text: str, window: str, *, end: bool) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if (hours, minutes) == (24, 0) and end:
        return _MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        allowed = "00:00 to 24:00" if end else "00:00 to 23:59"
        raise invalid(
            _FIELD, f"time {_shown(text)} in {_shown(window)} is not a time of day ({allowed})"
        )
    return hours * 60 + minutes


# --------------------------------------------------------------------------- zones


def resolve_zone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The IANA zone ``name`` (``"Asia/Shanghai"``, ``"UTC"``).

    Raises AICCValidationError (field ``field``) naming it when it is not a zone
    this machine knows.
    """
    if not isinstance(name, str):
        raise invalid(field, f"must be a string, got {type(name).__name__}")
    text = name.strip()
    problem = f"{_shown(name)} is not a known IANA time zone name (like Asia/Shanghai or UTC)"
    if not text or len(text) > _MAX_ZONE_NAME or not text.isascii() or not text.isprintable():
        raise invalid(field, problem)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ValueError: a path-like key ("../x", "/etc"); OSError: a directory name.
        raise invalid(field, problem) from exc


def machine_zone(
    tz_variable: str | None = None, *, localtime: str | Path = "/etc/localtime"
) -> tzinfo:
    """The machine's zone, with its summer-time rules.

    ``tz_variable`` is the ``TZ`` environment variable as the caller read it (the
    library does not read the environment): when set, it names the zone (a leading
    ``:`` ignored) and must be an IANA name. Otherwise ``localtime`` (a link into the
    zone database, or a copy of a zone file) is read.

    Raises AICCValidationError (field ``timezone``) when the zone cannot be found:
    pass a zone name explicitly then; the machine's fixed UTC offset is never
    guessed, as it would be wrong half the year where clocks change.
    """
    if tz_variable:
        return resolve_zone(tz_variable.removeprefix(":"), field="TZ")
    path = Path(localtime)
    try:
        target = str(path.resolve())
        if _ZONE_ROOT in target:
            key = target.rsplit(_ZONE_ROOT, 1)[1]
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                pass
        with path.open("rb") as handle:
            return ZoneInfo.from_file(handle, key=None)
    except (OSError, ValueError) as exc:
        raise invalid(
            "timezone",
            f"the machine's time zone cannot be read from {str(path)!r} ({exc}); "
            "name a zone (--timezone NAME, like Asia/Shanghai)",
        ) from exc


class ZoneResolver:
    """Each row's zone: its ``timezone`` cell when it has one, else ``default`` (the
    ``--timezone`` zone, or :func:`machine_zone`). Names already seen are not
    looked up again (a campaign has few zones and many rows).
    """

    def __init__(self, default: tzinfo) -> None:
        self.default = default
        self._seen: dict[str, ZoneInfo] = {}

    def zone(self, cell: str | None) -> tzinfo:
        """The zone for a row whose ``timezone`` cell is ``cell`` (None or blank: the
        default). Raises AICCValidationError (field ``timezone``) naming an unknown
        zone."""
        if cell is None or not cell.strip():
            return self.default
        zone = self._seen.get(cell)
        if zone is None:
            if len(self._seen) >= _MAX_ZONES_SEEN:
                self._seen.clear()
            zone = self._seen[cell] = resolve_zone(cell)
        return zone


def zone_name(zone: tzinfo, at: datetime) -> str:
    """How messages name ``zone``: its IANA name, else its abbreviation at ``at``
    with the offset (``"CST, UTC+08:00"``)."""
    key = getattr(zone, "key", None)
    if isinstance(key, str) and key:
        return key
    local = _aware(at).astimezone(zone)
    offset = local.strftime("%z")
    shown = f"UTC{offset[:3]}:{offset[3:]}" if offset not in ("", "+0000") else "UTC"
    name = local.tzname()
    return f"{name}, {shown}" if name and name != shown else shown


def describe_wait(opens: datetime, zone: tzinfo, now: datetime) -> str:
    """``"next window opens 09:00 Asia/Shanghai, in 2 h 13 min"`` for a window
    opening at ``opens`` in ``zone``, seen at ``now``. The day is named when it is not
    today in that zone (``"Mon 09:00"``), the date when it is a week or more away."""
    now = _aware(now)
    local = _aware(opens).astimezone(zone)
    today = now.astimezone(zone).date()
    if local.date() == today:
        when = f"{local:%H:%M}"
    elif local.date() - today < timedelta(days=7):
        when = f"{_DAY_NAMES[local.weekday()].capitalize()} {local:%H:%M}"
    else:
        when = f"{local:%Y-%m-%d %H:%M}"
    if opens <= now:
        return f"a window is open now (since {when} {zone_name(zone, opens)})"
    return f"next window opens {when} {zone_name(zone, opens)}, {_in(opens - now)}"


def describe_waiting(rows: int, opens: datetime, zone: tzinfo, now: datetime) -> str:
    """``"140 rows wait for calling hours; next window opens 09:00 Asia/Shanghai, in
    2 h 13 min"``: the live line's words for ``rows`` rows whose earliest window
    opens at ``opens`` in ``zone``."""
    waiting = "1 row waits" if rows == 1 else f"{rows:,} rows wait"
    return f"{waiting} for calling hours; {describe_wait(opens, zone, now)}"


def _in(delta: timedelta) -> str:
    minutes = max(1, math.ceil(delta.total_seconds() / 60))  # "in 1 min" until it opens
    days, rest = divmod(minutes, _MINUTES_PER_DAY)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes and not days else []
    return "in " + " ".join(parts)
