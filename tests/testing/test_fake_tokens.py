"""tokenByAkSk and the access-token / app-key / body checks every business endpoint makes."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from fake_http import (
    APPLY,
    CALLED,
    CALLED_INFO,
    CREATE_CALL,
    LEAVE,
    NEW_ENDPOINTS,
    TOKEN,
    VOICE,
    FakeClock,
    get_token,
    post_to,
    post_token,
    post_voice,
    valid_request,
)

from aicc_async.testing import FakeAICC


def test_constructor_and_setter_reject_bad_token_reject_status() -> None:
    with pytest.raises(ValueError, match="401 or 403"):
        FakeAICC(token_reject_status=400)
    server = FakeAICC()
    server.token_reject_status = 403
    assert server.token_reject_status == 403
    with pytest.raises(ValueError, match="401 or 403"):
        server.token_reject_status = 200


@pytest.mark.asyncio
async def test_token_issued_with_string_fields_and_each_call_is_new(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    resp = await post_token(session, fake)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {
        "AccessToken",
        "ApplyType",
        "CreateTime",
        "Expires",
        "Scope",
        "AppKey",
        "UserID",
    }
    assert all(isinstance(v, str) for v in body.values())
    assert body["ApplyType"] == "Bearer"
    assert body["Expires"] == "600"
    assert body["AppKey"] == fake.app_key
    assert abs(int(body["CreateTime"]) - time.time()) < 60

    second = await get_token(session, fake)
    assert second != body["AccessToken"]
    # both tokens stay valid
    for token in (body["AccessToken"], second):
        assert (await post_voice(session, fake, token)).status == 200
    assert fake.token_requests == 2
    assert len(fake.processed(TOKEN)) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("ttl", ["60", "3600", " 900 "])
async def test_token_ttl_header_accepted(
    fake: FakeAICC, session: aiohttp.ClientSession, ttl: str
) -> None:
    resp = await post_token(session, fake, ttl=ttl)
    assert resp.status == 200
    assert (await resp.json())["Expires"] == ttl.strip()


@pytest.mark.asyncio
@pytest.mark.parametrize("ttl", ["59", "3601", "abc", "600.0", "-600", ""])
async def test_token_ttl_header_out_of_range_is_400(
    fake: FakeAICC, session: aiohttp.ClientSession, ttl: str
) -> None:
    resp = await post_token(session, fake, ttl=ttl)
    assert resp.status == 400
    assert fake.processed(TOKEN) == []
    assert fake.token_requests == 1


@pytest.mark.asyncio
async def test_token_expires_on_the_fake_clock(
    fake: FakeAICC, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    token = await get_token(session, fake, ttl="60")
    clock.now += 59.9
    assert (await post_voice(session, fake, token)).status == 200
    clock.now += 0.1
    resp = await post_voice(session, fake, token)
    assert resp.status == 401
    assert (await resp.json())["error_code"] == "APIGW.0301"
    assert fake.rejected_token_requests == 1
    assert fake.calls_to(CALLED) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {"app_key": "fake-app-key", "app_secret": "wrong-secret"},
        {"app_key": "wrong-key", "app_secret": "fake-app-secret"},
        {"app_key": "fake-app-key"},
        {},
        {"app_key": "fake-app-key", "app_secret": "fake-app-secrét"},
    ],
)
async def test_bad_credentials_are_401(
    fake: FakeAICC, session: aiohttp.ClientSession, body: dict[str, str]
) -> None:
    resp = await post_token(session, fake, body=body)
    assert resp.status == 401
    data = await resp.json()
    assert data == {
        "error_code": "APIGW.0101",
        "error_msg": "The app key or app secret is incorrect",
    }
    assert "secret" not in json.dumps(data).replace("app secret", "")
    assert fake.processed(TOKEN) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer ", "bearer {t}", "Bearer  {t}", "{t}", "Bearer nope"],
)
async def test_bad_authorization_is_rejected(
    fake: FakeAICC, session: aiohttp.ClientSession, authorization: str | None
) -> None:
    token = await get_token(session, fake)
    headers = {"X-APP-Key": fake.app_key}
    if authorization is not None:
        headers["Authorization"] = authorization.format(t=token)
    resp = await post_voice(session, fake, token, headers=headers)
    assert resp.status == 401
    assert await resp.json() == {"error_code": "APIGW.0301", "error_msg": "Incorrect token"}
    assert fake.rejected_token_requests == 1
    assert fake.processed(VOICE) == []


@pytest.mark.asyncio
async def test_app_key_header_is_required_and_case_insensitive(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    auth = f"Bearer {token}"
    resp = await post_voice(session, fake, token, headers={"Authorization": auth})
    assert resp.status == 401
    assert (await resp.json())["error_code"] == "APIGW.0101"
    resp = await post_voice(
        session, fake, token, headers={"Authorization": auth, "X-APP-Key": "other"}
    )
    assert resp.status == 401
    resp = await post_voice(
        session, fake, token, headers={"authorization": auth, "x-app-key": fake.app_key}
    )
    assert resp.status == 200
    assert fake.rejected_token_requests == 0
    assert fake.calls_to(CALLED) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"called"'])
async def test_voice_body_must_be_a_json_object(
    fake: FakeAICC, session: aiohttp.ClientSession, body: str
) -> None:
    token = await get_token(session, fake)
    resp = await post_voice(session, fake, token, body)
    assert resp.status == 400
    recorded = fake.received(VOICE)[0]
    assert recorded.body == (body if body == "not json" else json.loads(body))
    assert not recorded.processed


@pytest.mark.asyncio
async def test_expire_tokens(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    old = await get_token(session, fake)
    fake.expire_tokens()
    assert (await post_voice(session, fake, old)).status == 401
    new = await get_token(session, fake)
    assert (await post_voice(session, fake, new)).status == 200
    assert fake.rejected_token_requests == 1


@pytest.mark.asyncio
async def test_token_reject_status_403(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    fake.token_reject_status = 403
    resp = await post_voice(session, fake, "unknown-token")
    assert resp.status == 403
    assert await resp.json() == {
        "errorCode": "APIGW.0307",
        "exceptionInfo": "auth fail! illegal or expired token info. please apply or refresh "
        "the access token from the server!",
    }
    assert fake.rejected_token_requests == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("authorization", [None, "Bearer nope", "bearer {t}", "{t}"])
async def test_new_endpoint_needs_a_valid_access_token(
    fake: FakeAICC,
    session: aiohttp.ClientSession,
    endpoint: str,
    status: int,
    authorization: str | None,
) -> None:
    fake.token_reject_status = status
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    headers = {"X-APP-Key": fake.app_key, **extra}
    if authorization is not None:
        headers["Authorization"] = authorization.format(t=token)
    resp = await post_to(session, fake, endpoint, None, body, headers=headers)
    assert resp.status == status
    expected = (
        {"error_code": "APIGW.0301", "error_msg": "Incorrect token"}
        if status == 401
        else {
            "errorCode": "APIGW.0307",
            "exceptionInfo": "auth fail! illegal or expired token info. please apply or "
            "refresh the access token from the server!",
        }
    )
    assert await resp.json() == expected
    assert fake.rejected_token_requests == 1
    assert fake.rejected_messaging_tokens == 0
    assert fake.processed(endpoint) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
async def test_new_endpoint_access_token_expires_on_the_fake_clock(
    fake: FakeAICC, session: aiohttp.ClientSession, clock: FakeClock, endpoint: str
) -> None:
    token = await get_token(session, fake, ttl="60")
    body, extra = await valid_request(session, fake, endpoint, token)
    clock.now += 60
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert resp.status == 401
    assert fake.rejected_token_requests == 1
    assert fake.processed(endpoint) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", [APPLY, LEAVE, CREATE_CALL, CALLED_INFO])
@pytest.mark.parametrize("app_key", [None, "other", ""])
async def test_new_endpoint_needs_the_app_key(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str, app_key: str | None
) -> None:
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    headers = {"Authorization": f"Bearer {token}", **extra}
    if app_key is not None:
        headers["X-APP-Key"] = app_key
    resp = await post_to(session, fake, endpoint, None, body, headers=headers)
    assert resp.status == 401
    assert await resp.json() == {
        "error_code": "APIGW.0101",
        "error_msg": "The app key or app secret is incorrect",
    }
    assert fake.rejected_token_requests == 0
    assert fake.processed(endpoint) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
@pytest.mark.parametrize("header_name", ["X-APP-Key", "x-app-key", "X-App-KEY"])
async def test_new_endpoint_app_key_header_is_case_insensitive(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str, header_name: str
) -> None:
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    headers = {"authorization": f"Bearer {token}", header_name: fake.app_key, **extra}
    resp = await post_to(session, fake, endpoint, None, body, headers=headers)
    assert resp.status == 200
    assert len(fake.processed(endpoint)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"x"', "null"])
async def test_new_endpoint_body_must_be_a_json_object(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str, body: str
) -> None:
    token = await get_token(session, fake)
    _, extra = await valid_request(session, fake, endpoint, token)
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert resp.status == 400
    assert (await resp.json())["error_code"] == "APIGW.0201"
    recorded = fake.received(endpoint)[-1]
    assert recorded.body == (body if body == "not json" else json.loads(body))
    assert not recorded.processed
