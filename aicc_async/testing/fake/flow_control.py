"""FakeAICC's hidden flow-control limit: a tenant's request rate the client is not told.

A token bucket of ``rate`` requests per second, ``burst`` deep, on the fake's clock:
a business request that finds it empty is answered HTTP 429 at once (as AICC's
gateway does) and not processed. The limit can change while requests arrive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["HiddenLimit"]


class HiddenLimit:
    """A token bucket: :meth:`admit` says whether a request arriving now gets through.

    Args:
        rate: requests per second let through.
        burst: how many may arrive at once after a pause (default: 0.2 s worth, >= 1).
        clock: monotonic clock, seconds.
    """

    def __init__(self, rate: float, burst: float | None, clock: Callable[[], float]) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        if burst is not None and not (math.isfinite(burst) and burst >= 1):
            raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, rate * 0.2)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self.throttled = 0
        """Requests answered 429 by this limit."""

    def admit(self) -> bool:
        """Take one request's token; ``False`` (counted) when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.throttled += 1
        return False
