"""Per-number contact limits (``--max-calls-per-number 3/7d``): whether a number may
be phoned now, given when it was phoned before (by any campaign recording to the
same contact history), and if not, from when.

A call counts from the moment it was placed or possibly placed (a row whose outcome
is unknown counts: it may have rung). PERIOD is a sliding window: with ``3/7d`` a
fourth call waits until the oldest of the last three is 7 days old.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import attrs

from aicc_async.bulk.dialer.specs import parse_limit

__all__ = ["ContactLimit"]


@attrs.frozen
class ContactLimit:
    """At most ``calls`` calls to one number within any ``seconds``."""

    calls: int
    seconds: int

    @classmethod
    def parse(cls, text: str, *, field: str = "max_calls_per_number") -> ContactLimit:
        """From ``"N/PERIOD"`` (see :func:`~aicc_async.bulk.dialer.specs.parse_limit`)."""
        return cls(*parse_limit(text, field=field))

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def since(self, now: datetime) -> datetime:
        """The start of the window that counts at ``now`` (calls placed after it)."""
        return now - self.period

    def allowed_at(self, placed: Iterable[datetime], now: datetime) -> datetime | None:
        """None when a number whose earlier calls were ``placed`` (aware datetimes,
        any order) may be phoned at ``now``; else the moment it may be."""
        recent = sorted(t for t in placed if t > now - self.period)
        if len(recent) < self.calls:
            return None
        return recent[len(recent) - self.calls] + self.period

    def describe(self) -> str:
        """``"3 calls per 7 d"``: how messages name the limit."""
        calls = "1 call" if self.calls == 1 else f"{self.calls} calls"
        return f"{calls} per {_span(self.seconds)}"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
