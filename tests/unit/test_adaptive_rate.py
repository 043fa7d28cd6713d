"""``rate="auto"``: the adaptive limiter's rate follows throttle answers (an injected
clock; a simulated tenant with a hidden token-bucket limit, no real time)."""

from __future__ import annotations

import heapq

import pytest

from aicc_async.adaptive import AdaptiveRate, AutoRate
from aicc_async.errors import AICCValidationError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HiddenLimit:
    """A tenant's flow control: a token bucket of ``rate`` per second, ``burst`` deep."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, 0.0

    def admit(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def simulate(
    limiter: AdaptiveRate,
    clock: Clock,
    limit: HiddenLimit,
    seconds: float,
    *,
    latency: float = 0.2,
    change: tuple[float, float] | None = None,
) -> list[tuple[float, bool]]:
    """Send as fast as ``limiter`` allows for ``seconds``; answers come back after
    ``latency`` (a 429 at once). Returns (start time, throttled) per request."""
    start = clock.now
    pending: list[tuple[float, int, bool]] = []
    sent: list[tuple[float, bool]] = []
    step = 0.005
    while clock.now - start < seconds:
        if change is not None and clock.now - start >= change[0]:
            limit.rate, limit.burst, change = change[1], change[1] * 0.2, None
        while pending and pending[0][0] <= clock.now:
            _, epoch, throttled = heapq.heappop(pending)
            limiter.answered(epoch, throttled)
        for _ in range(limiter.take(1000)):
            ok = limit.admit(clock.now - start)
            sent.append((clock.now - start, not ok))
            back = clock.now + (latency if ok else 0.01)
            heapq.heappush(pending, (back, limiter.epoch, not ok))
        clock.now += step
    return sent


def rate_between(sent: list[tuple[float, bool]], begin: float, end: float) -> tuple[float, float]:
    """Requests placed per second (not throttled) and the share throttled, in [begin, end)."""
    window = [throttled for at, throttled in sent if begin <= at < end]
    placed = window.count(False)
    return placed / (end - begin), window.count(True) / max(1, len(window))


def test_slow_start_doubles_the_rate_every_second_until_a_throttle() -> None:
    clock = Clock()
    limiter = AdaptiveRate(initial=10, clock=clock)
    assert limiter.rate == pytest.approx(10)
    clock.now += 1
    assert limiter.rate == pytest.approx(20)
    clock.now += 2
    assert limiter.rate == pytest.approx(80)


def test_a_throttle_cuts_the_rate_once_per_round() -> None:
    clock = Clock()
    limiter = AdaptiveRate(initial=100, doubling=1e9, clock=clock)
    before = limiter.epoch
    limiter.answered(before, throttled=True)
    assert limiter.rate == pytest.approx(70)  # cut to 0.7 of the rate it had
    for _ in range(50):  # the rest of the burst that was sent before the cut
        limiter.answered(before, throttled=True)
    assert limiter.rate == pytest.approx(70)
    assert limiter.throttled == 51
    limiter.answered(limiter.epoch, throttled=True)  # sent after the cut: news
    assert limiter.rate == pytest.approx(49)


def test_after_a_cut_the_rate_climbs_back_to_the_last_limit_then_probes_above() -> None:
    clock = Clock()
    limiter = AdaptiveRate(initial=150, doubling=1e9, clock=clock)
    limiter.answered(limiter.epoch, throttled=True)
    k = (150 * 0.3 / 0.4) ** (1 / 3)  # about 4.8 s back to the last limit
    clock.now += k / 2
    assert 105 < limiter.rate < 150
    clock.now += k / 2
    assert limiter.rate == pytest.approx(150)
    clock.now += 5
    assert limiter.rate > 170  # the limit may have been raised: look above it


def test_the_rate_never_exceeds_the_ceiling_given_beside_auto() -> None:
    clock = Clock()
    limiter = AdaptiveRate.from_spec(AutoRate(ceiling=40), clock=clock)
    clock.now += 10
    assert limiter.rate == pytest.approx(40)
    assert AdaptiveRate.from_spec(AutoRate(ceiling=5), clock=clock).rate == pytest.approx(5)


def test_a_sender_that_sends_little_builds_up_no_rate_it_never_tried() -> None:
    clock = Clock()
    limiter = AdaptiveRate(initial=10, clock=clock)
    for _ in range(20):  # 2 starts a second for 10 s, whatever it is allowed
        clock.now += 0.5
        limiter.take(1)
    assert limiter.rate < 10


@pytest.mark.parametrize("bad", [0, -1, float("inf"), "fast"])
def test_a_bad_ceiling_is_refused(bad: object) -> None:
    with pytest.raises(AICCValidationError, match="ceiling"):
        AutoRate(ceiling=bad)  # type: ignore[arg-type]


def test_against_a_hidden_limit_it_places_90_percent_with_under_3_percent_throttled() -> None:
    clock = Clock()
    limiter = AdaptiveRate(burst=0.1, clock=clock)
    sent = simulate(limiter, clock, HiddenLimit(150, 30), 60)
    placed, throttled = rate_between(sent, 20, 60)  # the steady state
    assert placed >= 0.9 * 150
    assert throttled <= 0.03
    assert rate_between(sent, 0, 60)[1] <= 0.03  # the start included


def test_when_the_limit_halves_the_rate_follows_within_10_seconds() -> None:
    clock = Clock()
    limiter = AdaptiveRate(burst=0.1, clock=clock)
    sent = simulate(limiter, clock, HiddenLimit(150, 30), 80, change=(40, 75))
    placed, throttled = rate_between(sent, 50, 80)  # 10 s after the change, on
    assert 0.85 * 75 <= placed <= 75 * 1.02  # the bucket lets a burst through at the change
    assert throttled <= 0.03


@pytest.mark.asyncio
async def test_wait_lets_a_short_burst_through_then_spaces_the_starts() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        clock.now += seconds

    limiter = AdaptiveRate(initial=10, burst=0.2, doubling=1e9, clock=clock, sleep=sleep)
    clock.now += 1  # a pause earns the burst: 0.2 s worth at 10/s
    for _ in range(5):
        await limiter.wait()
    assert slept == [0.1, 0.1]  # three at once, then one every 0.1 s
