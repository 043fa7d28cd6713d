"""The shared AccessToken: a rejected token is removed compare-and-delete, and a
Redis that cannot be reached fails clearly (or, opted in, falls back to local state).

Two clients on one ``redis_url`` stand for two processes: each has its own
connection, token cache and lock client, exactly as separate processes would.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio
from aicc_helpers import VOICE

from aicc_async import AICCClient, AICCConnectionError
from aicc_async.redis_state import RedisRateCap, RedisState
from aicc_async.testing import FakeAICC


async def settled(aicc: AICCClient) -> None:
    """Wait for the client's token fetch in progress, if any (a refresh ahead)."""
    task = aicc._transport.tokens._inflight
    if task is not None:
        await asyncio.shield(task)


def bearers(fake: FakeAICC) -> list[str]:
    """The AccessToken each processed notification carried, in order."""
    return [str(r.headers["Authorization"]) for r in fake.processed(VOICE)]


@pytest.mark.asyncio
async def test_an_old_rejected_token_never_removes_the_one_another_process_refreshed(
    fake_aicc: FakeAICC, redis_url: str
) -> None:
    async with (
        fake_aicc.client(redis_url=redis_url) as a,
        fake_aicc.client(redis_url=redis_url) as b,
    ):
        await a.voice_notification.create(called="13800000001", voice_content="$a$")
        await b.voice_notification.create(called="13800000002", voice_content="$a$")
        assert fake_aicc.token_requests == 1  # b read a's token from Redis
        fake_aicc.expire_tokens()

        # b is refused, drops the old token from Redis and stores a new one.
        await b.voice_notification.create(called="13800000003", voice_content="$a$")
        assert fake_aicc.token_requests == 2
        # a is refused with the old token too: it must not delete b's new one.
        await a.voice_notification.create(called="13800000004", voice_content="$a$")
        await b.voice_notification.create(called="13800000005", voice_content="$a$")

    assert fake_aicc.token_requests == 2
    old, _, new, from_a, last = bearers(fake_aicc)
    assert new != old
    assert from_a == last == new  # a used the token b refreshed; it survived in Redis
    assert fake_aicc.rejected_token_requests == 2


@pytest.mark.asyncio
async def test_a_refresh_ahead_is_fetched_once_and_handed_over_through_redis(
    redis_url: str,
) -> None:
    now = [1000.0]

    def clock() -> float:
        return now[0]

    async with (
        FakeAICC(clock=clock) as fake,
        fake.client(redis_url=redis_url, clock=clock) as a,
        fake.client(redis_url=redis_url, clock=clock) as b,
    ):
        await a.voice_notification.create(called="13800000001", voice_content="$a$")
        await b.voice_notification.create(called="13800000002", voice_content="$a$")
        assert fake.token_requests == 1

        # 550 s on: past the refresh point of the 600 s token (540 s), before its
        # expiry. Every clock moves on, Redis's (the entry's time to live) included.
        now[0] += 550
        shared = redis.asyncio.from_url(redis_url)
        assert await shared.pexpire(a._transport._shared.redis.token_key, 50_000)
        await shared.aclose()

        # a sends with the current token and fetches the next one ahead, once.
        await a.voice_notification.create(called="13800000003", voice_content="$a$")
        await settled(a)
        assert fake.token_requests == 2
        # b, past its refresh point too, takes a's new token from Redis.
        await b.voice_notification.create(called="13800000004", voice_content="$a$")
        await settled(b)
        await b.voice_notification.create(called="13800000005", voice_content="$a$")
        await a.voice_notification.create(called="13800000006", voice_content="$a$")

    assert fake.token_requests == 2
    first, _, before_refresh, b_before, b_after, a_after = bearers(fake)
    assert first == before_refresh == b_before
    assert b_after == a_after != first
    assert fake.rejected_token_requests == 0


@pytest.mark.asyncio
async def test_unreachable_redis_fails_clearly_and_sends_nothing(
    fake_aicc: FakeAICC, free_port: int
) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port}/0"
    async with fake_aicc.client(redis_url=url, rate_limits={"voice_notification": 10.0}) as aicc:
        with pytest.raises(AICCConnectionError) as caught:
            await aicc.voice_notification.create(called="13800000001", voice_content="$a$")

    message = str(caught.value)
    assert f"Redis at redis://***@127.0.0.1:{free_port}/0 unreachable" in message
    assert "nothing was sent" in message
    assert "hunter2" not in message
    assert fake_aicc.token_requests == 0
    assert fake_aicc.received(VOICE) == []


@pytest.mark.asyncio
async def test_opted_in_local_fallback_warns_once_and_keeps_the_local_cap(
    fake_aicc: FakeAICC, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port}/0"
    caplog.set_level(logging.WARNING, logger="aicc_async")
    async with fake_aicc.client(
        redis_url=url, redis_fallback="local", rate_limits={"voice_notification": 40.0}
    ) as aicc:
        for n in range(5):
            await aicc.voice_notification.create(called=f"1380000000{n}", voice_content="$a$")

    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert "redis_fallback='local'" in warnings[0].getMessage()
    assert len(fake_aicc.processed(VOICE)) == 5
    assert fake_aicc.token_requests == 1
    times = [r.time for r in fake_aicc.received(VOICE)]
    assert max(times) - min(times) >= 4 / 40 * 0.9  # still paced: 5 starts, 1/40 s apart


@pytest.mark.asyncio
async def test_rate_cap_fails_clearly_when_redis_goes_away(free_port: int) -> None:
    state = RedisState(
        f"redis://:pw-s3cret@127.0.0.1:{free_port}/0", token_endpoint="t", app_key="k"
    )
    cap = RedisRateCap(state, "voice_notification", 10.0)

    with pytest.raises(AICCConnectionError, match="unreachable; nothing was sent") as caught:
        await cap.wait()
    await state.close()

    assert "s3cret" not in str(caught.value)
