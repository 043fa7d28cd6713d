"""``aicc.with_options(...)``: a client with some options changed that shares the
connection pool, the AccessToken and the retry budget of the one it came from.

FakeAICC counts what it received; each test checks those counts.
"""

from __future__ import annotations

from typing import Any

import pytest
from aicc_helpers import VOICE

from aicc_async import (
    AICCClient,
    AICCConnectionError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCValidationError,
    RetryPolicy,
    Timeout,
)
from aicc_async.testing import FakeAICC, Fault

WRITE_BACK = "midresult"
TOKEN = "tokenByAkSk"
FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, max_elapsed=5)


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    return fake.client(retry=FAST, timeout=Timeout(total=5, connect=1), **kwargs)


async def notify(aicc: AICCClient, called: str = "88880000") -> Any:
    return await aicc.voice_notification.create(called=called, voice_content="$Hi$")


async def write_back(aicc: AICCClient) -> Any:
    return await aicc.outbound.write_back_result(1, 88, "u-1", "svc")


@pytest.mark.asyncio
async def test_derived_client_shares_the_token_and_the_pool(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc) as aicc:
        await notify(aicc, "88880001")
        quick = aicc.with_options(timeout=2)
        await notify(quick, "88880002")
        await quick.messaging.apply_token("user-1", "User", "channel-1", "en")

        assert quick._transport._shared.session is aicc._transport._shared.session

    assert len(fake_aicc.received(TOKEN)) == 1  # one AccessToken for both clients
    assert fake_aicc.calls_to("88880001") == fake_aicc.calls_to("88880002") == 1


@pytest.mark.asyncio
async def test_derived_timeout_applies_to_the_derived_client_only(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc) as aicc:
        impatient = aicc.with_options(timeout=Timeout(total=0.2, connect=0.1))
        fake_aicc.inject(Fault.LATENCY, endpoint=VOICE, delay=1.0)
        with pytest.raises(AICCOutcomeUnknownError):
            await notify(impatient)

        fake_aicc.inject(Fault.LATENCY, endpoint=VOICE, delay=0.3)
        result = await notify(aicc)  # the parent keeps its 5 s

    assert result.call_serial_no
    assert impatient.config.timeout == Timeout(total=0.2, connect=0.1)
    assert aicc.config.timeout == Timeout(total=5, connect=1)


@pytest.mark.asyncio
async def test_derived_retry_policy_applies_to_the_derived_client_only(
    fake_aicc: FakeAICC,
) -> None:
    async with client(fake_aicc) as aicc:
        once = aicc.with_options(retry=RetryPolicy(max_attempts=1))
        fake_aicc.inject(Fault.HTML_502, endpoint=WRITE_BACK, times=2)
        with pytest.raises(AICCHTTPError):
            await write_back(once)
        assert len(fake_aicc.received(WRITE_BACK)) == 1

        await write_back(aicc)  # one more 502, then retried to success
    assert len(fake_aicc.received(WRITE_BACK)) == 3


@pytest.mark.asyncio
async def test_derived_client_shares_the_retry_budget(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc, retry_budget=5) as aicc:  # one retry's worth
        other = aicc.with_options(timeout=3)
        fake_aicc.inject(Fault.HTML_502, endpoint=WRITE_BACK, times=2)
        with pytest.raises(AICCHTTPError, match="retry budget is exhausted"):
            await write_back(aicc)  # one retry, then the budget is empty
        fake_aicc.inject(Fault.HTML_502, endpoint=WRITE_BACK)
        with pytest.raises(AICCHTTPError, match="retry budget is exhausted"):
            await write_back(other)  # the derived client draws on the same budget

    assert len(fake_aicc.received(WRITE_BACK)) == 3


@pytest.mark.asyncio
async def test_closing_a_derived_client_leaves_the_pool_open(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc) as aicc:
        async with aicc.with_options(timeout=2) as derived:
            await notify(derived, "88880001")
        assert derived.closed
        with pytest.raises(AICCConnectionError, match="closed"):
            await notify(derived, "88880002")

        assert not aicc.closed
        await notify(aicc, "88880003")  # same pool, same token
        session = aicc._transport._shared.session
        assert session is not None
        assert not session.closed

    assert session.closed  # closing the parent closed it
    assert len(fake_aicc.received(TOKEN)) == 1
    assert fake_aicc.calls_to("88880002") == 0
    assert fake_aicc.calls_to("88880003") == 1


@pytest.mark.asyncio
async def test_closing_the_parent_closes_the_derived_client(fake_aicc: FakeAICC) -> None:
    aicc = client(fake_aicc)
    derived = aicc.with_options(retry=RetryPolicy(max_attempts=2))
    await notify(derived, "88880001")
    await aicc.close()

    assert derived.closed
    with pytest.raises(AICCConnectionError, match="closed"):
        await notify(derived, "88880002")
    assert fake_aicc.calls_to("88880002") == 0


@pytest.mark.asyncio
async def test_derived_default_headers_and_limits(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc, default_headers={"X-Trace": "parent"}) as aicc:
        traced = aicc.with_options(
            default_headers={"X-Trace": "child"}, limits={"voice_notification": 3}
        )
        await notify(traced, "88880001")
        await notify(aicc, "88880002")

    child, parent = fake_aicc.received(VOICE)
    assert (child.headers["X-Trace"], parent.headers["X-Trace"]) == ("child", "parent")
    assert traced.config.limits["voice_notification"] == 3
    assert traced.config.limits["outbound"] == aicc.config.limits["outbound"]  # merged


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": -1}, "timeout.total"),
        ({"limits": {"nope": 1}}, "limits"),
        ({"retry": "fast"}, "retry"),
        ({"max_response_bytes": 10}, "max_response_bytes"),
    ],
)
def test_with_options_validates_like_the_constructor(options: dict[str, Any], field: str) -> None:
    aicc = AICCClient("https://aicc.test", "key", "secret")
    with pytest.raises(AICCValidationError) as caught:
        aicc.with_options(**options)
    assert caught.value.field == field
