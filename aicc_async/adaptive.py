"""``rate="auto"``: a request-rate limiter that finds the tenant's flow-control limit.

AICC's gateway answers HTTP 429 above a tenant's request rate, and a voice
notification may be answered ``retCode "1"`` ("a task is in progress, try again
later"); neither was processed. :class:`AdaptiveRate` paces request starts like
:class:`~aicc_async.throttle.RateCap` (GCRA) at a rate it adjusts from what comes
back, the way TCP CUBIC adjusts a congestion window (and botocore's ``adaptive``
retry mode a send rate):

- **Slow start**: from ``initial`` starts per second, the rate doubles every
  ``doubling`` seconds until the first throttle answer.
- **Cut**: a throttle answer to a request started since the last cut sets the
  rate to ``beta`` (0.7) times the rate actually sent, and remembers that rate as
  the last known limit. Answers to requests started before the cut say nothing new
  and change nothing (one cut per round, not one per 429).
- **Probe**: after a cut the rate follows the CUBIC curve
  ``W_max + C (t - K)^3``: it climbs fast back towards the last limit, stays near
  it (where a limit that did not change stops it), then probes above it ever faster
  (finding a limit that was raised).

The rate never exceeds ``ceiling`` (an explicit rate given beside ``auto``), never
falls below ``floor``, and never exceeds twice the rate actually sent lately (an
idle or concurrency-bound sender does not build up a rate it never tried).

Every value is a pure function of the time since the last cut, so each process
reading the same state computes the same rate (see ``redis_state.RedisAdaptiveRate``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import attrs

from aicc_async.errors import AICCBusinessError, AICCRateLimitError, invalid, is_number

__all__ = [
    "AUTO",
    "BETA",
    "WINDOW",
    "AdaptiveRate",
    "AutoRate",
    "C",
    "RateSample",
    "cubic_rate",
    "is_throttle_signal",
]

#: What ``rate="auto"`` (and ``--rate auto``) is written as.
AUTO = "auto"

C = 0.4  # CUBIC's scaling constant (botocore's and RFC 8312's), rate units per s^3
BETA = 0.7  # the rate kept at a cut
WINDOW = 0.5  # seconds over which the rate actually sent is measured
_SAMPLE_EVERY = 1.0  # seconds between two samples of the rate history
_MAX_SAMPLES = 4096  # the history keeps every other sample once this long


def is_throttle_signal(exc: BaseException | None) -> bool:
    """Whether a failed attempt (an ``AICCError``, or the transport's wrapper holding
    one as ``.error``) was a throttle answer: HTTP 429, or a documented "busy, try
    again later" code. Both mean the request was not processed."""
    error = getattr(exc, "error", exc)
    if isinstance(error, AICCRateLimitError):
        return True
    return isinstance(error, AICCBusinessError) and error.retry_safe


@attrs.frozen
class AutoRate:
    """``rate="auto"`` with options: find the tenant's limit, never above ``ceiling``.

    Args:
        ceiling: requests per second never exceeded (``None``: no ceiling).
        initial: requests per second to start from (default 10, or the ceiling if lower).
    """

    ceiling: float | None = None
    initial: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.ceiling is not None and not (
            is_number(self.ceiling) and math.isfinite(self.ceiling) and self.ceiling > 0
        ):
            raise invalid("rate", f"the ceiling must be a number > 0, got {self.ceiling!r}")
        if not (is_number(self.initial) and math.isfinite(self.initial) and self.initial > 0):
            raise invalid("rate", f"the initial rate must be a number > 0, got {self.initial!r}")


@attrs.frozen
class RateSample:
    """One point of the rate history: ``at`` seconds since the limiter started, the
    ``rate`` allowed then (requests per second), and the ``sent`` / ``throttled``
    answers counted up to then."""

    at: float
    rate: float
    sent: int
    throttled: int
    time: float | None = None
    """Unix time of the sample, in a report read from a campaign's journal (there
    ``at`` counts from the campaign's first sample)."""


def cubic_rate(
    since_cut: float,
    last_limit: float | None,
    *,
    initial: float,
    doubling: float = 1.0,
    c: float = C,
    beta: float = BETA,
) -> float:
    """The rate ``since_cut`` seconds after the last cut (or the start, while
    ``last_limit`` is ``None``: slow start)."""
    if last_limit is None:
        return float(initial * 2.0 ** min(since_cut / doubling, 60.0))
    k = (last_limit * (1.0 - beta) / c) ** (1.0 / 3.0)
    return float(last_limit + c * (since_cut - k) ** 3)


