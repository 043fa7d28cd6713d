"""Tests of FakeAICC itself, driven with a plain aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from aicc_async.testing import CalledParty, FakeAICC, Fault, RecordedRequest

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
VOICE_PATH = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
TOKEN = "tokenByAkSk"
VOICE = "createVoiceNotification"
CALLED = "88880000"
VALID_BODY: Mapping[str, Any] = {"voiceContent": "1133999~$Tom$~2225149", "called": CALLED}

RET_MSGS = {
    "5": "The value of caller or called is not transferred, or the format does not match the rule.",
    "7": "callerPresent or agentPresent fails to pass the verification.",
    "8": "The value of voiceContent is empty, exceeds the upper limit, or does not exist.",
    "9": "The value of callBackUrl does not meet the requirements.",
    "16": "The tenant is in trial commercial use state, and the called number is not in the "
    "trustlist.",
    "36": "The value of priority is in an incorrect format.",
}


class FakeClock:
    """A manual clock for the fake's token expiry."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeAICC]:
    async with FakeAICC(clock=clock) as server:
        yield server


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def post_token(
    session: aiohttp.ClientSession,
    fake: FakeAICC,
    *,
    body: Any = None,
    ttl: str | None = None,
) -> aiohttp.ClientResponse:
    payload = {"app_key": fake.app_key, "app_secret": fake.app_secret} if body is None else body
    headers = {} if ttl is None else {"X-Token-Expire": ttl}
    async with session.post(fake.url + TOKEN_PATH, json=payload, headers=headers) as resp:
        await resp.read()
        return resp


async def get_token(session: aiohttp.ClientSession, fake: FakeAICC, ttl: str | None = None) -> str:
    resp = await post_token(session, fake, ttl=ttl)
    assert resp.status == 200
    token = (await resp.json())["AccessToken"]
    assert isinstance(token, str)
    return token


