"""The error hierarchy a user writes ``except`` clauses against.

``except AICCConnectionError: retry`` must never re-send a request that may have
been processed; ``except CampaignError`` must not swallow a journal failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aioresponses import aioresponses
from yarl import URL

import aicc_async
from aicc_async import (
    AICCClient,
    AICCConnectionError,
    AICCError,
    AICCOutcomeUnknownError,
    AICCTransportError,
    CampaignError,
    JournalError,
    RetryPolicy,
    Sent,
)

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"


@pytest_asyncio.fixture
async def aicc() -> AsyncIterator[AICCClient]:
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
    async with AICCClient(BASE, "key-1", "s3cr3t-app-secret", retry=policy) as client:
        yield client


@pytest.mark.asyncio
async def test_catching_connection_errors_to_retry_never_resends_a_call_that_may_be_placed(
    aicc: AICCClient,
) -> None:
    # The pattern the AICCConnectionError docstring invites: "safe to retry".
    with aioresponses() as http:
        http.post(TOKEN_URL, payload={"AccessToken": "tok-123456", "Expires": "600"})
        http.post(VOICE_URL, exception=asyncio.TimeoutError(), repeat=True)
        retried = 0
        for _ in range(3):
            try:
                await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
            except AICCConnectionError:
                retried += 1
                continue
            except AICCOutcomeUnknownError as exc:
                caught = exc
            break
        sends = len(http.requests.get(("POST", URL(VOICE_URL)), []))

    assert retried == 0
    assert sends == 1  # the person is phoned at most once
    assert caught.sent is Sent.MAYBE_PROCESSED
    assert isinstance(caught, AICCTransportError)  # "no usable answer came back"


def test_transport_error_is_the_parent_of_both_no_answer_errors() -> None:
    assert issubclass(AICCConnectionError, AICCTransportError)
    assert issubclass(AICCOutcomeUnknownError, AICCTransportError)
    assert not issubclass(AICCOutcomeUnknownError, AICCConnectionError)
    assert issubclass(AICCTransportError, AICCError)
    assert aicc_async.AICCTransportError is aicc_async.errors.AICCTransportError
    assert "AICCTransportError" in aicc_async.__all__


def test_journal_error_is_a_sibling_of_campaign_error() -> None:
    error: Any = JournalError("the journal cannot be written: disk full")
    assert isinstance(error, AICCError)
    assert not isinstance(error, CampaignError)
    assert not issubclass(CampaignError, JournalError)
