"""CC-Messaging: applyToken and doLeaveMessage."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from fake_http import (
    APPLY,
    APPLY_BODY,
    APPLY_PATH,
    BAD_LEAVE_PARAMS,
    BAD_MESSAGING_TOKEN,
    LEAVE,
    LEAVE_BODY,
    FakeClock,
    apply_token,
    get_token,
    leave_message,
    post_to,
)

from aicc_async.testing import FakeAICC


@pytest.mark.asyncio
async def test_apply_token_issues_a_new_token_each_call(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    resp = await post_to(session, fake, APPLY, token, APPLY_BODY)
    assert resp.status == 200
    data = await resp.json()
    assert set(data) == {"resultCode", "token"}
    assert data["resultCode"] == "0"
    assert isinstance(data["token"], str)
    assert data["token"]
    second = await apply_token(session, fake, token)
    assert second != data["token"]
    # both stay valid
    for messaging_token in (data["token"], second):
        assert (await leave_message(session, fake, token, messaging_token)).status == 200
    assert fake.messaging_token_requests == 2
    assert fake.token_requests == 1
    assert len(fake.processed(APPLY)) == 2
    assert fake.processed(APPLY)[0].path == APPLY_PATH


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"userId": None},
        {"userId": ""},
        {"userId": "u" * 33},
        {"userId": 111111},
        {"userName": None},
        {"userName": ""},
        {"channelId": None},
        {"channelId": ""},
        {"locale": None},
        {"locale": ""},
        {"locale": 1},
    ],
)
async def test_apply_token_invalid_params_answer_result_code_1(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    body = {k: v for k, v in {**APPLY_BODY, **overrides}.items() if v is not None}
    resp = await post_to(session, fake, APPLY, token, body)
    assert resp.status == 200
    data = await resp.json()
    assert set(data) == {"resultCode", "resultDesc"}
    assert data["resultCode"] == "1"
    assert isinstance(data["resultDesc"], str)
    assert fake.processed(APPLY) == []
    assert fake.messaging_token_requests == 1


@pytest.mark.asyncio
async def test_apply_token_accepts_a_32_char_user_id(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    user_id = "u" * 32
    messaging_token = await apply_token(session, fake, token, user_id)
    body = {**LEAVE_BODY, "callId": user_id}
    assert (await leave_message(session, fake, token, messaging_token, body)).status == 200


@pytest.mark.asyncio
async def test_apply_token_messaging_channels(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.messaging_channels = {"other-channel"}
    resp = await post_to(session, fake, APPLY, token, APPLY_BODY)
    assert (await resp.json())["resultCode"] == "1"
    fake.messaging_channels.add(APPLY_BODY["channelId"])
    resp = await post_to(session, fake, APPLY, token, APPLY_BODY)
    assert (await resp.json())["resultCode"] == "0"
    assert len(fake.processed(APPLY)) == 1
    assert fake.messaging_token_requests == 2


@pytest.mark.asyncio
async def test_leave_message_success(
    fake: FakeAICC, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = await get_token(session, fake)
    messaging_token = await apply_token(session, fake, token)
    resp = await leave_message(session, fake, token, messaging_token)
    assert resp.status == 200
    assert await resp.json() == {"resultCode": "0", "resultDesc": "Save leaveMessage success!"}
    assert "ccmessaging-token" not in resp.headers
    recorded = fake.processed(LEAVE)
    assert len(recorded) == 1
    assert recorded[0].body == dict(LEAVE_BODY)
    assert recorded[0].headers["CCMessaging-Token"] == messaging_token
    assert recorded[0].time == clock.now
    assert fake.rejected_messaging_tokens == 0


@pytest.mark.asyncio
async def test_leave_message_token_header_name_is_case_insensitive(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    messaging_token = await apply_token(session, fake, token)
    headers = {
        "AUTHORIZATION": f"Bearer {token}",
        "X-App-Key": fake.app_key,
        "CCMessaging-Token": messaging_token,
    }
    resp = await post_to(session, fake, LEAVE, None, dict(LEAVE_BODY), headers=headers)
    assert resp.status == 200
    assert len(fake.processed(LEAVE)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("case", ["missing", "unknown", "other_user", "empty"])
async def test_leave_message_bad_messaging_token_is_401(
    fake: FakeAICC, session: aiohttp.ClientSession, case: str
) -> None:
    token = await get_token(session, fake)
    if case == "missing":
        messaging_token = None
    elif case == "unknown":
        messaging_token = "no-such-messaging-token"
    elif case == "empty":
        messaging_token = ""
    else:
        messaging_token = await apply_token(session, fake, token, "someone-else")
    resp = await leave_message(session, fake, token, messaging_token)
    assert resp.status == 401
    assert await resp.json() == BAD_MESSAGING_TOKEN
    assert fake.rejected_messaging_tokens == 1
    assert fake.rejected_token_requests == 0
    assert fake.processed(LEAVE) == []


@pytest.mark.asyncio
async def test_messaging_token_expires_after_an_hour_on_the_fake_clock(
    fake: FakeAICC, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = await get_token(session, fake, ttl="3600")
    messaging_token = await apply_token(session, fake, token)
    clock.now += 3599.9
    assert (await leave_message(session, fake, token, messaging_token)).status == 200
    clock.now += 0.1
    token = await get_token(session, fake)  # the AccessToken expired at the same moment
    resp = await leave_message(session, fake, token, messaging_token)
    assert resp.status == 401
    assert await resp.json() == BAD_MESSAGING_TOKEN
    assert fake.rejected_messaging_tokens == 1
    assert fake.rejected_token_requests == 0
    assert len(fake.processed(LEAVE)) == 1


@pytest.mark.asyncio
async def test_expire_messaging_tokens(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    old = await apply_token(session, fake, token)
    fake.expire_messaging_tokens()
    assert (await leave_message(session, fake, token, old)).status == 401
    new = await apply_token(session, fake, token)
    assert (await leave_message(session, fake, token, new)).status == 200
    assert fake.rejected_messaging_tokens == 1
    # the AccessToken is untouched
    assert fake.rejected_token_requests == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"callId": None},
        {"callId": ""},
        {"caller": None},
        {"caller": ""},
        {"caller": 13800007777},
        {"leaveMessage": None},
        {"leaveMessage": ""},
        {"channel": None},
        {"channel": ""},
        {"channel": "web"},
        {"channel": "APP"},
    ],
)
async def test_leave_message_invalid_params_answer_3(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    messaging_token = await apply_token(session, fake, token)
    body = {k: v for k, v in {**LEAVE_BODY, **overrides}.items() if v is not None}
    resp = await leave_message(session, fake, token, messaging_token, body)
    assert resp.status == 200
    assert await resp.json() == BAD_LEAVE_PARAMS
    assert fake.processed(LEAVE) == []
    assert fake.rejected_messaging_tokens == 0


@pytest.mark.asyncio
async def test_leave_message_fails_answers_13(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    messaging_token = await apply_token(session, fake, token)
    fake.leave_message_fails = True
    resp = await leave_message(session, fake, token, messaging_token)
    assert resp.status == 200
    assert await resp.json() == {"resultCode": "13", "resultDesc": "Save leaveMessage failed!"}
    assert fake.processed(LEAVE) == []
    fake.leave_message_fails = False
    assert (await leave_message(session, fake, token, messaging_token)).status == 200
    assert len(fake.processed(LEAVE)) == 1


@pytest.mark.asyncio
async def test_rotate_messaging_token(
    fake: FakeAICC, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = await get_token(session, fake, ttl="3600")
    old = await apply_token(session, fake, token)
    fake.rotate_messaging_token = True
    clock.now += 1800
    resp = await leave_message(session, fake, token, old)
    assert resp.status == 200
    assert await resp.json() == {"resultCode": "0", "resultDesc": "Save leaveMessage success!"}
    new = resp.headers["ccmessaging-token"]
    assert new
    assert new != old
    # not a token applyToken handed out: the counts are unchanged
    assert fake.messaging_token_requests == 1

    # the old token stays valid until its own expiry ...
    second = await leave_message(session, fake, token, old)
    assert second.status == 200
    assert second.headers["ccmessaging-token"] not in (old, new)
    # ... the new one is bound to the same user and lives an hour from its issue
    other_user = {**LEAVE_BODY, "callId": "someone-else"}
    assert (await leave_message(session, fake, token, new, other_user)).status == 401
    clock.now += 1800
    token = await get_token(session, fake, ttl="3600")
    assert (await leave_message(session, fake, token, old)).status == 401
    fake.rotate_messaging_token = False
    resp = await leave_message(session, fake, token, new)
    assert resp.status == 200
    assert "ccmessaging-token" not in resp.headers


@pytest.mark.asyncio
async def test_no_rotation_header_on_a_refusal(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    messaging_token = await apply_token(session, fake, token)
    fake.rotate_messaging_token = True
    fake.leave_message_fails = True
    resp = await leave_message(session, fake, token, messaging_token)
    assert (await resp.json())["resultCode"] == "13"
    assert "ccmessaging-token" not in resp.headers
    resp = await leave_message(session, fake, token, messaging_token, {"channel": "WEB"})
    assert (await resp.json())["resultCode"] == "3"
    assert "ccmessaging-token" not in resp.headers