async def post_voice(
    session: aiohttp.ClientSession,
    fake: FakeAICC,
    token: str | None,
    body: Any = VALID_BODY,
    *,
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    sent = {"X-APP-Key": fake.app_key}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if headers is not None:
        sent = dict(headers)
    data = body if isinstance(body, str) else json.dumps(body)
    async with session.post(fake.url + VOICE_PATH, data=data, headers=sent) as resp:
        await resp.read()
        return resp


# ---------------------------------------------------------------------- lifecycle


@pytest.mark.asyncio
async def test_url_requires_start_and_close_is_idempotent() -> None:
    server = FakeAICC()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    await server.start()
    assert server.url.startswith("http://127.0.0.1:")
    assert not server.url.endswith("/")
    await server.close()
    await server.close()
    with pytest.raises(RuntimeError, match="only once"):
        await server.start()


def test_constructor_and_setter_reject_bad_token_reject_status() -> None:
    with pytest.raises(ValueError, match="401 or 403"):
        FakeAICC(token_reject_status=400)
    server = FakeAICC()
    server.token_reject_status = 403
    assert server.token_reject_status == 403
    with pytest.raises(ValueError, match="401 or 403"):
        server.token_reject_status = 200


def test_inject_and_chaos_validate_arguments() -> None:
    server = FakeAICC()
    with pytest.raises(ValueError, match="unknown endpoint"):
        server.inject(Fault.BUSY, endpoint="createvoicenotification")
    with pytest.raises(ValueError, match="times"):
        server.inject(Fault.BUSY, times=-1)
    with pytest.raises(ValueError, match="probability"):
        server.chaos(seed=1, probability=1.5, faults=[Fault.BUSY])
    with pytest.raises(ValueError, match="empty"):
        server.chaos(seed=1, probability=0.5, faults=[])


def test_client_passes_url_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import aicc_async

    captured: dict[str, Any] = {}

    class StubClient:
        def __init__(self, **kwargs: Any) -> None:
            captured.update(kwargs)

    monkeypatch.setattr(aicc_async, "AICCClient", StubClient, raising=False)
    server = FakeAICC(app_key="k", app_secret="s")
    server._url = "http://127.0.0.1:1"  # pretend it is started; client() only reads the URL
    client = server.client(max_concurrency=3)
    assert isinstance(client, StubClient)
    assert captured == {
        "base_url": "http://127.0.0.1:1",
        "app_key": "k",
        "app_secret": "s",
        "max_concurrency": 3,
    }


# ---------------------------------------------------------------------- tokens


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


# ---------------------------------------------------------------------- voice notifications


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
async def test_unknown_path_is_404_and_wrong_method_405(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    async with session.post(fake.url + "/apiaccess/nope", json={}) as resp:
        assert resp.status == 404
    async with session.get(fake.url + VOICE_PATH) as resp:
        assert resp.status == 405
    assert fake.received(VOICE) == []
    assert [r.endpoint for r in fake.requests] == ["unknown", "unknown"]
    assert fake.max_in_flight == 0


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
async def test_record_false_keeps_counters_only(session: aiohttp.ClientSession) -> None:
    async with FakeAICC(record=False) as server:
        token = await get_token(session, server)
        assert (await post_voice(session, server, token)).status == 200
        assert server.requests == []
        assert server.received(VOICE) == []
        assert server.calls_to(CALLED) == 1
        assert server.token_requests == 1


# ---------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_latency_delays_then_processes(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.LATENCY, delay=0.05)
    started = time.monotonic()
    resp = await post_voice(session, fake, token)
    assert time.monotonic() - started >= 0.05
    assert resp.status == 200
    assert fake.processed(VOICE)[0].fault is Fault.LATENCY


@pytest.mark.asyncio
async def test_hang_with_delay_drops_connection_unprocessed(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.HANG, delay=0.05)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_voice(session, fake, token)
    assert fake.received(VOICE)[0].fault is Fault.HANG
    assert fake.processed(VOICE) == []
    assert fake.in_flight == 0


@pytest.mark.asyncio
async def test_hang_is_released_by_close(session: aiohttp.ClientSession) -> None:
    server = FakeAICC()
    await server.start()
    try:
        server.inject(Fault.HANG)
        task = asyncio.create_task(post_voice(session, server, "t"))
        for _ in range(400):  # wait (at most ~2 s) for the request to arrive
            if server.in_flight:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert server.in_flight == 1
        assert not task.done()
    finally:
        started = time.monotonic()
        await server.close()
    assert time.monotonic() - started < 0.4
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await task
    assert server.in_flight == 0
    assert server.received(VOICE)[0].processed is False


@pytest.mark.asyncio
async def test_reset_after_processing_places_the_call_without_response(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.RESET_AFTER_PROCESSING)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post_voice(session, fake, token)
    assert fake.calls_to(CALLED) == 1
    recorded = fake.received(VOICE)[0]
    assert recorded.processed
    assert recorded.fault is Fault.RESET_AFTER_PROCESSING
    # the fake stays usable
    assert (await post_voice(session, fake, token)).status == 200


@pytest.mark.asyncio
async def test_reset_after_processing_of_invalid_request_is_not_processed(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    fake.inject(Fault.RESET_AFTER_PROCESSING)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post_voice(session, fake, "no-such-token")
    assert fake.processed(VOICE) == []
    assert fake.rejected_token_requests == 1


@pytest.mark.asyncio
async def test_reset_before_processing(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.RESET_BEFORE_PROCESSING)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post_voice(session, fake, token)
    assert fake.calls_to(CALLED) == 0
    assert fake.received(VOICE)[0].fault is Fault.RESET_BEFORE_PROCESSING


@pytest.mark.asyncio
async def test_http_500_is_json_and_not_processed(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    fake.inject(Fault.HTTP_500)
    # faults come before the auth checks: no token needed to see the 500
    resp = await post_voice(session, fake, None)
    assert resp.status == 500
    assert resp.content_type == "application/json"
    assert "error_code" in await resp.json()
    assert fake.processed(VOICE) == []
    assert fake.rejected_token_requests == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "status", "processed"),
    [(Fault.HTML_502, 502, True), (Fault.HTML_503, 503, False), (Fault.HTML_504, 504, True)],
)
async def test_html_gateway_pages(
    fake: FakeAICC, session: aiohttp.ClientSession, fault: Fault, status: int, processed: bool
) -> None:
    token = await get_token(session, fake)
    fake.inject(fault)
    resp = await post_voice(session, fake, token)
    assert resp.status == status
    assert resp.content_type == "text/html"
    text = await resp.text()
    assert text.startswith("<html>")
    assert f"<h1>{status} " in text
    assert "openresty" in text
    assert "Retry-After" not in resp.headers
    with pytest.raises(aiohttp.ContentTypeError):
        await resp.json()
    assert fake.calls_to(CALLED) == int(processed)
    assert fake.received(VOICE)[0].processed is processed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [(Fault.HTML_503, 503, "text/html"), (Fault.HTTP_429, 429, "application/json")],
)
@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (0.25, "0.25"), (None, None)])
async def test_retry_after_header(
    fake: FakeAICC,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    content_type: str,
    retry_after: float | None,
    header: str | None,
) -> None:
    token = await get_token(session, fake)
    fake.inject(fault, retry_after=retry_after)
    resp = await post_voice(session, fake, token)
    assert resp.status == status
    assert resp.content_type == content_type
    assert resp.headers.get("Retry-After") == header
    assert fake.calls_to(CALLED) == 0


@pytest.mark.asyncio
async def test_busy_is_not_processed(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.BUSY)
    resp = await post_voice(session, fake, token)
    assert resp.status == 200
    assert await resp.json() == {
        "retCode": "1",
        "retMsg": "A task is in progress. Try again later.",
    }
    assert fake.calls_to(CALLED) == 0
    assert fake.processed(VOICE) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 403])
