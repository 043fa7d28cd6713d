"""FakeAICC for tests in another process: latency, stats() and GET /_fake/stats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from fake_http import STATS_PATH, TOKEN, TOKEN_PATH, VOICE, VOICE_PATH, counts, get_stats

from aicc_async import AICCBusinessError, RetryPolicy
from aicc_async.testing import FakeAICC, Fault, peak_per_second

ONE_ATTEMPT = RetryPolicy(max_attempts=1)


async def get_token(session: aiohttp.ClientSession, fake: FakeAICC) -> str:
    body = {"app_key": fake.app_key, "app_secret": fake.app_secret}
    async with session.post(fake.url + TOKEN_PATH, json=body) as resp:
        assert resp.status == 200
        token = (await resp.json())["AccessToken"]
    assert isinstance(token, str)
    return token


async def post_voice(session: aiohttp.ClientSession, fake: FakeAICC, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "X-APP-Key": fake.app_key}
    body = {"called": "88880000", "voiceContent": "$hi$"}
    async with session.post(fake.url + VOICE_PATH, json=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def test_latency_must_be_finite_and_not_negative() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeAICC(latency=-1)
    with pytest.raises(ValueError, match="latency"):
        FakeAICC(latency=float("nan"))
    FakeAICC(latency=0)  # the boundary is accepted


@pytest.mark.asyncio
async def test_latency_delays_a_voice_notification() -> None:
    async with FakeAICC(latency=0.2) as fake, fake.client() as aicc:
        started = time.monotonic()
        await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        elapsed = time.monotonic() - started
        assert elapsed >= 0.2
        assert fake.calls_to("88880000") == 1
        assert fake.max_in_flight == 1
        assert fake.in_flight == 0


@pytest.mark.asyncio
async def test_delayed_request_is_received_not_processed_and_stats_still_answer(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(latency=3600, record=False) as fake:
        token = await get_token(session, fake)  # tokenByAkSk is never delayed
        pending = asyncio.create_task(post_voice(session, fake, token))
        try:

            async def until_in_flight() -> dict[str, Any]:
                while True:  # each round trip yields to the loop; no sleeping
                    stats = await get_stats(session, fake.url)
                    if stats["in_flight"]:
                        return stats

            stats = await asyncio.wait_for(until_in_flight(), 5)
            assert stats["in_flight"] == 1
            assert stats["received"] == counts(tokenByAkSk=1, createVoiceNotification=1)
            assert stats["processed"] == counts(tokenByAkSk=1)
            assert stats["calls"] == {}
        finally:
            await fake.close()
            # close() cut the hour-long wait short and dropped the connection, unprocessed
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(pending, 5)
    assert fake.calls_to("88880000") == 0
    assert fake.stats()["processed"][VOICE] == 0
    assert fake.in_flight == 0


@pytest.mark.asyncio
async def test_stats_counts_without_recording() -> None:
    async with FakeAICC(record=False) as fake, fake.client() as aicc:
        await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        await aicc.voice_notification.create(called="88880001", voice_content="$hi$")
        await aicc.outbound.write_back_result(
            sub_cc_no=1, vdn_id=88, unique_id="u1", service_id="s1"
        )
        stats = fake.stats()
        assert fake.requests == []
    assert stats == {
        "calls": {"88880000": 2, "88880001": 1},
        "call_tasks": {},
        "write_backs": {"u1": 1},
        "received": counts(tokenByAkSk=1, createVoiceNotification=3, midresult=1),
        "processed": counts(tokenByAkSk=1, createVoiceNotification=3, midresult=1),
        "token_requests": 1,
        "rejected_token_requests": 0,
        "in_flight": 0,
        "max_in_flight": 1,
        "throttled": 0,
        "release_events": dict.fromkeys(
            (
                "scheduled",
                "pending",
                "delivered",
                "failed",
                "cancelled",
                "answered",
                "not_answered",
                "attempts",
                "duplicates",
            ),
            0,
        ),
    }
    assert json.loads(json.dumps(stats)) == stats


@pytest.mark.asyncio
async def test_stats_separates_received_from_processed_and_counts_unknown(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(record=False) as fake:
        fake.inject(Fault.BUSY)
        async with fake.client(retry=ONE_ATTEMPT) as aicc:
            with pytest.raises(AICCBusinessError):
                await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        fake.expire_tokens()
        assert await post_voice(session, fake, "stale") == 401
        async with session.get(fake.url + "/nowhere") as resp:
            assert resp.status == 404
        stats = fake.stats()
    assert stats["received"] == counts(tokenByAkSk=1, createVoiceNotification=2, unknown=1)
    assert stats["processed"] == counts(tokenByAkSk=1)
    assert stats["rejected_token_requests"] == 1
    assert stats["calls"] == {}


@pytest.mark.asyncio
async def test_stats_route_answers_the_snapshot_and_is_invisible(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(latency=0.05) as fake:
        async with fake.client() as aicc:
            await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        before = fake.stats()
        assert await get_stats(session, fake.url) == before
        async with session.post(fake.url + STATS_PATH, json={}) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET"
        async with session.put(fake.url + STATS_PATH) as resp:
            assert resp.status == 405
        assert await get_stats(session, fake.url) == before
        assert fake.stats() == before
        assert [r.endpoint for r in fake.requests] == [TOKEN, VOICE]
    assert before["received"] == counts(tokenByAkSk=1, createVoiceNotification=1)


@pytest.mark.asyncio
async def test_stats_route_gets_no_faults(session: aiohttp.ClientSession) -> None:
    async with FakeAICC() as fake:
        fake.inject(Fault.RESET_BEFORE_PROCESSING)
        fake.chaos(seed=1, probability=1.0, faults=[Fault.HANG])
        stats = await get_stats(session, fake.url)
        assert stats["received"] == counts()
        assert stats["in_flight"] == 0
        # the queued fault is still waiting for a business request
        token = await get_token(session, fake)
        with pytest.raises(aiohttp.ClientError):
            await post_voice(session, fake, token)
        assert fake.requests[-1].fault is Fault.RESET_BEFORE_PROCESSING


def test_peak_per_second_counts_a_sliding_window() -> None:
    assert peak_per_second([3.0, 0.0, 0.5, 0.99, 1.0, 1.2]) == 4  # [0.5, 1.5): 0.5 .. 1.2
    assert peak_per_second([0.0, 1.0, 2.0]) == 1
    assert peak_per_second([]) == 0
