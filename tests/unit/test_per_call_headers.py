"""Per-call ``headers=`` beside ``timeout=`` on every endpoint method: sent with that
call only, on top of the client's headers; a header the SDK sets itself (credentials,
framing) is refused before anything is sent. HTTP mocked with aioresponses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aioresponses import aioresponses
from yarl import URL

from aicc_async import (
    AICCClient,
    AICCValidationError,
    ApplyTokenRequest,
    CreateCallRequest,
    CreateVoiceNotificationRequest,
    GetCalledInfoRequest,
    LeaveMessageRequest,
    WriteBackResultRequest,
)

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
MIDRESULT = BASE + "/rest/isales/v1/openapi/obs/business/push/midresult"
CREATE_CALL = BASE + "/apiaccess/ccmessaging/v1/mobileagent/createcall"
CALLED_INFO = BASE + "/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo"
APPLY_TOKEN = BASE + "/apiaccess/ccmessaging/applyToken"
LEAVE_MESSAGE = BASE + "/apiaccess/ccmessaging/doLeaveMessage"

ANSWERS = {
    VOICE: {"retCode": "0", "result": {"callSerialNo": "123"}},
    MIDRESULT: {"result": 0},
    CREATE_CALL: {"resultCode": "0", "result": {"sipServiceAddress": "1.2.3.4:5060"}},
    CALLED_INFO: {"retCode": "0", "result": {"devType": 1}},
    APPLY_TOKEN: {"resultCode": "0", "token": "msg-token-1"},
    LEAVE_MESSAGE: {"resultCode": "0", "resultDesc": "ok"},
}

Call = Callable[[AICCClient, dict[str, str]], Awaitable[Any]]

#: Every endpoint method, keyword form and send() form: (url, call with headers).
METHODS: dict[str, tuple[str, Call]] = {
    "voice_notification.create": (
        VOICE,
        lambda a, h: a.voice_notification.create("88880000", "$Hi$", headers=h),
    ),
    "voice_notification.send": (
        VOICE,
        lambda a, h: a.voice_notification.send(
            CreateVoiceNotificationRequest(called="88880000", voice_content="$Hi$"), headers=h
        ),
    ),
    "outbound.write_back_result": (
        MIDRESULT,
        lambda a, h: a.outbound.write_back_result(1, 2, "u-1", "svc", headers=h),
    ),
    "outbound.send": (
        MIDRESULT,
        lambda a, h: a.outbound.send(WriteBackResultRequest(1, 2, "u-1", "svc"), headers=h),
    ),
    "mobile_agent.create_call": (
        CREATE_CALL,
        lambda a, h: a.mobile_agent.create_call("88884432", "95599", headers=h),
    ),
    "mobile_agent.send(CreateCallRequest)": (
        CREATE_CALL,
        lambda a, h: a.mobile_agent.send(CreateCallRequest("88884432", "95599"), headers=h),
    ),
    "mobile_agent.get_called_info": (
        CALLED_INFO,
        lambda a, h: a.mobile_agent.get_called_info("6666614", "8888888", headers=h),
    ),
    "mobile_agent.send(GetCalledInfoRequest)": (
        CALLED_INFO,
        lambda a, h: a.mobile_agent.send(GetCalledInfoRequest("6666614", "8888888"), headers=h),
    ),
    "messaging.apply_token": (
        APPLY_TOKEN,
        lambda a, h: a.messaging.apply_token("u1", "Ann", "cfg", "en", headers=h),
    ),
    "messaging.send(ApplyTokenRequest)": (
        APPLY_TOKEN,
        lambda a, h: a.messaging.send(ApplyTokenRequest("u1", "Ann", "cfg", "en"), headers=h),
    ),
    "messaging.leave_message": (
        LEAVE_MESSAGE,
        lambda a, h: a.messaging.leave_message("u1", "138****7777", "Hi", token="t-1", headers=h),
    ),
    "messaging.send(LeaveMessageRequest)": (
        LEAVE_MESSAGE,
        lambda a, h: a.messaging.send(
            LeaveMessageRequest("u1", "138****7777", "Hi"), token="t-1", headers=h
        ),
    ),
}


@pytest_asyncio.fixture
async def aicc() -> AsyncIterator[AICCClient]:
    async with AICCClient(
        BASE, "key-1", "secret-1", default_headers={"X-Client": "mine"}
    ) as client:
        yield client


@pytest.fixture
def http() -> Any:
    with aioresponses() as mock:
        mock.post(TOKEN_URL, payload={"AccessToken": "tok-1", "Expires": "600"}, repeat=True)
        for url, body in ANSWERS.items():
            mock.post(url, payload=body, repeat=True)
        yield mock


def sent_headers(http: Any, url: str) -> list[dict[str, str]]:
    return [dict(c.kwargs["headers"]) for c in http.requests.get(("POST", URL(url)), [])]


@pytest.mark.asyncio
@pytest.mark.parametrize("method", list(METHODS))
async def test_headers_go_with_that_call_only(aicc: AICCClient, http: Any, method: str) -> None:
    url, call = METHODS[method]
    result = await call(aicc, {"X-Trace-Tag": "campaign-7"})
    assert result.response.status == 200
    await call(aicc, {})
    with_headers, without = sent_headers(http, url)
    assert with_headers["X-Trace-Tag"] == "campaign-7"
    assert with_headers["X-Client"] == "mine"  # the client's own headers stay
    assert with_headers["Authorization"] == "Bearer tok-1"
    assert "X-Trace-Tag" not in without


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "name", ["Authorization", "x-access-token", "X-APP-Key", "Content-Type", "ccmessaging-token"]
)
@pytest.mark.parametrize("method", ["voice_notification.create", "messaging.leave_message"])
async def test_a_header_the_sdk_sets_is_refused_before_sending(
    aicc: AICCClient, http: Any, method: str, name: str
) -> None:
    url, call = METHODS[method]
    with pytest.raises(AICCValidationError, match=f"headers: must not set {name}") as caught:
        await call(aicc, {name: "forged"})
    assert caught.value.field == "headers"
    assert "forged" not in str(caught.value)
    assert sent_headers(http, url) == []
    assert sent_headers(http, TOKEN_URL) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", [{"X-Bad": "line\r\nbreak"}, {"bad name": "x"}, ["X-A"]])
async def test_malformed_headers_are_refused(aicc: AICCClient, http: Any, headers: Any) -> None:
    with pytest.raises(AICCValidationError, match="headers"):
        await aicc.voice_notification.create("88880000", "$Hi$", headers=headers)
    assert sent_headers(http, VOICE) == []