class AdaptiveRate:
    """A rate limiter whose rate follows the answers (see the module docstring).

    Pace with :meth:`wait` (one start at a time, as the client does) or :meth:`take`
    / :meth:`delay` (starts in batches, as a campaign does); report each answer with
    :meth:`answered`, passing the :attr:`epoch` read when its request started.

    Args:
        ceiling: never more than this many starts per second (``None``: no ceiling).
        initial: the rate to start from (at most ``ceiling``).
        floor: never fewer starts per second than this.
        burst: seconds' worth of starts that may happen at once after a pause.
        doubling: seconds the slow-start rate takes to double.
        clock: monotonic clock, seconds; ``sleep``: what :meth:`wait` sleeps with.
    """

    def __init__(
        self,
        *,
        ceiling: float | None = None,
        initial: float = 10.0,
        floor: float = 0.5,
        burst: float = 0.1,
        doubling: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.ceiling = ceiling
        self._initial = initial if ceiling is None else min(initial, ceiling)
        self._floor = floor if ceiling is None else min(floor, ceiling)
        self._burst = burst
        self._doubling = doubling
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._started = self._cut_at = now
        self._last_limit: float | None = None
        #: Bumped at each cut: answers to requests started before it are not news.
        self.epoch = 0
        self.sent = 0
        """Answers counted (throttled ones included)."""
        self.throttled = 0
        """Answers that were a throttle signal (429, busy)."""
        self._rate = self._initial
        self._rate_at = -math.inf
        self._measured: float | None = None
        self._window_at = now
        self._window_starts = 0
        self._due = now
        self._queue = asyncio.Lock()
        self._samples: list[RateSample] = []
        self._sample_every = _SAMPLE_EVERY
        self._sampled_at = -math.inf

    @classmethod
    def from_spec(
        cls,
        spec: AutoRate,
        *,
        burst: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> AdaptiveRate:
        """The limiter ``spec`` describes."""
        return cls(
            ceiling=spec.ceiling, initial=spec.initial, burst=burst, clock=clock, sleep=sleep
        )

    # -- the rate ----------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Starts per second allowed now."""
        return self._current(self._clock())

    def _current(self, now: float) -> float:
        if now - self._rate_at < 0.05:  # recomputed at most 20 times a second
            return self._rate
        rate = cubic_rate(
            now - self._cut_at, self._last_limit, initial=self._initial, doubling=self._doubling
        )
        if self._measured is not None:
            rate = min(rate, 2.0 * self._measured + self._floor)
        if self.ceiling is not None:
            rate = min(rate, self.ceiling)
        self._rate = rate = max(rate, self._floor)
        self._rate_at = now
        if now - self._sampled_at >= self._sample_every:
            self._sample(now, rate)
        return rate

    def _sample(self, now: float, rate: float) -> None:
        self._sampled_at = now
        self._samples.append(
            RateSample(round(now - self._started, 3), rate, self.sent, self.throttled)
        )
        if (
            len(self._samples) >= _MAX_SAMPLES
        ):  # bounded: keep every other one, sample half as often
            del self._samples[::2]
            self._sample_every *= 2

    @property
    def samples(self) -> tuple[RateSample, ...]:
        """The rate over time (about one sample a second; thinned on long runs)."""
        return tuple(self._samples)

    def _count(self, now: float, starts: int) -> None:
        """Count ``starts`` in the window that measures the rate actually sent."""
        self._window_starts += starts
        elapsed = now - self._window_at
        if elapsed >= WINDOW:
            self._measured = self._window_starts / elapsed
            self._window_at = now
            self._window_starts = 0

    # -- feedback -----------------------------------------------------------------------

    def report(self) -> Callable[[BaseException | None], None]:
        """For a request starting now: what to call with its answer's error (``None``:
        success). A failure without an answer (no exception passed) is not reported."""
        epoch = self.epoch

        def heard(exc: BaseException | None) -> None:
            if exc is None:
                self.sent += 1  # a success: nothing else to do
            else:
                self.answered(epoch, is_throttle_signal(exc))

        return heard

    def answered(self, epoch: int, throttled: bool) -> None:
        """An answer came back to a request started at ``epoch``: ``throttled`` when it
        was a throttle signal (HTTP 429, a busy code), else it was processed or refused
        for another reason (either way the rate was not too high)."""
        self.sent += 1
        if not throttled:
            return
        self.throttled += 1
        if epoch != self.epoch:
            return  # started before the last cut: that cut answered it already
        now = self._clock()
        self._last_limit = self._current(now)
        self._cut_at = now
        self.epoch += 1
        self._rate_at = -math.inf
        self._sample(now, self._current(now))

    # -- pacing (GCRA, as RateCap) ------------------------------------------------------

    async def wait(self) -> None:
        """Return when one start may happen (counted as started): at once when the
        burst allows it and nobody queues, else in arrival order."""
        if self.ready():
            return
        async with self._queue:
            now = self._clock()
            interval = 1.0 / self._current(now)
            ready = self._due
            if ready > now:
                sleep = self._sleep or asyncio.sleep
                await sleep(ready - now)
                now = ready
            self._due = max(self._due, now - self._burst) + interval
            self._count(now, 1)

    def ready(self) -> bool:
        """Take one start now if it may happen at once (nobody queues, the burst allows
        it): ``True`` (counted as started), else ``False`` (nothing taken). The path of
        every request while the limiter does not bind: :meth:`take` for one, inlined."""
        if self._queue.locked():
            return False
        now = self._clock()
        due = self._due
        if due > now:
            return False
        rate = self._rate if now - self._rate_at < 0.05 else self._current(now)
        self._due = max(due, now - self._burst) + 1.0 / rate
        self._window_starts += 1
        if now - self._window_at >= WINDOW:
            self._count(now, 0)
        return True

    def take(self, want: int) -> int:
        """How many of ``want`` starts may happen now (counted as started)."""
        now = self._clock()
        interval = 1.0 / self._current(now)
        tolerance = self._burst
        due = max(self._due, now - tolerance)
        granted = 0
        while granted < want and due <= now:
            due += interval
            granted += 1
        if granted:
            self._due = due
            self._count(now, granted)
        return granted

    def delay(self) -> float:
        """Seconds until the next start may happen."""
        return max(0.0, self._due - self._clock())
