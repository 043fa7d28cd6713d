"""Faults: each Fault, the FIFO queue, endpoint filters and seeded chaos."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from fake_http import (
    APPLY,
    APPLY_BODY,
    BUSY_DESC,
    CALLED,
    CALLED_INFO,
    CALLED_INFO_BODY,
    CODE_FIELDS,
    CREATE_CALL,
    CREATE_CALL_BODY,
    DESC_FIELDS,
    LEAVE,
    MIDRESULT,
    MIDRESULT_BODY,
    NEW_ENDPOINTS,
    SKILL_PARTY,
    TOKEN,
    VOICE,
    apply_token,
    get_token,
    leave_message,
    post_to,
    post_token,
    post_voice,
    success_code,
    valid_request,
)

from aicc_async.testing import FakeAICC, Fault


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
async def test_hang_is_released_by_close(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    aborted: list[int] = []  # the hanging request ended by close(), not cancelled by shutdown
    abort = FakeAICC._abort
    monkeypatch.setattr(
        FakeAICC, "_abort", staticmethod(lambda request: aborted.append(1) or abort(request))
    )
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
        await server.close()
    assert aborted == [1]
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
