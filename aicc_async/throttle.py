"""Per-endpoint-group concurrency limits and optional request-rate caps.

Each group (``"voice_notification"``, ``"outbound"``, ``"mobile_agent"``,
``"messaging"``) has its own bounded semaphore: at most ``limit`` requests of
that group are on the wire at once, however many coroutines call. A slot is held
for one attempt only, never while waiting to retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

__all__ = ["RateCap", "Throttle"]


class RateCap:
    """Spaces request starts at least ``1 / rate`` seconds apart (no bursts).

    Each caller reserves the next free start slot and sleeps until it; so N
    callers are admitted at ``rate`` per second in arrival order.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._next_slot = 0.0

    async def wait(self) -> None:
        """Return when this caller may start a request."""
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


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
