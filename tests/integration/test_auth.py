"""One shared AccessToken: single flight, refresh ahead, rejection handling (FakeAICC)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aicc_helpers import VOICE, FakeClock

from aicc_async import AICCAuthError, AICCClient, AICCConnectionError, RetryPolicy
from aicc_async.auth import AccessToken
from aicc_async.testing import FakeAICC, Fault


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded: fails the test after 5 s)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the condition is FakeAICC's counter
            await asyncio.sleep(0.001)


def bearer(fake: FakeAICC) -> list[str]:
    return [r.headers["Authorization"] for r in fake.received(VOICE)]


@pytest.mark.asyncio
async def test_ten_thousand_concurrent_first_calls_fetch_one_token(fake_aicc: FakeAICC) -> None:
    async with fake_aicc.client(limits={"voice_notification": 200}) as aicc:
        results = await asyncio.gather(
            *(
                aicc.voice_notification.create(called=f"{n:08d}", voice_content="$Hi$")
                for n in range(10_000)
            )
        )

    assert fake_aicc.token_requests == 1
    assert len({r.call_serial_no for r in results}) == 10_000
    assert len(fake_aicc.processed(VOICE)) == 10_000
    assert len(set(bearer(fake_aicc))) == 1


@pytest.mark.parametrize(
    ("lifetime", "refresh_at", "expires_at"),
    [
        (600, 540, 595),  # 10 % lead (60 s) beats 30 s; used until 5 s before expiry
        (3600, 3240, 3595),
        (60, 30, 57),  # 30 s lead, which is also half the lifetime
        (40, 20, 38),  # 30 s lead would be earlier than half: half wins
    ],
)
def test_refresh_point_is_max_30s_or_10pct_but_not_before_half(
    lifetime: float, refresh_at: float, expires_at: float
) -> None:
    token = AccessToken(value="t", lifetime=lifetime, obtained_at=0.0)
    assert token.refresh_at == pytest.approx(refresh_at)
    assert token.expires_at == pytest.approx(expires_at)
    assert "'t'" not in repr(token)


@pytest.mark.asyncio
async def test_refresh_ahead_then_never_an_expired_token() -> None:
    clock = FakeClock()
    async with FakeAICC(clock=clock) as fake, fake.client(clock=clock) as aicc:
        await aicc.voice_notification.create(called="1001", voice_content="$a$")
        assert fake.token_requests == 1

        clock.now += 539  # before the refresh point (540 s of 600): nothing happens
        await aicc.voice_notification.create(called="1002", voice_content="$b$")
        assert fake.token_requests == 1

        clock.now += 2  # past it: this call still uses the old token, one refresh starts
        await aicc.voice_notification.create(called="1003", voice_content="$c$")
        await until(lambda: fake.token_requests == 2)
        await aicc.voice_notification.create(called="1004", voice_content="$d$")
        first, _, during, after = bearer(fake)
        assert during == first
        assert after != first

        clock.now += 2000  # far past every token's life: fetch first, then send
        await aicc.voice_notification.create(called="1005", voice_content="$e$")
        assert fake.token_requests == 3
        assert bearer(fake)[-1] not in (first, after)

    assert fake.rejected_token_requests == 0
    assert len(fake.processed(VOICE)) == 5


@pytest.mark.asyncio
async def test_refresh_ahead_is_one_request_for_many_callers() -> None:
    clock = FakeClock()
    async with FakeAICC(clock=clock) as fake, fake.client(clock=clock) as aicc:
        await aicc.voice_notification.create(called="1", voice_content="$a$")
        clock.now += 550
        await asyncio.gather(
            *(
                aicc.voice_notification.create(called=str(n), voice_content="$a$")
                for n in range(300)
            )
        )
        await until(lambda: fake.token_requests == 2)
        await aicc.voice_notification.create(called="2", voice_content="$a$")
        assert fake.token_requests == 2
        assert fake.rejected_token_requests == 0


@pytest.mark.parametrize("reject_status", [401, 403])
@pytest.mark.asyncio
async def test_rejected_token_refreshes_once_and_replays_once(reject_status: int) -> None:
    async with FakeAICC(token_reject_status=reject_status) as fake, fake.client() as aicc:
        await aicc.voice_notification.create(called="99", voice_content="$a$")
        fake.expire_tokens()
        fake.chaos(seed=7, probability=1.0, faults=[Fault.LATENCY], delay=0.01)

        numbers = [f"{n:06d}" for n in range(200)]
        results = await asyncio.gather(
            *(aicc.voice_notification.create(called=n, voice_content="$a$") for n in numbers)
        )

    assert all(r.call_serial_no for r in results)
    assert fake.token_requests == 2  # one refresh for all 200 callers
    assert all(fake.calls_to(n) == 1 for n in numbers)  # nobody phoned twice
    # Only the requests in flight when the token died were rejected (at most the limit).
    assert 1 <= fake.rejected_token_requests <= 50


@pytest.mark.asyncio
async def test_second_rejection_after_refresh_is_an_auth_error(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.TOKEN_EXPIRED, times=2, endpoint=VOICE)
    async with fake_aicc.client() as aicc:
        with pytest.raises(AICCAuthError) as caught:
            await aicc.voice_notification.create(called="5", voice_content="$a$")

    assert caught.value.status == 401
    assert "subscribed" in str(caught.value)
    assert len(fake_aicc.received(VOICE)) == 2  # the request and its one replay
    assert fake_aicc.processed(VOICE) == []
    assert fake_aicc.token_requests == 2


@pytest.mark.asyncio
async def test_wrong_secret_is_an_auth_error_and_nothing_is_sent(fake_aicc: FakeAICC) -> None:
    async with AICCClient(fake_aicc.url, fake_aicc.app_key, "wrong-secret") as aicc:
        with pytest.raises(AICCAuthError) as caught:
            await aicc.voice_notification.create(called="5", voice_content="$a$")

    assert caught.value.endpoint == "tokenByAkSk"
    assert caught.value.status == 401
    assert "wrong-secret" not in str(caught.value)
    assert fake_aicc.received(VOICE) == []


@pytest.mark.asyncio
async def test_token_fetch_survives_a_gateway_error(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.HTML_502, endpoint="tokenByAkSk")
    async with fake_aicc.client() as aicc:
        result = await aicc.voice_notification.create(called="5", voice_content="$a$")

    assert result.call_serial_no
    assert fake_aicc.token_requests == 2  # tokenByAkSk is safe to repeat
    assert len(fake_aicc.processed(VOICE)) == 1


@pytest.mark.parametrize("fault", [Fault.HTML_503, Fault.HTTP_500, Fault.HTML_502])
@pytest.mark.asyncio
async def test_token_endpoint_outage_means_not_sent_not_bad_credentials(
    fake_aicc: FakeAICC, fault: Fault
) -> None:
    fake_aicc.inject(fault, times=10, endpoint="tokenByAkSk")
    fast = RetryPolicy(base_delay=0.001, max_delay=0.01)
    async with fake_aicc.client(retry=fast) as aicc:
        with pytest.raises(AICCConnectionError) as caught:
            await aicc.voice_notification.create(called="5", voice_content="$a$")

    assert type(caught.value) is AICCConnectionError  # safe to send later; not "unknown"
    assert caught.value.endpoint == VOICE
    assert "was not sent" in str(caught.value)
    assert fake_aicc.received(VOICE) == []


@pytest.mark.asyncio
async def test_close_while_waiting_for_a_token_is_not_sent(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.HANG, endpoint="tokenByAkSk")
    aicc = fake_aicc.client()
    call = asyncio.ensure_future(aicc.voice_notification.create(called="5", voice_content="$a$"))
    await until(lambda: fake_aicc.token_requests == 1)
    await aicc.close()

    with pytest.raises(AICCConnectionError, match="closed"):
        await call
    assert fake_aicc.received(VOICE) == []


@pytest.mark.asyncio
async def test_failed_refresh_ahead_is_not_retried_for_a_while() -> None:
    clock = FakeClock()
    async with FakeAICC(clock=clock) as fake, fake.client(clock=clock) as aicc:
        await aicc.voice_notification.create(called="1", voice_content="$a$")
        clock.now += 545  # inside the refresh window
        fake.inject(Fault.HTTP_500, endpoint="tokenByAkSk")
        await aicc.voice_notification.create(called="2", voice_content="$a$")
        await until(lambda: fake.token_requests == 2)  # the refresh, which fails
        for n in range(20):  # the old token is still good: no hammering meanwhile
            await aicc.voice_notification.create(called=f"3{n}", voice_content="$a$")
        assert fake.token_requests == 2
        clock.now += 6  # past the cool-down: one more try, which succeeds
        await aicc.voice_notification.create(called="4", voice_content="$a$")
        await until(lambda: fake.token_requests == 3)
    assert fake.rejected_token_requests == 0
