"""FakeAICC's server: start/close, its client, routing (404/405), recording, in-flight counts."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from fake_http import (
    CALLED,
    CALLED_INFO_PATH,
    CODE_FIELDS,
    CREATE_CALL_PATH,
    ENDPOINT_PATHS,
    MIDRESULT_PATH,
    NEW_ENDPOINTS,
    VOICE,
    VOICE_PATH,
    get_token,
    post_to,
    post_voice,
    success_code,
    valid_request,
)

from aicc_async.testing import FakeAICC, Fault


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
async def test_record_false_keeps_counters_only(session: aiohttp.ClientSession) -> None:
    async with FakeAICC(record=False) as server:
        token = await get_token(session, server)
        assert (await post_voice(session, server, token)).status == 200
        assert server.requests == []
        assert server.received(VOICE) == []
        assert server.calls_to(CALLED) == 1
        assert server.token_requests == 1


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