async def test_token_expired_fault_rejects_a_valid_token(
    fake: FakeAICC, session: aiohttp.ClientSession, status: int
) -> None:
    fake.token_reject_status = status
    token = await get_token(session, fake)
    fake.inject(Fault.TOKEN_EXPIRED)
    resp = await post_voice(session, fake, token)
    assert resp.status == status
    assert fake.rejected_token_requests == 1
    assert fake.calls_to(CALLED) == 0
    # only that one request: the token itself is still valid
    assert (await post_voice(session, fake, token)).status == 200


@pytest.mark.asyncio
async def test_faults_are_consumed_fifo(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.HTTP_500)
    fake.inject(Fault.BUSY, times=2)
    statuses = []
    for _ in range(4):
        resp = await post_voice(session, fake, token)
        statuses.append((resp.status, (await resp.json()).get("retCode")))
    assert statuses == [(500, None), (200, "1"), (200, "1"), (200, "0")]
    assert [r.fault for r in fake.received(VOICE)] == [
        Fault.HTTP_500,
        Fault.BUSY,
        Fault.BUSY,
        None,
    ]


@pytest.mark.asyncio
async def test_fault_endpoint_filter(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    fake.inject(Fault.HTTP_429, endpoint=TOKEN)
    fake.inject(Fault.HTTP_500)  # any endpoint except tokenByAkSk
    fake.inject(Fault.BUSY, endpoint=VOICE)

    # the token request skips the unfiltered fault and takes the token one
    assert (await post_token(session, fake)).status == 429
    assert fake.received(TOKEN)[0].fault is Fault.HTTP_429
    token = await get_token(session, fake)
    assert (await post_voice(session, fake, token)).status == 500
    assert (await (await post_voice(session, fake, token)).json())["retCode"] == "1"
    assert (await (await post_voice(session, fake, token)).json())["retCode"] == "0"


@pytest.mark.asyncio
async def test_token_endpoint_fault_after_processing_issues_a_token(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    fake.inject(Fault.HTML_504, endpoint=TOKEN)
    assert (await post_token(session, fake)).status == 504
    assert len(fake.processed(TOKEN)) == 1


@pytest.mark.asyncio
async def test_clear_faults(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.HTTP_500, times=3)
    fake.chaos(seed=1, probability=1.0, faults=[Fault.BUSY])
    fake.clear_faults()
    assert (await post_voice(session, fake, token)).status == 200
    assert fake.calls_to(CALLED) == 1


async def run_chaos(seed: int, session: aiohttp.ClientSession, n: int) -> list[Fault | None]:
    async with FakeAICC() as server:
        token = await get_token(session, server)
        server.chaos(
            seed=seed, probability=0.5, faults=[Fault.HTTP_500, Fault.BUSY, Fault.HTML_503]
        )
        for _ in range(n):
            await post_voice(session, server, token)
        # chaos without an endpoint leaves token requests alone
        await get_token(session, server)
        assert all(r.fault is None for r in server.received(TOKEN))
        return [r.fault for r in server.received(VOICE)]


@pytest.mark.asyncio
async def test_chaos_is_deterministic_for_a_seed(session: aiohttp.ClientSession) -> None:
    first = await run_chaos(7, session, 30)
    second = await run_chaos(7, session, 30)
    other = await run_chaos(8, session, 30)
    assert first == second
    assert first != other
    assert None in first
    assert {Fault.HTTP_500, Fault.BUSY, Fault.HTML_503} <= set(first)


@pytest.mark.asyncio
async def test_queued_fault_wins_over_chaos(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.chaos(seed=3, probability=1.0, faults=[Fault.BUSY])
    fake.inject(Fault.HTTP_500)
    assert (await post_voice(session, fake, token)).status == 500
    assert (await (await post_voice(session, fake, token)).json())["retCode"] == "1"


@pytest.mark.asyncio
async def test_max_in_flight_counts_concurrent_requests(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    assert fake.max_in_flight == 0  # token requests are not counted
    fake.inject(Fault.LATENCY, times=5, delay=0.1)
    responses = await asyncio.gather(*(post_voice(session, fake, token) for _ in range(5)))
    assert [r.status for r in responses] == [200] * 5
    assert fake.max_in_flight == 5
    assert fake.in_flight == 0
    fake.reset_stats()
    assert fake.max_in_flight == 0
    await post_voice(session, fake, token)
    assert fake.max_in_flight == 1
    assert fake.calls_to(CALLED) == 6


# ---------------------------------------------------------------------- other endpoints

APPLY_PATH = "/apiaccess/ccmessaging/applyToken"
LEAVE_PATH = "/apiaccess/ccmessaging/doLeaveMessage"
CREATE_CALL_PATH = "/apiaccess/ccmessaging/v1/mobileagent/createcall"
CALLED_INFO_PATH = "/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo"
MIDRESULT_PATH = "/rest/isales/v1/openapi/obs/business/push/midresult"
APPLY = "applyToken"
LEAVE = "doLeaveMessage"
CREATE_CALL = "createcall"
CALLED_INFO = "getCalledInfo"
MIDRESULT = "midresult"
NEW_ENDPOINTS = [APPLY, LEAVE, CREATE_CALL, CALLED_INFO, MIDRESULT]
ENDPOINT_PATHS = {
    APPLY: APPLY_PATH,
    LEAVE: LEAVE_PATH,
    CREATE_CALL: CREATE_CALL_PATH,
    CALLED_INFO: CALLED_INFO_PATH,
    MIDRESULT: MIDRESULT_PATH,
}
CODE_FIELDS = {
    APPLY: "resultCode",
    LEAVE: "resultCode",
    CREATE_CALL: "resultCode",
    CALLED_INFO: "retCode",
    MIDRESULT: "result",
}
DESC_FIELDS = {CALLED_INFO: "retMsg"}
BUSY_DESC = "A task is in progress. Try again later."

USER_ID = "111111222111"
APPLY_BODY: Mapping[str, Any] = {
    "userId": USER_ID,
    "userName": "Tom",
    "channelId": "web-channel-1",
    "locale": "en_US",
}
LEAVE_BODY: Mapping[str, Any] = {  # the seed's example
    "callId": USER_ID,
    "caller": "138****7777",
    "leaveMessage": "Please reply",
    "channel": "WEB",
}
CREATE_CALL_BODY: Mapping[str, Any] = {  # the seed's example
    "called": "88884432",
    "callData": "1",
    "callerPresent": "95599",
}
CALLED_INFO_BODY: Mapping[str, Any] = {"caller": 8888888, "called": 6666614}  # the seed's
MIDRESULT_BODY: Mapping[str, Any] = {  # the seed's example
    "subCCNo": 1,
    "vdnId": 88,
    "uniqueId": "21713676089219765504",
    "serviceId": "1251250797",
    "status": "",
    "deviceType": 2,
    "phoneNumber": "88889156",
    "failCode": "",
    "asrResult": "",
    "fetchTime": "",
    "writeStartTime": "",
    "endCallTime": "",
    "callId": "",
}
MIDRESULT_REQUIRED = ("subCCNo", "vdnId", "uniqueId", "serviceId")
BAD_MESSAGING_TOKEN = {"resultCode": "401", "resultDesc": "ccmessaging-token is invalid"}
BAD_LEAVE_PARAMS = {"resultCode": "3", "resultDesc": "the leaveMessageParams is error"}
BAD_CREATE_CALL = {"resultCode": "30010000003", "resultDesc": "Input parameter verification failed"}
BAD_MIDRESULT = {"result": 1, "resultDesc": "Parameter error"}
SKILL_PARTY = CalledParty(dev_type=0, called="6666614", skill_id=12, skill_name="billing")


async def post_to(
    session: aiohttp.ClientSession,
    fake: FakeAICC,
    endpoint: str,
    token: str | None,
    body: Any,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """POST ``body`` to ``endpoint``; default headers are Bearer ``token`` plus the app key.

    ``headers`` replaces the default headers, ``extra`` is added to them. The seed
    for midresult sends no app key, so neither does the default here.
    """
    sent: dict[str, str] = {}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if endpoint != MIDRESULT:
        sent["x-app-key"] = fake.app_key
    if headers is not None:
        sent = dict(headers)
    sent.update(extra or {})
    data = body if isinstance(body, str) else json.dumps(body)
    url = fake.url + ENDPOINT_PATHS[endpoint]
    async with session.post(url, data=data, headers=sent) as resp:
        await resp.read()
        return resp


async def apply_token(
    session: aiohttp.ClientSession, fake: FakeAICC, token: str, user_id: str = USER_ID
) -> str:
    resp = await post_to(session, fake, APPLY, token, {**APPLY_BODY, "userId": user_id})
    assert resp.status == 200
    data = await resp.json()
    assert data["resultCode"] == "0"
    messaging_token = data["token"]
    assert isinstance(messaging_token, str)
    return messaging_token


async def leave_message(
    session: aiohttp.ClientSession,
    fake: FakeAICC,
    token: str,
    messaging_token: str | None,
    body: Mapping[str, Any] = LEAVE_BODY,
) -> aiohttp.ClientResponse:
    extra = {} if messaging_token is None else {"ccmessaging-token": messaging_token}
    return await post_to(session, fake, LEAVE, token, dict(body), extra=extra)


async def valid_request(
    session: aiohttp.ClientSession, fake: FakeAICC, endpoint: str, token: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """A body and extra headers that ``endpoint`` processes (configuring the fake)."""
    if endpoint == APPLY:
        return dict(APPLY_BODY), {}
    if endpoint == LEAVE:
        return dict(LEAVE_BODY), {"ccmessaging-token": await apply_token(session, fake, token)}
    if endpoint == CREATE_CALL:
        return dict(CREATE_CALL_BODY), {}
    if endpoint == CALLED_INFO:
        fake.called_parties["6666614"] = SKILL_PARTY
        return dict(CALLED_INFO_BODY), {}
    return dict(MIDRESULT_BODY), {}


def success_code(endpoint: str) -> object:
    return 0 if endpoint == MIDRESULT else "0"


# ---- applyToken


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


# ---- doLeaveMessage


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


# ---- createcall


@pytest.mark.asyncio
async def test_create_call_success_shape(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    answers = []
    for _ in range(2):
        resp = await post_to(session, fake, CREATE_CALL, token, CREATE_CALL_BODY)
        assert resp.status == 200
        data = await resp.json()
        assert set(data) == {"resultCode", "resultDesc", "resultData"}
        assert data["resultCode"] == "0"
        assert data["resultDesc"] == "Success"
        assert set(data["resultData"]) == {"callSerialNo", "sipServiceAddress", "accesscode"}
        assert data["resultData"]["sipServiceAddress"] == "127.0.0.1:5063"
        assert isinstance(data["resultData"]["callSerialNo"], str)
        assert data["resultData"]["accesscode"].isdigit()
        answers.append(data["resultData"])
    assert answers[0]["callSerialNo"] != answers[1]["callSerialNo"]
    assert answers[0]["accesscode"] != answers[1]["accesscode"]
    assert len(fake.processed(CREATE_CALL)) == 2
    assert fake.call_tasks_to(CREATE_CALL_BODY["called"]) == 2
    assert fake.calls_to(CREATE_CALL_BODY["called"]) == 0  # not a voice notification


@pytest.mark.asyncio
async def test_create_call_can_omit_call_serial_no(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.omit_call_serial_no = True
    resp = await post_to(session, fake, CREATE_CALL, token, CREATE_CALL_BODY)
    data = await resp.json()
    assert data["resultCode"] == "0"
    assert set(data["resultData"]) == {"sipServiceAddress", "accesscode"}
    assert len(fake.processed(CREATE_CALL)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"called": None},
        {"called": ""},
        {"called": "1" * 33},
        {"called": 88884432},
        {"callerPresent": None},
        {"callerPresent": ""},
        {"callerPresent": "1" * 33},
        {"callerPresent": 95599},
        {"callData": "x" * 1025},
        {"callData": 1},
        {"callData": None, "_send_null": True},
    ],
)
async def test_create_call_invalid_params(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    send_null = overrides.pop("_send_null", False)
    body = {**CREATE_CALL_BODY, **overrides}
    if not send_null:
        body = {k: v for k, v in body.items() if v is not None}
    resp = await post_to(session, fake, CREATE_CALL, token, body)
    assert resp.status == 200
    assert await resp.json() == BAD_CREATE_CALL
    assert fake.processed(CREATE_CALL) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"called": "1" * 32},
        {"callerPresent": "9" * 32},
        {"callData": "x" * 1024},
        {"callData": ""},
    ],
)
async def test_create_call_accepts_limits(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    resp = await post_to(session, fake, CREATE_CALL, token, {**CREATE_CALL_BODY, **overrides})
    assert (await resp.json())["resultCode"] == "0"


@pytest.mark.asyncio
async def test_create_call_without_call_data(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    body = {"called": "88884432", "callerPresent": "95599"}
    resp = await post_to(session, fake, CREATE_CALL, token, body)
    assert (await resp.json())["resultCode"] == "0"


# ---- getCalledInfo


@pytest.mark.asyncio
async def test_called_info_not_configured_is_5_as_in_the_seed(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    resp = await post_to(session, fake, CALLED_INFO, token, CALLED_INFO_BODY)
    assert resp.status == 200
    assert await resp.json() == {"retMsg": "Called is not configured", "retCode": "5"}
    assert fake.processed(CALLED_INFO) == []
    assert fake.received(CALLED_INFO)[0].path == CALLED_INFO_PATH


@pytest.mark.asyncio
@pytest.mark.parametrize("called", [6666614, "6666614"])
async def test_called_info_configured_party(
    fake: FakeAICC, session: aiohttp.ClientSession, called: object
) -> None:
    token = await get_token(session, fake)
    fake.called_parties["6666614"] = SKILL_PARTY
    resp = await post_to(session, fake, CALLED_INFO, token, {"caller": "8888888", "called": called})
    assert resp.status == 200
    assert await resp.json() == {
        "retCode": "0",
        "retMsg": "success",
        "result": {"devType": 0, "called": "6666614", "skillId": 12, "skillName": "billing"},
    }
    assert len(fake.processed(CALLED_INFO)) == 1


@pytest.mark.asyncio
async def test_called_info_omits_missing_skill(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.called_parties["6666614"] = CalledParty(dev_type=1, called="7777")
    resp = await post_to(session, fake, CALLED_INFO, token, CALLED_INFO_BODY)
    assert await resp.json() == {
        "retCode": "0",
        "retMsg": "success",
        "result": {"devType": 1, "called": "7777"},
    }


@pytest.mark.asyncio
async def test_called_info_unobtainable_is_4(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.unobtainable.add("6666614")
    fake.called_parties["6666614"] = SKILL_PARTY  # unobtainable wins
    resp = await post_to(session, fake, CALLED_INFO, token, CALLED_INFO_BODY)
    assert resp.status == 200
    assert await resp.json() == {
        "retCode": "4",
        "retMsg": "The called party ID cannot be obtained",
    }
    assert fake.processed(CALLED_INFO) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        {"called": None},
        {"called": ""},
        {"called": "1" * 33},
        {"called": 10**32},
        {"called": True},
        {"called": 1.5},
        {"called": [6666614]},
        {"caller": None},
        {"caller": ""},
        {"caller": False},
        {"caller": {"n": 1}},
    ],
)
async def test_called_info_invalid_params_answer_3(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    fake.called_parties["6666614"] = SKILL_PARTY
    body = {k: v for k, v in {**CALLED_INFO_BODY, **overrides}.items() if v is not None}
    resp = await post_to(session, fake, CALLED_INFO, token, body)
    assert resp.status == 200
    assert await resp.json() == {"retCode": "3", "retMsg": "Parameter error"}
    assert fake.processed(CALLED_INFO) == []


@pytest.mark.asyncio
async def test_called_info_accepts_32_digit_numbers(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    called = 10**31  # 32 digits
    fake.called_parties[str(called)] = CalledParty(dev_type=1, called=str(called))
    resp = await post_to(session, fake, CALLED_INFO, token, {"caller": "1" * 32, "called": called})
    assert (await resp.json())["retCode"] == "0"


# ---- midresult


@pytest.mark.asyncio
async def test_midresult_seed_example_answers_number_0(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    # the seed sends no app key: none is needed
    resp = await post_to(session, fake, MIDRESULT, token, MIDRESULT_BODY)
    assert resp.status == 200
    data = await resp.json()
    assert data == {"result": 0}
    assert type(data["result"]) is int
    assert fake.write_backs == {MIDRESULT_BODY["uniqueId"]: 1}
    assert len(fake.processed(MIDRESULT)) == 1
    assert "x-app-key" not in fake.processed(MIDRESULT)[0].headers


@pytest.mark.asyncio
async def test_midresult_ignores_the_app_key(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    extra = {"X-APP-Key": "not-the-app-key"}
    resp = await post_to(session, fake, MIDRESULT, token, MIDRESULT_BODY, extra=extra)
    assert await resp.json() == {"result": 0}


@pytest.mark.asyncio
async def test_midresult_result_as_string(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.midresult_result_as_string = True
    resp = await post_to(session, fake, MIDRESULT, token, MIDRESULT_BODY)
    assert await resp.json() == {"result": "0"}


@pytest.mark.asyncio
async def test_midresult_write_backs_counted_per_unique_id(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(record=False) as server:
        token = await get_token(session, server)
        minimal = {k: MIDRESULT_BODY[k] for k in MIDRESULT_REQUIRED}
        for body in (MIDRESULT_BODY, minimal, {**minimal, "uniqueId": "other"}):
            assert await (await post_to(session, server, MIDRESULT, token, body)).json() == {
                "result": 0
            }
        bad = {**minimal, "uniqueId": ""}
        assert (await (await post_to(session, server, MIDRESULT, token, bad)).json())["result"] == 1
        assert server.write_backs == {MIDRESULT_BODY["uniqueId"]: 2, "other": 1}
        assert server.requests == []
        # a copy
        server.write_backs["other"] = 99
        assert server.write_backs["other"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "overrides",
    [
        *({name: None} for name in MIDRESULT_REQUIRED),
        {"subCCNo": "1"},
        {"subCCNo": True},
        {"subCCNo": 1.0},
        {"vdnId": "88"},
        {"vdnId": False},
        {"uniqueId": ""},
        {"uniqueId": 21713676089219765504},
        {"serviceId": ""},
        {"serviceId": 1251250797},
        {"deviceType": "2"},
        {"deviceType": True},
        {"status": 0},
        {"phoneNumber": 88889156},
        {"failCode": 1},
        {"asrResult": []},
        {"fetchTime": 0},
        {"writeStartTime": 0},
        {"endCallTime": 0},
        {"callId": 1},
        {"callId": None, "_send_null": True},
        {"deviceType": None, "_send_null": True},
    ],
)
async def test_midresult_invalid_params(
    fake: FakeAICC, session: aiohttp.ClientSession, overrides: dict[str, Any]
) -> None:
    token = await get_token(session, fake)
    send_null = overrides.pop("_send_null", False)
    body = {**MIDRESULT_BODY, **overrides}
    if not send_null:
        body = {k: v for k, v in body.items() if v is not None}
    resp = await post_to(session, fake, MIDRESULT, token, body)
    assert resp.status == 200
    assert await resp.json() == BAD_MIDRESULT
    assert fake.processed(MIDRESULT) == []
    assert fake.write_backs == {}


# ---- checks common to the new endpoints


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
async def test_new_endpoint_success_is_processed(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str
) -> None:
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert resp.status == 200
    assert (await resp.json())[CODE_FIELDS[endpoint]] == success_code(endpoint)
    recorded = fake.processed(endpoint)
    assert len(recorded) == 1
    assert recorded[0].endpoint == endpoint
    assert recorded[0].path == ENDPOINT_PATHS[endpoint]
    assert recorded[0].body == body
    assert recorded[0].fault is None
    assert fake.max_in_flight == 1
    assert fake.in_flight == 0


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


@pytest.mark.asyncio
async def test_new_endpoints_get_404_405_like_the_others(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    async with session.get(fake.url + MIDRESULT_PATH) as resp:
        assert resp.status == 405
    # paths are case-sensitive: createcall is lower-case, getCalledInfo is not
    async with session.post(fake.url + CREATE_CALL_PATH.replace("createcall", "createCall")) as r:
        assert r.status == 404
    async with session.post(fake.url + CALLED_INFO_PATH.lower()) as resp:
        assert resp.status == 404
    assert [r.endpoint for r in fake.requests] == ["unknown"] * 3
    assert fake.max_in_flight == 0


# ---- faults on the new endpoints


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
async def test_busy_fault_on_new_endpoint(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str
) -> None:
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    fake.inject(Fault.BUSY, endpoint=endpoint)
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert resp.status == 200
    field = CODE_FIELDS[endpoint]
    desc = DESC_FIELDS.get(endpoint, "resultDesc")
    assert await resp.json() == {field: "1", desc: BUSY_DESC}
    assert fake.processed(endpoint) == []
    assert fake.received(endpoint)[-1].fault is Fault.BUSY
    # the next one goes through
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert (await resp.json())[field] == success_code(endpoint)


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
async def test_unfiltered_fault_hits_any_new_endpoint(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str
) -> None:
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    fake.inject(Fault.HTTP_500)  # endpoint=None: any business endpoint, applyToken included
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert resp.status == 500
    assert fake.received(endpoint)[-1].fault is Fault.HTTP_500
    assert fake.processed(endpoint) == []
    assert all(r.fault is None for r in fake.received(TOKEN))


@pytest.mark.asyncio
async def test_fault_endpoint_filter_with_new_names(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    requests = {e: await valid_request(session, fake, e, token) for e in NEW_ENDPOINTS}
    for endpoint in NEW_ENDPOINTS:
        fake.inject(Fault.HTTP_429, endpoint=endpoint)  # accepted names
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake.inject(Fault.BUSY, endpoint="createCall")
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake.chaos(seed=1, probability=1.0, faults=[Fault.BUSY], endpoint="leaveMessage")
    # a voice notification skips every queued fault: none is for it
    assert (await post_voice(session, fake, token)).status == 200
    for endpoint in reversed(NEW_ENDPOINTS):
        body, extra = requests[endpoint]
        resp = await post_to(session, fake, endpoint, token, body, extra=extra)
        assert resp.status == 429, endpoint
        resp = await post_to(session, fake, endpoint, token, body, extra=extra)
        assert resp.status == 200, endpoint


@pytest.mark.asyncio
async def test_apply_token_fault_leaves_token_by_ak_sk_alone(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    fake.inject(Fault.HTML_503, endpoint=APPLY, retry_after=1)
    token = await get_token(session, fake)
    resp = await post_to(session, fake, APPLY, token, APPLY_BODY)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert fake.messaging_token_requests == 1
    assert fake.processed(APPLY) == []
    await apply_token(session, fake, token)
    assert fake.messaging_token_requests == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", NEW_ENDPOINTS)
async def test_token_expired_fault_on_new_endpoint(
    fake: FakeAICC, session: aiohttp.ClientSession, endpoint: str
) -> None:
    token = await get_token(session, fake)
    body, extra = await valid_request(session, fake, endpoint, token)
    fake.inject(Fault.TOKEN_EXPIRED, endpoint=endpoint)
    resp = await post_to(session, fake, endpoint, token, body, extra=extra)
    assert resp.status == 401
    assert (await resp.json())["error_code"] == "APIGW.0301"
    assert fake.rejected_token_requests == 1
    assert fake.processed(endpoint) == []
    assert (await post_to(session, fake, endpoint, token, body, extra=extra)).status == 200


@pytest.mark.asyncio
async def test_reset_after_processing_on_midresult_writes_back(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    fake.inject(Fault.RESET_AFTER_PROCESSING, endpoint=MIDRESULT)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post_to(session, fake, MIDRESULT, token, MIDRESULT_BODY)
    assert fake.write_backs == {MIDRESULT_BODY["uniqueId"]: 1}
    assert fake.received(MIDRESULT)[0].processed


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "processed"), [(Fault.HTML_502, 1), (Fault.HTML_503, 0)])
async def test_gateway_pages_on_create_call(
    fake: FakeAICC, session: aiohttp.ClientSession, fault: Fault, processed: int
) -> None:
    token = await get_token(session, fake)
    fake.inject(fault, endpoint=CREATE_CALL)
    resp = await post_to(session, fake, CREATE_CALL, token, CREATE_CALL_BODY)
    assert resp.content_type == "text/html"
    assert fake.call_tasks_to(CREATE_CALL_BODY["called"]) == processed
    assert len(fake.processed(CREATE_CALL)) == processed


@pytest.mark.asyncio
async def test_reset_before_processing_on_leave_message(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    messaging_token = await apply_token(session, fake, token)
    fake.rotate_messaging_token = True
    fake.inject(Fault.RESET_BEFORE_PROCESSING, endpoint=LEAVE)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await leave_message(session, fake, token, messaging_token)
    assert fake.processed(LEAVE) == []
    assert fake.rejected_messaging_tokens == 0


@pytest.mark.asyncio
async def test_chaos_on_a_new_endpoint_only(fake: FakeAICC, session: aiohttp.ClientSession) -> None:
    token = await get_token(session, fake)
    fake.called_parties["6666614"] = SKILL_PARTY
    fake.chaos(seed=5, probability=1.0, faults=[Fault.BUSY], endpoint=CALLED_INFO)
    resp = await post_to(session, fake, CALLED_INFO, token, CALLED_INFO_BODY)
    assert await resp.json() == {"retCode": "1", "retMsg": BUSY_DESC}
    resp = await post_to(session, fake, MIDRESULT, token, MIDRESULT_BODY)
    assert await resp.json() == {"result": 0}
    assert (await post_voice(session, fake, token)).status == 200
    assert fake.processed(CALLED_INFO) == []


@pytest.mark.asyncio
async def test_max_in_flight_counts_every_business_endpoint(
    fake: FakeAICC, session: aiohttp.ClientSession
) -> None:
    token = await get_token(session, fake)
    requests = [await valid_request(session, fake, endpoint, token) for endpoint in NEW_ENDPOINTS]
    fake.reset_stats()
    fake.inject(Fault.LATENCY, times=len(NEW_ENDPOINTS) + 1, delay=0.1)
    responses = await asyncio.gather(
        post_voice(session, fake, token),
        *(
            post_to(session, fake, endpoint, token, body, extra=extra)
            for endpoint, (body, extra) in zip(NEW_ENDPOINTS, requests, strict=True)
        ),
    )
    assert [r.status for r in responses] == [200] * (len(NEW_ENDPOINTS) + 1)
    assert fake.max_in_flight == len(NEW_ENDPOINTS) + 1
    assert fake.in_flight == 0
    for endpoint in NEW_ENDPOINTS:
        assert fake.processed(endpoint)[-1].fault is Fault.LATENCY


# ---------------------------------------------------------------------- python -m / plugin


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_main_prints_json_and_stops_on_signal(
    session: aiohttp.ClientSession, sig: signal.Signals
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aicc_async.testing",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        info = json.loads(line)
        assert set(info) == {"url", "app_key", "app_secret"}
        assert info["url"].startswith("http://127.0.0.1:")
        payload = {"app_key": info["app_key"], "app_secret": info["app_secret"]}
        async with session.post(info["url"] + TOKEN_PATH, json=payload) as resp:
            assert resp.status == 200
            assert "AccessToken" in await resp.json()
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await proc.stdout.read() == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


PLUGIN_TEST = (
    """
import aiohttp
import pytest

seen = []


@pytest.mark.asyncio
async def test_fixture_is_started(fake_aicc):
    seen.append(fake_aicc.url)
    body = {"app_key": fake_aicc.app_key, "app_secret": fake_aicc.app_secret}
    async with aiohttp.ClientSession() as s:
        async with s.post(fake_aicc.url + "TOKEN_PATH", json=body) as r:
            assert r.status == 200
    assert fake_aicc.token_requests == 1


@pytest.mark.asyncio
async def test_fixture_was_closed_and_is_fresh(fake_aicc):
    assert fake_aicc.url != seen[0]
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.post(seen[0] + "/")
"""
).replace("TOKEN_PATH", TOKEN_PATH)


def test_pytest_plugin_fixture(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:aicc_async", "-p", "aicc_async.testing.pytest_plugin", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)


def test_pytest_plugin_without_pytest_asyncio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    pytester.makeconftest(
        """
import sys
sys.modules["pytest_asyncio"] = None  # make "import pytest_asyncio" fail
pytest_plugins = ["aicc_async.testing.pytest_plugin"]
"""
    )
    pytester.makepyfile(
        test_plugin="""
def test_other():
    pass


def test_uses_fixture(fake_aicc):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:aicc_async", "-p", "no:asyncio", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the fake_aicc fixture needs pytest-asyncio*"])
