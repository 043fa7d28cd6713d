"""Mobile agent: createcall and getCalledInfo."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from fake_http import (
    BAD_CREATE_CALL,
    CALLED_INFO,
    CALLED_INFO_BODY,
    CALLED_INFO_PATH,
    CREATE_CALL,
    CREATE_CALL_BODY,
    SKILL_PARTY,
    get_token,
    post_to,
)

from aicc_async.testing import CalledParty, FakeAICC


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
