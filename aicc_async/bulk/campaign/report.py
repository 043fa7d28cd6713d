"""What a campaign's report says (:class:`CampaignReport`), the rate over time
included (:func:`rate_over_time`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from aicc_async.adaptive import RateSample
from aicc_async.bulk.journal.rules import Outcomes, Problem, RatePoint, StateCounts, Target

__all__ = ["CampaignReport", "rate_over_time"]


@attrs.frozen
class CampaignReport:
    """A campaign's state: row counts and its failures grouped by code."""

    path: str
    kind: str
    counts: StateCounts
    problems: tuple[Problem, ...]
    target: Target | None = None
    """Where the campaign sends (``None`` before its first run)."""
    outcomes: Outcomes = attrs.field(factory=Outcomes)
    """Answered / not answered calls, from the release events recorded."""
    rate: tuple[RateSample, ...] = ()
    """The rate over time of this process's ``rate="auto"`` run or, read by a process
    that did not run one, of the campaign's runs as its journal kept it (empty without
    ``rate="auto"``)."""
    requeued: int = 0
    """Rows answered "throttled" and sent again later (this process's runs, or the
    campaign's as its journal kept them)."""
    throttled: int = 0
    """Throttle answers (HTTP 429, busy) the ``rate="auto"`` limiter heard, retries too
    (this process's runs, or the campaign's as its journal kept them)."""
    attempts: tuple[tuple[int, int], ...] = ()
    """(calls, rows called that many times), fewest calls first (redials counted)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (what ``aicc report --json`` prints)."""
        return {
            "journal": self.path,
            "kind": self.kind,
            "target": None if self.target is None else attrs.asdict(self.target),
            "rows": self.counts.total,
            "states": attrs.asdict(self.counts),
            "problems": [attrs.asdict(p) for p in self.problems],
            "outcomes": {
                "answered": self.outcomes.answered,
                "not_answered": self.outcomes.not_answered,
                "awaiting": self.outcomes.awaiting,
                "refused_events": self.outcomes.refused_events,
                "unmatched_events": self.outcomes.unmatched,
                "settled": self.outcomes.settled,
            },
            "refused_reasons": dict(self.outcomes.refused),
            "release_reasons": dict(self.outcomes.reasons),
            "attempts": {str(calls): rows for calls, rows in self.attempts},
            "requeued": self.requeued,
            "throttled": self.throttled,
            "rate": [  # "time" where known (read from the journal)
                attrs.asdict(sample, filter=lambda _, value: value is not None)
                for sample in self.rate
            ],
        }


def rate_over_time(points: Sequence[RatePoint]) -> tuple[tuple[RateSample, ...], int, int]:
    """The journal's rate history as a report shows it: (the samples of the adaptive
    rate, from the campaign's first point; rows re-queued; throttle answers)."""
    samples: list[RateSample] = []
    sent = throttled = requeued = 0
    for point in points:
        sent += point.sent
        throttled += point.throttled
        requeued += point.requeued
        if point.rate is not None:
            at = round(point.time - points[0].time, 3)
            samples.append(RateSample(at, point.rate, sent, throttled, point.time))
    return tuple(samples), requeued, throttled
