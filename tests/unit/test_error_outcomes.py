"""Every error says what became of the request: ``sent``, ``retry_safe``,
``retry_after``, ``status`` and masked ``headers``, whatever its class.

HTTP is mocked by aioresponses; each case also counts what was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aioresponses import aioresponses
from yarl import URL

from aicc_async import (
    AICCAuthError,
    AICCBusinessError,
    AICCClient,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCRateLimitError,
    AICCValidationError,
    RetryPolicy,
    Sent,
)

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
WRITE_BACK_URL = BASE + "/rest/isales/v1/openapi/obs/business/push/midresult"
TOKEN_BODY = {"AccessToken": "tok-123456", "Expires": "600"}
HTML_502 = "<html><body>502 Bad Gateway</body></html>"
ATTEMPTS = 3


@pytest_asyncio.fixture
async def aicc() -> AsyncIterator[AICCClient]:
    policy = RetryPolicy(max_attempts=ATTEMPTS, base_delay=0.001, max_delay=0.01)
    async with AICCClient(BASE, "key-1", "s3cr3t-app-secret", retry=policy) as client:
        yield client


@pytest.fixture
def http() -> Any:
    with aioresponses() as mock:
        yield mock


def sent(http: Any, url: str) -> int:
    return len(http.requests.get(("POST", URL(url)), []))


async def notify(aicc: AICCClient) -> Any:
    return await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")


async def write_back(aicc: AICCClient) -> Any:
    return await aicc.outbound.write_back_result(1, 1, "u-1", "svc")


async def failure(call: Any) -> AICCError:
    with pytest.raises(AICCError) as caught:
        await call
    return caught.value


def outcome(error: AICCError) -> tuple[Sent, bool, float | None, int | None]:
    return error.sent, error.retry_safe, error.retry_after, error.status


@pytest.mark.asyncio
async def test_bad_input_was_not_sent_and_retrying_cannot_help(aicc: AICCClient, http: Any) -> None:
    with pytest.raises(AICCValidationError) as caught:
        await aicc.voice_notification.create(called="not a number", voice_content="$Hi$")

    assert outcome(caught.value) == (Sent.NOT_SENT, False, None, None)
    assert caught.value.headers is None
    assert sent(http, TOKEN_URL) == sent(http, VOICE_URL) == 0


@pytest.mark.asyncio
async def test_connection_never_made_is_not_sent_and_retry_safe(
    aicc: AICCClient, http: Any
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, exception=aiohttp.ConnectionTimeoutError(), repeat=True)

    error = await failure(notify(aicc))

    assert type(error) is AICCConnectionError
    assert outcome(error) == (Sent.NOT_SENT, True, None, None)
    assert error.sent == "not_sent"  # the enum compares equal to its string
    assert error.headers is None
    assert sent(http, VOICE_URL) == ATTEMPTS  # retried on every endpoint


@pytest.mark.asyncio
async def test_timeout_after_sending_a_call_may_have_been_processed(
    aicc: AICCClient, http: Any
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, exception=asyncio.TimeoutError(), repeat=True)

    error = await failure(notify(aicc))

    assert isinstance(error, AICCOutcomeUnknownError)
    assert outcome(error) == (Sent.MAYBE_PROCESSED, False, None, None)
    assert sent(http, VOICE_URL) == 1  # a second send could phone the person twice


@pytest.mark.asyncio
async def test_gateway_502_on_a_call_may_have_been_processed(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=502, body=HTML_502, headers={"X-Request-Id": "r-1"}, repeat=True)

    error = await failure(notify(aicc))

    assert isinstance(error, AICCOutcomeUnknownError)
    assert outcome(error) == (Sent.MAYBE_PROCESSED, False, None, 502)
    assert error.headers is not None
    assert error.headers["X-Request-Id"] == "r-1" == error.request_id
    assert sent(http, VOICE_URL) == 1


@pytest.mark.parametrize(
    "fail",
    [
        {"exception": asyncio.TimeoutError()},
        {"status": 502, "body": HTML_502},
        {"status": 504, "body": "gateway timeout"},
    ],
    ids=["timeout", "502", "504"],
)
@pytest.mark.asyncio
async def test_idempotent_write_back_gives_one_outcome_for_every_ambiguous_failure(
    aicc: AICCClient, http: Any, fail: dict[str, Any]
) -> None:
    # A timeout is an AICCOutcomeUnknownError and a 502 an AICCHTTPError, but what
    # became of the row is the same: maybe processed, and harmless to send again.
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(WRITE_BACK_URL, repeat=True, **fail)

    error = await failure(write_back(aicc))

    assert (error.sent, error.retry_safe) == (Sent.MAYBE_PROCESSED, True)
    assert error.status == fail.get("status")
    assert sent(http, WRITE_BACK_URL) == ATTEMPTS


@pytest.mark.asyncio
async def test_503_carries_retry_after(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(WRITE_BACK_URL, status=503, body="busy", headers={"Retry-After": "7"}, repeat=True)

    error = await failure(write_back(aicc))

    assert outcome(error) == (Sent.MAYBE_PROCESSED, True, 7.0, 503)
    assert sent(http, WRITE_BACK_URL) == 1  # a wait beyond max_delay is not waited out


@pytest.mark.asyncio
async def test_429_is_a_rate_limit_error_not_processed(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    headers = {"Retry-After": "120", "Set-Cookie": "session=abc"}
    http.post(VOICE_URL, status=429, body="slow down", headers=headers, repeat=True)

    error = await failure(notify(aicc))

    assert isinstance(error, AICCRateLimitError)
    assert isinstance(error, AICCHTTPError)  # existing `except AICCHTTPError` still catch it
    assert outcome(error) == (Sent.NOT_SENT, True, 120.0, 429)
    assert error.headers is not None
    assert error.headers["Retry-After"] == "120"
    assert error.headers["Set-Cookie"] == "***"  # credentials are masked
    assert sent(http, VOICE_URL) == 1


@pytest.mark.asyncio
async def test_429_within_max_delay_is_retried_then_reported(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=429, body="slow down", headers={"Retry-After": "0"}, repeat=True)

    error = await failure(notify(aicc))

    assert isinstance(error, AICCRateLimitError)
    assert outcome(error) == (Sent.NOT_SENT, True, 0.0, 429)
    assert sent(http, VOICE_URL) == ATTEMPTS


@pytest.mark.parametrize("status", [400, 404, 500])
@pytest.mark.asyncio
async def test_refusing_status_was_answered_and_would_repeat(
    aicc: AICCClient, http: Any, status: int
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=status, body="no", repeat=True)

    error = await failure(notify(aicc))

    assert type(error) is AICCHTTPError
    assert outcome(error) == (Sent.ANSWERED, False, None, status)
    assert sent(http, VOICE_URL) == 1


@pytest.mark.asyncio
async def test_business_refusal_was_answered(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, payload={"retCode": "16", "retMsg": "not on the trustlist"})

    error = await failure(notify(aicc))

    assert isinstance(error, AICCBusinessError)
    assert outcome(error) == (Sent.ANSWERED, False, None, 200)
    assert error.headers is not None


@pytest.mark.asyncio
async def test_busy_code_outlasting_the_retries_is_retry_safe(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, payload={"retCode": "1", "retMsg": "busy"}, repeat=True)

    error = await failure(notify(aicc))

    assert isinstance(error, AICCBusinessError)
    assert outcome(error) == (Sent.ANSWERED, True, None, 200)
    assert sent(http, VOICE_URL) == ATTEMPTS


@pytest.mark.asyncio
async def test_refused_credentials_were_not_sent_and_would_repeat(
    aicc: AICCClient, http: Any
) -> None:
    http.post(TOKEN_URL, status=401, body="bad key")

    error = await failure(notify(aicc))

    assert isinstance(error, AICCAuthError)
    assert outcome(error) == (Sent.NOT_SENT, False, None, 401)
    assert sent(http, VOICE_URL) == 0


@pytest.mark.asyncio
async def test_rejected_fresh_token_was_not_processed(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY, repeat=True)
    http.post(VOICE_URL, status=401, body="token expired", repeat=True)

    error = await failure(notify(aicc))

    assert isinstance(error, AICCAuthError)
    assert outcome(error) == (Sent.NOT_SENT, False, None, 401)
    assert sent(http, VOICE_URL) == 2  # the replay after a refresh, once


@pytest.mark.asyncio
async def test_token_service_down_means_not_sent_and_carries_retry_after(
    aicc: AICCClient, http: Any
) -> None:
    http.post(TOKEN_URL, status=503, body="down", headers={"Retry-After": "30"}, repeat=True)

    error = await failure(notify(aicc))

    assert type(error) is AICCConnectionError
    assert outcome(error) == (Sent.NOT_SENT, True, 30.0, None)
    assert sent(http, VOICE_URL) == 0


@pytest.mark.asyncio
async def test_closed_client_was_not_sent(http: Any) -> None:
    aicc = AICCClient(BASE, "key-1", "s3cr3t-app-secret")
    await aicc.close()

    error = await failure(notify(aicc))

    assert type(error) is AICCConnectionError
    assert outcome(error) == (Sent.NOT_SENT, False, None, None)
    assert sent(http, TOKEN_URL) == 0
