"""What the live line and the report show of ``--rate auto`` and of throttled rows."""

from __future__ import annotations

import io

from rich.console import Console

from aicc_async.adaptive import AdaptiveRate, RateSample
from aicc_async.bulk import CampaignReport, StateCounts
from aicc_async.cli.display import CampaignProgress, render_report


class Clock:
    def __init__(self) -> None:
        self.now = 5.0

    def __call__(self) -> float:
        return self.now


def shown(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(renderable)
    return out.getvalue()


def test_the_live_line_shows_the_adaptive_rate_and_the_throttle_answers() -> None:
    limiter = AdaptiveRate(initial=120, doubling=1e9, clock=Clock())
    limiter.answered(limiter.epoch, throttled=True)  # one 429: cut to 84/s
    out = io.StringIO()
    progress = CampaignProgress(Console(file=out, width=200, color_system=None))
    progress.throttling(limiter, 1)
    progress.sending(StateCounts(done=10, pending=5))
    line = shown(progress._progress.get_renderable())

    assert "rate auto 84/s" in line
    assert "throttled 1" in line


def test_the_report_says_what_throttling_did() -> None:
    samples = (RateSample(0.0, 10.0, 0, 0), RateSample(30.0, 148.0, 4400, 9))
    report = CampaignReport(
        "c.db", "voice_notification", StateCounts(done=4400), (), rate=samples, requeued=2,
        throttled=9,
    )  # fmt: skip
    text = " ".join(shown(render_report(report)).split())

    assert "--rate auto: 10/s at the start, 148/s after 30 s" in text
    assert "9 throttle answers" in text
    assert "2 rows answered 'throttled'" in text
    assert report.to_json()["rate"][1] == {"at": 30.0, "rate": 148.0, "sent": 4400, "throttled": 9}
    assert (report.to_json()["requeued"], report.to_json()["throttled"]) == (2, 9)
