"""Outbound: the midresult write-back."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from fake_http import (
    BAD_MIDRESULT,
    MIDRESULT,
    MIDRESULT_BODY,
    MIDRESULT_REQUIRED,
    get_token,
    post_to,
)

from aicc_async.testing import FakeAICC


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
