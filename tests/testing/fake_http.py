"""Constants and request helpers shared by the FakeAICC tests in this folder.

Imported as a plain module (``from fake_http import ...``), as tests/integration does
with ``hostile``: tests/ has no packages.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from aicc_async.testing import CalledParty, FakeAICC

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


STATS_PATH = "/_fake/stats"


ALL_ENDPOINTS = {
    TOKEN,
    VOICE,
    "applyToken",
    "doLeaveMessage",
    "createcall",
    "getCalledInfo",
    MIDRESULT,
    "unknown",
}


def counts(**nonzero: int) -> dict[str, int]:
    """A per-endpoint count dict: every endpoint 0 except those given."""
    return {name: nonzero.get(name, 0) for name in ALL_ENDPOINTS}


async def get_stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + STATS_PATH) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        stats = await resp.json()
    assert isinstance(stats, dict)
    return stats
