"""Per-endpoint-group concurrency limits and optional request-rate caps.

Each group (``"voice_notification"``, ``"outbound"``, ``"mobile_agent"``,
``"messaging"``) has its own bounded semaphore: at most ``limit`` requests of
that group are on the wire at once, however many coroutines call. A slot is held
for one attempt only, never while waiting to retry.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["RateCap", "Throttle"]


class RateCap:
    """Spaces request starts at least ``1 / rate`` seconds apart (no bursts).

    Callers queue in arrival order (a fair lock); the one at the head sleeps until
    the next start is due and only then takes it. A caller cancelled while queued or
    sleeping has reserved nothing, so it never delays those behind it.

    Args:
        rate: starts per second.
        clock: monotonic clock in seconds.
        sleep: coroutine function sleeping for a number of seconds (default
            ``asyncio.sleep``; tests inject their own).
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -math.inf
        self._queue = asyncio.Lock()

    async def wait(self) -> None:
        """Return when this caller may start a request."""
        async with self._queue:
            now = self._clock()
            if self._next_slot > now:
                sleep = self._sleep or asyncio.sleep
                await sleep(self._next_slot - now)
                now = max(now, self._next_slot)
            self._next_slot = now + self.interval


class Throttle:
    """The semaphores (and rate caps) of all endpoint groups of one client."""

    def __init__(self, limits: Mapping[str, int], rates: Mapping[str, float]) -> None:
        self._semaphores = {g: asyncio.BoundedSemaphore(n) for g, n in limits.items()}
        self._rates = {g: RateCap(r) for g, r in rates.items()}

    async def acquire(self, group: str) -> None:
        """Take one in-flight slot of ``group`` (waiting for a free one and the rate cap).

        Pair every successful call with ``release(group)``.
        """
        semaphore = self._semaphores[group]
        await semaphore.acquire()
        cap = self._rates.get(group)
        if cap is not None:
            try:
                await cap.wait()
            except BaseException:
                semaphore.release()
                raise

    def release(self, group: str) -> None:
        """Give back a slot taken by ``acquire``."""
        self._semaphores[group].release()
