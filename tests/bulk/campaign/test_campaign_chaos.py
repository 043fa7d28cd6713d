"""The chaos campaign: 5,000 voice notifications while FakeAICC misbehaves at random.

FakeAICC runs with ``record=False`` (it keeps counters, not requests) and gives 5 % of
the business requests a random fault with a fixed seed: resets after processing, 502
gateway pages after processing, hangs, busy answers and rejected tokens. Whatever
happens, the journal must account for every row, nobody may be phoned twice, every
number phoned must be ``done`` or ``unknown``, and ``unknown`` must mean exactly "the
request was ambiguous" (reset, 502 or hang), nothing else.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aicc_helpers import VOICE

from aicc_async import AICCAuthError, CreateVoiceNotificationRequest, RetryPolicy, Timeout
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.testing import FakeAICC, Fault

ROWS = 5000
SEED = 20240611
PROBABILITY = 0.05
FAULTS = (
    Fault.RESET_AFTER_PROCESSING,
    Fault.HTML_502,
    Fault.HANG,
    Fault.BUSY,
    Fault.TOKEN_EXPIRED,
)
HANG_DROPPED_AFTER = 0.7  # the fake drops a hanging connection after this (client: 0.5 s)
CONCURRENCY = 100
RETRY = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)
# Ends hangs fast, yet well above an unfaulted request's latency here (~0.1 s at most at
# this concurrency): a slow unfaulted request would also be, correctly, "unknown".
TIMEOUT = Timeout(total=0.5, connect=0.25)
MAX_RUNS = 6


def number(i: int) -> str:
    return f"86{i:09d}"


def rows() -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"row-{i}",
            request=CreateVoiceNotificationRequest(
                called=number(i), voice_content="$Your parcel arrives today$"
            ),
        )
        for i in range(ROWS)
    ]


def faults_drawn(requests: int) -> Counter[Fault]:
    """The faults FakeAICC.chaos gave ``requests`` business requests: the seeded draws
    do not depend on which request came first, only on how many came.

    Mirrors FakeAICC._pick_fault (one ``random()`` per request, then ``choice`` when it
    is below the probability); if FakeAICC changes how it draws, change this too.
    """
    rng = random.Random(SEED)
    drawn: Counter[Fault] = Counter()
    for _ in range(requests):
        if rng.random() < PROBABILITY:
            drawn[rng.choice(FAULTS)] += 1
    return drawn


def journal(path: Path) -> dict[str, tuple[str, str | None]]:
    """number -> (state, code), read from the closed journal."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {
            called: (state, code)
            for called, state, code in db.execute(
                "SELECT json_extract(payload, '$.called'), state, code FROM rows"
            )
        }


async def run_to_the_end(campaign: Campaign, fake: FakeAICC) -> StateCounts:
    """Run until no row is pending; returns the counts.

    A token that is rejected again right after a refresh (two TOKEN_EXPIRED faults in a
    row) makes a run stop with AICCAuthError, its rows still pending: the user's answer
    is to run again, so the test does too.
    """
    async with fake.client(
        timeout=TIMEOUT, retry=RETRY, limits={"voice_notification": CONCURRENCY}
    ) as aicc:
        for _ in range(MAX_RUNS):
            try:
                counts = await campaign.run(aicc, concurrency=CONCURRENCY)
            except AICCAuthError:
                assert (await campaign.report()).counts.sending == 0
                continue
            return counts
    raise AssertionError(f"the campaign did not finish in {MAX_RUNS} runs")


@pytest.mark.asyncio
async def test_chaos_campaign_of_5000_rows(tmp_path: Path) -> None:
    path = tmp_path / "chaos.db"
    async with FakeAICC(record=False) as fake:
        fake.chaos(
            seed=SEED,
            probability=PROBABILITY,
            faults=list(FAULTS),
            delay=HANG_DROPPED_AFTER,
        )
        async with Campaign(path, "voice_notification") as campaign:
            assert (await campaign.load(rows())).added == ROWS
            counts = await run_to_the_end(campaign, fake)
            report = await campaign.report()
            problems = {p["fields"]["called"]: p async for p in campaign.problem_rows()}
        stats: dict[str, Any] = fake.stats()
        calls = {number(i): fake.calls_to(number(i)) for i in range(ROWS)}

        # Every row has exactly one final state.
        assert counts == report.counts
        assert counts.pending == 0
        assert counts.sending == 0
        assert counts.done + counts.failed + counts.unknown == ROWS
        assert fake.requests == []  # record=False kept no requests

        rows_ = journal(path)
        assert len(rows_) == ROWS
        states = Counter(state for state, _ in rows_.values())
        assert states == Counter(
            {"done": counts.done, "failed": counts.failed, "unknown": counts.unknown}
        )
        assert {called for called, p in problems.items()} == {
            called for called, (state, _) in rows_.items() if state != "done"
        }

        # Nobody phoned twice; everyone phoned is done or unknown; every done row once.
        assert {called: n for called, n in calls.items() if n > 1} == {}
        phoned = {called for called, n in calls.items() if n}
        assert {c: rows_[c] for c in phoned if rows_[c][0] not in ("done", "unknown")} == {}
        done = {called for called, (state, _) in rows_.items() if state == "done"}
        assert {called: calls[called] for called in done if calls[called] != 1} == {}
        assert sum(calls.values()) == stats["processed"][VOICE]

        # Unknown means ambiguous, and every ambiguous request made its row unknown:
        # a 502 page or a reset came after processing (phoned once), a hang never
        # processed it (not phoned), and none of them was sent again.
        unknown = {called: rows_[called] for called in rows_ if rows_[called][0] == "unknown"}
        assert unknown, "the seed gives some ambiguous failures"
        drawn = faults_drawn(stats["received"][VOICE])
        by_kind: Counter[Fault] = Counter()
        for called, (_, code) in unknown.items():
            if code == "HTTP 502":
                assert calls[called] == 1
                by_kind[Fault.HTML_502] += 1
            else:
                assert code == "no answer", (called, code)
                by_kind[Fault.RESET_AFTER_PROCESSING if calls[called] else Fault.HANG] += 1
        ambiguous = (Fault.RESET_AFTER_PROCESSING, Fault.HTML_502, Fault.HANG)
        assert {f: by_kind[f] for f in ambiguous} == {f: drawn[f] for f in ambiguous}
        assert drawn[Fault.BUSY] > 0
        assert drawn[Fault.TOKEN_EXPIRED] > 0
        # Requests that were not processed: hangs, busy answers, rejected tokens only.
        not_processed = stats["received"][VOICE] - stats["processed"][VOICE]
        assert not_processed == drawn[Fault.HANG] + drawn[Fault.BUSY] + drawn[Fault.TOKEN_EXPIRED]
        assert stats["rejected_token_requests"] == drawn[Fault.TOKEN_EXPIRED]

        # Failed rows were never processed: busy on every attempt (retCode 1) only.
        failed = {c: (code, calls[c]) for c, (state, code) in rows_.items() if state == "failed"}
        assert {c: f for c, f in failed.items() if f != ("1", 0)} == {}

        # The same campaign again, same rows: nothing more is sent.
        received_before = stats["received"][VOICE]
        async with Campaign(path, "voice_notification") as campaign:
            summary = await campaign.load(rows())
            again = await run_to_the_end(campaign, fake)
        assert (summary.added, summary.replaced, summary.unchanged) == (0, 0, ROWS)
        assert again == counts
        assert fake.stats()["received"][VOICE] == received_before
        assert {number(i): fake.calls_to(number(i)) for i in range(ROWS)} == calls
