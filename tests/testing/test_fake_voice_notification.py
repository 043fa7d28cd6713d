"""createVoiceNotification: validation codes, calls placed, trial trustlist."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from fake_http import (
    CALLED,
    RET_MSGS,
    TOKEN,
    VALID_BODY,
    VOICE,
    VOICE_PATH,
    FakeClock,
    b64,
    get_token,
    post_voice,
)

from aicc_async.testing import FakeAICC, RecordedRequest


@pytest.mark.asyncio
async def test_successful_call_is_recorded_and_counted(
    fake: FakeAICC, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = await get_token(session, fake)
    serials = []
    for _ in range(2):
        resp = await post_voice(session, fake, token)
        assert resp.status == 200
        data = await resp.json()
        assert data["retCode"] == "0"
        assert data["retMsg"] == "Created successfully."
        serials.append(data["result"]["callSerialNo"])
    assert all(isinstance(s, str) for s in serials)
    assert int(serials[1]) > int(serials[0])

    assert fake.calls_to(CALLED) == 2
    assert fake.calls_to("12345") == 0
    calls = fake.processed(VOICE)
    assert len(calls) == 2
    first = calls[0]
    assert isinstance(first, RecordedRequest)
    assert first.path == VOICE_PATH
    assert first.body == dict(VALID_BODY)
    assert first.fault is None
    assert first.time == clock.now
    assert first.headers["authorization"] == f"Bearer {token}"
    assert first.headers["x-app-key"] == fake.app_key
    assert [r.endpoint for r in fake.requests] == [TOKEN, VOICE, VOICE]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"called": None}, "5"),
        ({"called": ""}, "5"),
        ({"called": "8888-0000"}, "5"),
        ({"called": "1" * 33}, "5"),
        ({"called": 88880000}, "5"),
        ({"voiceContent": None}, "8"),
        ({"voiceContent": ""}, "8"),
        ({"voiceContent": "x" * 1001}, "8"),
        ({"callerPresent": "95xxx"}, "7"),
        ({"callerPresent": "1" * 33}, "7"),
        ({"callerPresent": ""}, "7"),
        ({"callBackUrl": "https://example.com/cb"}, "9"),
        ({"callBackUrl": b64("ftp://example.com/cb")}, "9"),
        ({"callBackUrl": b64("https://example.com/cb?a=1")}, "9"),
        ({"callBackUrl": b64("https://example.com/a b")}, "9"),
        ({"callBackUrl": b64("https://")}, "9"),
        ({"callBackUrl": ""}, "9"),
        ({"priority": "0"}, "36"),
        ({"priority": "10"}, "36"),
        ({"priority": 5}, "36"),
    ],
)
async def test_voice_validation_codes(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any], code: str
) -> None:
    token = await get_token(session, fake)
    body = {**VALID_BODY, **overrides}
    body = {k: v for k, v in body.items() if v is not None}
    resp = await post_voice(session, fake, token, body)
    assert resp.status == 200
    assert await resp.json() == {"retCode": code, "retMsg": RET_MSGS[code]}
    assert fake.processed(VOICE) == []
    assert fake.calls_to(str(body.get("called"))) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"called": "+8613800000000"},
        {"voiceContent": "x" * 1000},
        {"callerPresent": None},
        {"callerPresent": "95555"},
        {"callBackUrl": b64("https://cb.example.com:8443/x_y/z-1?a&b#f")},
        {"callBackUrl": b64("http://10.0.0.1:80/cb")},
        {"priority": "1"},
        {"priority": "9"},
    ],
)
async def test_voice_validation_accepts_valid_values(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    resp = await post_voice(session, fake, token, {**VALID_BODY, **overrides})
    assert (await resp.json())["retCode"] == "0"
    assert len(fake.processed(VOICE)) == 1


@pytest.mark.asyncio
async def test_validation_order_called_before_content(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    body = {"called": "x", "voiceContent": "", "priority": "0"}
    resp = await post_voice(session, fake, token, body)
    assert (await resp.json())["retCode"] == "5"


@pytest.mark.asyncio
async def test_trial_trustlist(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.trial_trustlist = {"12345"}
    resp = await post_voice(session, fake, token)
    assert await resp.json() == {"retCode": "16", "retMsg": RET_MSGS["16"]}
    resp = await post_voice(session, fake, token, {**VALID_BODY, "called": "12345"})
    assert (await resp.json())["retCode"] == "0"
    assert fake.calls_to(CALLED) == 0
    assert fake.calls_to("12345") == 1
