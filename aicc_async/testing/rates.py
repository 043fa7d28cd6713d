"""Reading request rates off arrival times, for tests of rate caps."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["peak_per_second"]


def peak_per_second(times: Iterable[float]) -> int:
    """The most arrivals in any one-second window ``[t, t + 1)`` of ``times`` (seconds,
    in any order), e.g. ``[r.time for r in fake_aicc.received("createVoiceNotification")]``."""
    ordered = sorted(times)
    peak = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak
