"""The retry table of AICC-API-NOTES.md, row by row, for createVoiceNotification.

FakeAICC counts what it received and what it processed (a processed request is a
person phoned); each test checks both.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from aicc_helpers import VOICE

from aicc_async import (
    AICCBusinessError,
    AICCClient,
    AICCConnectionError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    RetryPolicy,
    Timeout,
)
from aicc_async.testing import FakeAICC, Fault

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.05, max_elapsed=5)


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    return fake.client(retry=FAST, timeout=Timeout(total=0.5, connect=0.25), **kwargs)


async def notify(aicc: AICCClient, **kwargs: Any) -> Any:
    return await aicc.voice_notification.create(
        called="88880000", voice_content="$Your parcel arrives today$", **kwargs
    )


@pytest.mark.parametrize(
    ("fault", "status", "processed"),
    [
        (Fault.RESET_AFTER_PROCESSING, None, 1),
        (Fault.RESET_BEFORE_PROCESSING, None, 0),  # the client cannot tell the two apart
        (Fault.HANG, None, 0),  # per-attempt timeout
        (Fault.HTML_502, 502, 1),
        (Fault.HTML_504, 504, 1),
        (Fault.HTML_503, 503, 0),  # 503 without Retry-After: treated as ambiguous
        (Fault.HTML_503_AFTER_PROCESSING, 503, 1),  # with Retry-After: ambiguous too
    ],
)
@pytest.mark.asyncio
async def test_ambiguous_failure_is_outcome_unknown_and_sent_once(
    fake_aicc: FakeAICC, fault: Fault, status: int | None, processed: int
) -> None:
    fake_aicc.inject(fault, endpoint=VOICE, retry_after=0 if status == 503 else None)
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCOutcomeUnknownError) as caught:
            await notify(aicc)

    assert caught.value.status == status
    assert caught.value.endpoint == VOICE
    assert "check its outcome before sending it again" in str(caught.value)
    assert len(fake_aicc.received(VOICE)) == 1
    assert fake_aicc.calls_to("88880000") == processed


@pytest.mark.parametrize("fault", [Fault.RESET_AFTER_PROCESSING, Fault.HANG, Fault.HTML_502])
@pytest.mark.asyncio
async def test_retry_unsafe_opt_in_sends_again(fake_aicc: FakeAICC, fault: Fault) -> None:
    fake_aicc.inject(fault, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        result = await notify(aicc, retry_unsafe=True)

    assert result.call_serial_no
    assert len(fake_aicc.received(VOICE)) == 2
    # What the opt-in means: a processed first attempt phones the person twice.
    expected = 2 if fault in (Fault.RESET_AFTER_PROCESSING, Fault.HTML_502) else 1
    assert fake_aicc.calls_to("88880000") == expected


@pytest.mark.asyncio
async def test_retry_unsafe_that_never_succeeds_is_still_outcome_unknown(
    fake_aicc: FakeAICC,
) -> None:
    fake_aicc.inject(Fault.HTML_502, times=10, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCOutcomeUnknownError):
            await notify(aicc, retry_unsafe=True)

    assert len(fake_aicc.received(VOICE)) == FAST.max_attempts


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connecting is refused


@pytest.mark.asyncio
async def test_connection_refused_is_retried_then_connection_error(
    fake_aicc: FakeAICC, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aicc_async")
    async with AICCClient(
        f"http://127.0.0.1:{_closed_port()}",
        fake_aicc.app_key,
        fake_aicc.app_secret,
        token_url=fake_aicc.url,  # the token works; the business host refuses connections
        retry=FAST,
    ) as aicc:
        with pytest.raises(AICCConnectionError) as caught:
            await notify(aicc)

    assert type(caught.value) is AICCConnectionError  # not "outcome unknown"
    assert "nothing was sent" in str(caught.value)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == FAST.max_attempts - 1


@pytest.mark.asyncio
async def test_no_token_means_nothing_sent_not_outcome_unknown(fake_aicc: FakeAICC) -> None:
    async with AICCClient(
        fake_aicc.url,
        fake_aicc.app_key,
        fake_aicc.app_secret,
        token_url=f"http://127.0.0.1:{_closed_port()}",
        retry=FAST,
    ) as aicc:
        with pytest.raises(AICCConnectionError) as caught:
            await notify(aicc)

    assert type(caught.value) is AICCConnectionError
    assert "was not sent" in str(caught.value)
    assert fake_aicc.received(VOICE) == []


@pytest.mark.asyncio
async def test_busy_ret_code_is_retried_until_taken(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.BUSY, times=2, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        result = await notify(aicc)

    assert result.call_serial_no
    assert len(fake_aicc.received(VOICE)) == 3
    assert fake_aicc.calls_to("88880000") == 1


@pytest.mark.asyncio
async def test_busy_for_ever_gives_up_with_code_1(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.BUSY, times=10, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCBusinessError) as caught:
            await notify(aicc)

    assert caught.value.code == "1"
    assert "try again later" in str(caught.value)
    assert len(fake_aicc.received(VOICE)) == FAST.max_attempts
    assert fake_aicc.calls_to("88880000") == 0


@pytest.mark.asyncio
async def test_throttled_with_retry_after_is_retried(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.HTTP_429, endpoint=VOICE, retry_after=0)
    async with client(fake_aicc) as aicc:
        result = await notify(aicc)

    assert result.call_serial_no
    assert len(fake_aicc.received(VOICE)) == 2
    assert fake_aicc.calls_to("88880000") == 1


@pytest.mark.asyncio
async def test_retry_after_beyond_max_delay_is_not_waited_for(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.HTTP_429, endpoint=VOICE, retry_after=120)
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCHTTPError) as caught:
            await notify(aicc)

    assert caught.value.status == 429
    assert "send it again later" in str(caught.value)
    assert len(fake_aicc.received(VOICE)) == 1


@pytest.mark.asyncio
async def test_http_500_is_not_retried(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.HTTP_500, endpoint=VOICE)
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCHTTPError) as caught:
            await notify(aicc)

    assert caught.value.status == 500
    assert len(fake_aicc.received(VOICE)) == 1


@pytest.mark.asyncio
async def test_business_refusal_is_not_retried(fake_aicc: FakeAICC) -> None:
    fake_aicc.trial_trustlist = {"12345"}
    async with client(fake_aicc) as aicc:
        with pytest.raises(AICCBusinessError) as caught:
            await notify(aicc)

    assert caught.value.code == "16"
    assert len(fake_aicc.received(VOICE)) == 1


@pytest.mark.asyncio
async def test_wrong_base_path_is_a_clear_404(fake_aicc: FakeAICC) -> None:
    async with AICCClient(
        fake_aicc.url + "/nope", fake_aicc.app_key, fake_aicc.app_secret,
        token_url=fake_aicc.url, retry=FAST,
    ) as aicc:  # fmt: skip
        with pytest.raises(AICCHTTPError, match="check base_url") as caught:
            await notify(aicc)
    assert caught.value.status == 404
