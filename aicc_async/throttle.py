"""Per-endpoint-group concurrency limits and optional request-rate caps.

Each group (``"voice_notification"``, ``"outbound"``, ``"mobile_agent"``,
``"messaging"``) has its own bounded semaphore: at most ``limit`` requests of
that group are on the wire at once, however many coroutines call. A slot is held
for one attempt only, never while waiting to retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aicc_async.adaptive import AdaptiveRate, AutoRate

__all__ = ["RateCap", "RateLimiter", "Throttle"]


class RateLimiter(Protocol):
    """What paces the client's request starts per group: a local :class:`RateCap`, or
    one shared by every process of a tenant (``redis_state.RedisRateCap``)."""

    async def wait(self) -> None:
        """Return when one start may happen; it is counted as started."""


class RateCap:
    """At most ``rate`` starts per second, in bursts of at most ``burst`` (GCRA): a
    :class:`RateLimiter`, and a campaign's ``rate``, which also takes starts in
    batches without waiting (:meth:`take`, :meth:`delay`).

    ``burst=1`` (the client's cap) spaces every start ``1 / rate`` seconds apart; a
    campaign allows a short burst so its claims can go in batches. Callers of
    :meth:`wait` queue in arrival order (a fair lock); the one at the head sleeps
    until its start is due and only then takes it. A caller cancelled while queued
    or sleeping has reserved nothing, so it never delays those behind it.

    Args:
        rate: starts per second.
        burst: starts that may happen at once after a pause (>= 1).
        clock: monotonic clock in seconds.
        sleep: coroutine function sleeping for a number of seconds (default
            ``asyncio.sleep``; tests inject their own).
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.interval = 1.0 / rate
        self._tolerance = (max(1, burst) - 1) * self.interval
        self._clock = clock
        self._sleep = sleep
        # GCRA's theoretical arrival time of the next start. It starts one burst ahead:
        # a burst is earned by a pause, the first start is never one.
        self._due = clock() + self._tolerance
        self._queue = asyncio.Lock()

    async def wait(self) -> None:
        """Return when this caller may start a request."""
        async with self._queue:
            now = self._clock()
            ready = self._due - self._tolerance
            if ready > now:
                sleep = self._sleep or asyncio.sleep
                await sleep(ready - now)
                now = ready
            self._due = max(self._due, now) + self.interval

    def take(self, want: int) -> int:
        """How many of ``want`` starts may happen now (they are counted as started)."""
        now = self._clock()
        due = max(self._due, now)
        granted = 0
        while granted < want and due - self._tolerance <= now:
            due += self.interval
            granted += 1
        if granted:
            self._due = due
        return granted

    def delay(self) -> float:
        """Seconds until the next start may happen."""
        return max(0.0, self._due - self._tolerance - self._clock())


class Throttle:
    """The semaphores (and rate caps) of all endpoint groups of one client.

    ``cap``: builds the rate cap of a group from (group, rate); default a local
    ``RateCap``. ``auto``: builds the adaptive limiter of a group whose rate is an
    :class:`~aicc_async.adaptive.AutoRate` (default a local ``AdaptiveRate``). The
    in-flight semaphores are always this process's own.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        rates: Mapping[str, float | AutoRate],
        cap: Callable[[str, float], RateLimiter] | None = None,
        auto: Callable[[str, AutoRate], AdaptiveRate] | None = None,
    ) -> None:
        self._semaphores = {g: asyncio.BoundedSemaphore(n) for g, n in limits.items()}
        self._rates: dict[str, RateLimiter] = {}
        #: The groups whose answers tune an adaptive limiter (``rate="auto"``).
        self._adaptive: dict[str, AdaptiveRate] = {}
        for g, r in rates.items():
            if isinstance(r, AutoRate):
                limiter = AdaptiveRate.from_spec(r) if auto is None else auto(g, r)
                self._rates[g] = self._adaptive[g] = limiter
            else:
                self._rates[g] = RateCap(r) if cap is None else cap(g, r)

    def adaptive(self, group: str) -> AdaptiveRate | None:
        """The adaptive limiter of ``group`` (``rate="auto"``), if it has one."""
        return self._adaptive.get(group)

    def feedback(self, group: str | None) -> Callable[[BaseException | None], None] | None:
        """For a request of ``group`` starting now: what to tell its answer (see
        ``AdaptiveRate.report``), or ``None`` when no adaptive limiter listens."""
        limiter = self._adaptive.get(group) if group is not None else None
        return None if limiter is None else limiter.report()

    def observed(self, group: str, limiter: AdaptiveRate) -> Throttle:
        """A throttle sharing these slots and caps whose answers of ``group`` also go to
        ``limiter`` (which its caller paces with itself: a campaign's rows)."""
        other = Throttle({}, {})
        other._semaphores = self._semaphores
        other._rates = self._rates
        other._adaptive = {**self._adaptive, group: limiter}
        return other

    async def acquire(self, group: str) -> None:
        """Take one in-flight slot of ``group`` (waiting for a free one and the rate cap).

        Pair every successful call with ``release(group)``.
        """
        semaphore = self._semaphores[group]
        await semaphore.acquire()
        cap = self._rates.get(group)
        if cap is not None:
            if isinstance(cap, AdaptiveRate) and cap.ready():
                return  # started at once, without a coroutine to wait in
            try:
                await cap.wait()
            except BaseException:
                semaphore.release()
                raise

    async def pace(self, group: str) -> None:
        """Wait for the rate cap of ``group`` again, keeping the slot already taken: a
        request sent a second time (the replay after a rejected token) is one more start."""
        cap = self._rates.get(group)
        if cap is not None:
            await cap.wait()

    def release(self, group: str) -> None:
        """Give back a slot taken by ``acquire``."""
        self._semaphores[group].release()
