"""The client options users expect (issue 10): per-call timeout, proxy, trust_env,
default headers, response metadata, and clear errors after close / across loops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aicc_helpers import VOICE
from hostile import CALLED_INFO_PATH, LEAVE_MESSAGE_PATH, VOICE_PATH, Hostile, json_text

from aicc_async import (
    AICCBusinessError,
    AICCClient,
    AICCConnectionError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCValidationError,
    RetryPolicy,
    Timeout,
)
from aicc_async.testing import FakeAICC, Fault

FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- per-call timeout -----------------------------------------------------------------------

CALLS: list[tuple[str, Callable[[AICCClient, Any], Awaitable[Any]]]] = [
    ("create", lambda a, t: a.voice_notification.create("1", "$a$", timeout=t)),
    (
        "voice send",
        lambda a, t: a.voice_notification.send(
            __import__("aicc_async").CreateVoiceNotificationRequest("1", "$a$"), timeout=t
        ),
    ),
    ("write_back_result", lambda a, t: a.outbound.write_back_result(1, 2, "u", "s", timeout=t)),
    ("create_call", lambda a, t: a.mobile_agent.create_call("1", "2", timeout=t)),
    ("get_called_info", lambda a, t: a.mobile_agent.get_called_info("1", "2", timeout=t)),
    ("apply_token", lambda a, t: a.messaging.apply_token("u", "n", "web", "en", timeout=t)),
    ("leave_message", lambda a, t: a.messaging.leave_message("u", "1", "hi", timeout=t)),
]


ENDPOINTS = {
    "create": VOICE,
    "voice send": VOICE,
    "write_back_result": "midresult",
    "create_call": "createcall",
    "get_called_info": "getCalledInfo",
    "apply_token": "applyToken",
    "leave_message": "doLeaveMessage",
}


@pytest.mark.parametrize(("name", "call"), CALLS)
@pytest.mark.asyncio
async def test_every_method_takes_a_per_call_timeout(
    fake_aicc: FakeAICC, name: str, call: Callable[[AICCClient, Any], Awaitable[Any]]
) -> None:
    endpoint = ENDPOINTS[name]
    fake_aicc.inject(Fault.HANG, endpoint=endpoint)  # it hangs; only the timeout ends it
    async with fake_aicc.client(
        retry=RetryPolicy(max_attempts=1),
        timeout=Timeout(total=60, connect=5),
        messaging_channel_id="web",
    ) as aicc:
        with pytest.raises(AICCOutcomeUnknownError):
            await call(aicc, Timeout(total=0.2, connect=0.1))
        assert len(fake_aicc.received(endpoint)) == 1
        # A plain number works too, and the next call is normal (answered: getCalledInfo
        # of an unconfigured number is refused, for instance).
        with contextlib.suppress(AICCBusinessError):
            await call(aicc, 5)
    assert len(fake_aicc.received(endpoint)) == 2


def test_a_bad_per_call_timeout_is_refused_before_sending() -> None:
    aicc = AICCClient("https://aicc.example.com", "k", "s")
    with pytest.raises(AICCValidationError, match="timeout"):
        asyncio.run(aicc.voice_notification.create("1", "$a$", timeout=-1))


# -- proxy and trust_env --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_proxy_carries_every_request(fake_aicc: FakeAICC) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    # The fake doubles as a forwarding proxy: it serves the absolute-form requests itself.
    async with AICCClient(
        unreachable, fake_aicc.app_key, fake_aicc.app_secret, proxy=fake_aicc.url
    ) as aicc:
        result = await aicc.voice_notification.create("1", "$a$")
    assert result.call_serial_no
    assert fake_aicc.token_requests == 1
    assert fake_aicc.received(VOICE)[0].headers["Host"] == unreachable.removeprefix("http://")


@pytest.mark.parametrize("trust_env", [True, False])
@pytest.mark.asyncio
async def test_trust_env_decides_whether_http_proxy_is_used(
    fake_aicc: FakeAICC, monkeypatch: pytest.MonkeyPatch, trust_env: bool
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake_aicc.url)
    monkeypatch.setenv("http_proxy", fake_aicc.url)
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    async with AICCClient(
        unreachable, fake_aicc.app_key, fake_aicc.app_secret, trust_env=trust_env, retry=FAST
    ) as aicc:
        if trust_env:
            assert (await aicc.voice_notification.create("1", "$a$")).call_serial_no
        else:
            with pytest.raises(AICCConnectionError, match="not sent"):
                await aicc.voice_notification.create("1", "$a$")
    assert len(fake_aicc.received(VOICE)) == (1 if trust_env else 0)


def test_proxy_credentials_stay_out_of_repr() -> None:
    aicc = AICCClient("https://aicc.example.com", "k", "s", proxy="http://u:pw-123456@proxy:3128")
    assert "pw-123456" not in repr(aicc.config)
    with pytest.raises(AICCValidationError, match="proxy"):
        AICCClient("https://aicc.example.com", "k", "s", proxy="socks9://proxy")


# -- default_headers ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_default_headers_are_sent_on_every_request(fake_aicc: FakeAICC) -> None:
    async with fake_aicc.client(default_headers={"X-Trace": "trace-1"}) as aicc:
        await aicc.voice_notification.create("1", "$a$")
    assert [r.headers.get("X-Trace") for r in fake_aicc.requests] == ["trace-1", "trace-1"]
    assert fake_aicc.requests[1].headers["Authorization"].startswith("Bearer ")


@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "X-APP-Key", "x-app-key", "ccmessaging-token"]
)
def test_default_headers_never_override_auth_headers(name: str) -> None:
    with pytest.raises(AICCValidationError, match="default_headers"):
        AICCClient("https://aicc.example.com", "k", "s", default_headers={name: "mine"})


def test_default_headers_must_be_header_safe() -> None:
    with pytest.raises(AICCValidationError, match="default_headers"):
        AICCClient("https://aicc.example.com", "k", "s", default_headers={"X-A": "a\r\nB: c"})


# -- response metadata ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_results_and_errors_carry_status_headers_and_request_id() -> None:
    ok = json.dumps({"retCode": "0", "result": {"callSerialNo": "9"}})
    refused = json.dumps({"retCode": "16", "retMsg": "not on the trustlist"})
    headers = {"X-Request-Id": "req-42", "ccmessaging-token": "fresh-token-123456"}
    async with (
        Hostile(
            {
                VOICE_PATH: json_text(ok, headers=headers),
                CALLED_INFO_PATH: json_text(
                    refused, status=400, headers={"X-Request-Id": "req-43"}
                ),
                LEAVE_MESSAGE_PATH: json_text(
                    json.dumps({"resultCode": "3"}), headers={"X-Request-Id": "req-44"}
                ),
            }
        ) as server,
        AICCClient(server.url, "k", "s", retry=FAST) as aicc,
    ):
        result = await aicc.voice_notification.create("1", "$a$")
        with pytest.raises(AICCHTTPError) as http_error:
            await aicc.mobile_agent.get_called_info("1", "2")
        with pytest.raises(AICCBusinessError) as business:
            await aicc.messaging.leave_message("u", "1", "hi", token="given-token-1")

    assert result.response is not None
    assert result.response.status == 200
    assert result.response.request_id == "req-42"
    assert result.response.headers["x-request-id"] == "req-42"
    assert result.response.headers["ccmessaging-token"] == "***"
    assert "fresh-token-123456" not in repr(result) + repr(result.response)
    assert http_error.value.request_id == "req-43"
    assert http_error.value.response is not None
    assert http_error.value.response.status == 400
    assert business.value.request_id == "req-44"


@pytest.mark.asyncio
async def test_fake_results_have_a_response(fake_aicc: FakeAICC) -> None:
    async with fake_aicc.client() as aicc:
        result = await aicc.voice_notification.create("1", "$a$")
    assert result.response is not None
    assert result.response.status == 200
    assert result.response.request_id is None


# -- closed clients and a second event loop -------------------------------------------------


@pytest.mark.asyncio
async def test_use_after_close_is_a_typed_not_sent_error(fake_aicc: FakeAICC) -> None:
    aicc = fake_aicc.client()
    await aicc.close()
    for call in (
        lambda: aicc.voice_notification.create("1", "$a$"),
        lambda: aicc.mobile_agent.get_called_info("1", "2"),
        lambda: aicc.messaging.leave_message("u", "1", "hi", token="t-123456"),
    ):
        with pytest.raises(AICCConnectionError, match="closed") as caught:
            await call()
        assert type(caught.value) is AICCConnectionError
        assert "nothing was sent" in str(caught.value)
    assert fake_aicc.requests == []


def test_reuse_across_two_event_loops_is_a_clear_error() -> None:
    fake = FakeAICC()
    holder: dict[str, AICCClient] = {}

    async def first() -> None:
        await fake.start()
        holder["aicc"] = fake.client()
        try:
            await holder["aicc"].voice_notification.create("1", "$a$")
        finally:
            await fake.close()

    async def second() -> None:
        try:
            with pytest.raises(AICCConnectionError, match="event loop") as caught:
                await holder["aicc"].voice_notification.create("2", "$a$")
            assert "nothing was sent" in str(caught.value)
        finally:
            await holder["aicc"].close()  # closing from the wrong loop must not raise either

    asyncio.run(first())
    asyncio.run(second())
    assert len(fake.received(VOICE)) == 1
