"""Guards an audit found missing: the exact Base64 alphabet of callBackUrl, and an
echoed ccmessaging-token (one the client was handed, not one the caller passed)
kept out of errors."""

from __future__ import annotations

import json

import pytest
from aicc_helpers import VOICE, leaks
from hostile import LEAVE_MESSAGE_PATH, Hostile, json_text

from aicc_async import AICCBusinessError, AICCClient, RetryPolicy
from aicc_async.testing import FakeAICC

APPLY_TOKEN_PATH = "/apiaccess/ccmessaging/applyToken"

# The URL's standard Base64 holds a "/" (from the "?"); URL-safe Base64 would send "_".
# Computed outside the SDK: printf '%s' 'https://cb.example.com/aicc/release?x&y' | base64
CALLBACK_URL = "https://cb.example.com/aicc/release?x&y"
CALLBACK_URL_B64 = "aHR0cHM6Ly9jYi5leGFtcGxlLmNvbS9haWNjL3JlbGVhc2U/eCZ5"


@pytest.mark.asyncio
async def test_callback_url_is_sent_in_standard_base64(fake_aicc: FakeAICC) -> None:
    async with fake_aicc.client() as aicc:
        await aicc.voice_notification.create(
            called="88880000", voice_content="$Hello$", callback_url=CALLBACK_URL
        )
    (request,) = fake_aicc.received(VOICE)
    assert request.body["callBackUrl"] == CALLBACK_URL_B64
    assert fake_aicc.calls_to("88880000") == 1  # AICC's decoder accepted it


@pytest.mark.asyncio
async def test_echoed_messaging_tokens_are_masked() -> None:
    issued = "iss/ued+TOKEN-1234"  # from applyToken, sent by the client in the header
    rotated = "rot/ated+TOKEN-5678"  # handed back in the answer's ccmessaging-token header
    echoed = json.dumps(issued).replace("/", "\\/")[1:-1]
    body = json.dumps({"resultCode": "3", "resultDesc": "x"}).replace(
        '"x"', f'"token {echoed} / {issued}, next {rotated}"'
    )
    handlers = {
        APPLY_TOKEN_PATH: json_text(json.dumps({"resultCode": "0", "token": issued})),
        LEAVE_MESSAGE_PATH: json_text(body, headers={"ccmessaging-token": rotated}),
    }
    async with (
        Hostile(handlers) as server,
        AICCClient(
            server.url,
            "app-key",
            "app-secret-42",
            messaging_channel_id="web-channel",
            retry=RetryPolicy(max_attempts=1),
        ) as aicc,
    ):
        with pytest.raises(AICCBusinessError) as caught:
            await aicc.messaging.leave_message("111111222111", "1380000", "Please reply")
    assert caught.value.code == "3"
    assert server.received[LEAVE_MESSAGE_PATH] == 1
    assert server.headers[-1]["ccmessaging-token"] == issued  # the echo is of what was sent
    assert "***" in str(caught.value)
    assert leaks(caught.value, issued, rotated) == []
