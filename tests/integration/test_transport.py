"""Transport hardening (issue 10, "Did not hold"): each test counts what the server got."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as real_datetime
import json
import sys
import types
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import backoff._async
import pytest
from aicc_helpers import VOICE, leaks
from aiohttp import web
from hostile import (
    CALLED_INFO_PATH,
    LEAVE_MESSAGE_PATH,
    TOKEN_PATH,
    VOICE_PATH,
    Handler,
    Hostile,
    json_text,
    token,
)

from aicc_async import (
    AICCAuthError,
    AICCBusinessError,
    AICCClient,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCValidationError,
    RetryPolicy,
    Timeout,
)
from aicc_async.testing import FakeAICC, Fault
from aicc_async.throttle import RateCap

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01, max_elapsed=30)
SECRET = "s\u00e9cret-app-42"
ACCESS = "tok-ABCDEFGH1234"


def hostile_client(server: Hostile, **kwargs: Any) -> AICCClient:
    kwargs.setdefault("retry", FAST)
    return AICCClient(server.url, "app-key", SECRET, **kwargs)


@contextlib.asynccontextmanager
async def serve(
    handlers: dict[str, Handler], **kwargs: Any
) -> AsyncIterator[tuple[Hostile, AICCClient]]:
    """A Hostile server with ``handlers`` and a client of it."""
    async with Hostile(handlers) as server, hostile_client(server, **kwargs) as aicc:
        yield server, aicc


async def notify(aicc: AICCClient, **kwargs: Any) -> Any:
    return await aicc.voice_notification.create(called="88880000", voice_content="$a$", **kwargs)


# -- 1. a 503, with or without Retry-After, is ambiguous for non-idempotent calls ----------

NON_IDEMPOTENT: list[tuple[str, Callable[[AICCClient], Awaitable[Any]]]] = [
    ("createVoiceNotification", notify),
    ("createcall", lambda aicc: aicc.mobile_agent.create_call("88884432", "95599")),
    ("doLeaveMessage", lambda aicc: aicc.messaging.leave_message("u1", "1380000", "hi")),
]


@pytest.mark.parametrize(("endpoint", "call"), NON_IDEMPOTENT)
@pytest.mark.asyncio
async def test_processed_then_503_retry_after_is_never_resent(
    fake_aicc: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]]
) -> None:
    fake_aicc.inject(Fault.HTML_503_AFTER_PROCESSING, endpoint=endpoint, retry_after=0)
    async with fake_aicc.client(retry=FAST, messaging_channel_id="web") as aicc:
        with pytest.raises(AICCOutcomeUnknownError) as caught:
            await call(aicc)

    assert caught.value.status == 503
    assert "check its outcome before sending it again" in str(caught.value)
    assert len(fake_aicc.received(endpoint)) == 1
    assert len(fake_aicc.processed(endpoint)) == 1


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("getCalledInfo", lambda aicc: aicc.mobile_agent.get_called_info("6666614", "8888888")),
        ("midresult", lambda aicc: aicc.outbound.write_back_result(1, 88, "u-1", "svc")),
    ],
)
@pytest.mark.asyncio
async def test_idempotent_calls_still_retry_a_503_with_retry_after(
    fake_aicc: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]]
) -> None:
    fake_aicc.called_parties = {}
    fake_aicc.inject(Fault.HTML_503, endpoint=endpoint, retry_after=0)
    async with fake_aicc.client(retry=FAST) as aicc:
        # getCalledInfo of an unconfigured number is refused: answered, which is the point
        with contextlib.suppress(AICCBusinessError):
            await call(aicc)

    assert len(fake_aicc.received(endpoint)) == 2


# -- 2. response bodies are capped ----------------------------------------------------------


def _padded_ok(size: int) -> str:
    return json.dumps({"retCode": "0", "result": {"callSerialNo": "1"}, "pad": "x" * size})


@pytest.mark.asyncio
async def test_oversized_answer_is_outcome_unknown_once_for_a_non_idempotent_call() -> None:
    async with serve({VOICE_PATH: json_text(_padded_ok(2 << 20))}) as (server, aicc):
        with pytest.raises(AICCOutcomeUnknownError, match="max_response_bytes"):
            await notify(aicc)
    assert server.received[VOICE_PATH] == 1


@pytest.mark.asyncio
async def test_oversized_answer_is_not_retried_for_an_idempotent_call() -> None:
    async with serve({CALLED_INFO_PATH: json_text(_padded_ok(2 << 20))}) as (server, aicc):
        with pytest.raises(AICCHTTPError, match="max_response_bytes") as caught:
            await aicc.mobile_agent.get_called_info("1", "2")
    assert type(caught.value) is AICCHTTPError
    assert server.received[CALLED_INFO_PATH] == 1


@pytest.mark.asyncio
async def test_max_response_bytes_lets_a_larger_answer_through() -> None:
    async with serve({VOICE_PATH: json_text(_padded_ok(2 << 20))}, max_response_bytes=4 << 20) as (
        _server,
        aicc,
    ):
        result = await notify(aicc)
    assert result.call_serial_no == "1"


async def _stream_zeros(request: web.Request, *, length: int | None) -> web.StreamResponse:
    await request.read()
    resp = web.StreamResponse()
    if length is not None:
        resp.content_length = length
    resp.content_type = "application/json"
    await resp.prepare(request)
    chunk = b"0" * 65536
    sent = 0
    try:
        while length is None or sent < length:
            await resp.write(chunk)
            sent += len(chunk)
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading: what is tested
    return resp


async def _gzip_bomb(request: web.Request) -> web.StreamResponse:
    """1 GiB of zeros, gzip-compressed on the fly (about 1 MiB on the wire)."""
    await request.read()
    resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
    resp.content_type = "application/json"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"0" * (1 << 20)
    try:
        for _ in range(1024):
            await resp.write(packer.compress(block))
        await resp.write(packer.flush())
    except (ConnectionError, RuntimeError):
        pass
    return resp


def _handler(kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    if kind == "1 GB body":
        return lambda request: _stream_zeros(request, length=1 << 30)
    if kind == "endless chunked body":
        return lambda request: _stream_zeros(request, length=None)
    return _gzip_bomb


_CHILD = """
import asyncio, json, sys
from aicc_async import AICCClient, AICCError, RetryPolicy

async def main(url):
    fast = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.01)
    seen = []
    async with AICCClient(url, "app-key", "app-secret", retry=fast) as aicc:
        for call in (
            lambda: aicc.mobile_agent.get_called_info("1", "2"),
            lambda: aicc.voice_notification.create(called="1", voice_content="$a$"),
        ):
            try:
                await call()
                seen.append("ok")
            except AICCError as exc:
                seen.append(type(exc).__name__)
    # This process's own peak: ru_maxrss would also count the parent's (the test
    # session's) at the fork, which Linux carries across exec.
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"errors": seen, "peak_mb": peak_kib / 1024}))

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["1 GB body", "endless chunked body", "gzip bomb"])
@pytest.mark.asyncio
async def test_hostile_bodies_keep_the_client_memory_bounded(kind: str) -> None:
    handler = _handler(kind)
    async with Hostile({CALLED_INFO_PATH: handler, VOICE_PATH: handler}) as server:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, server.url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await child.communicate()
    assert child.returncode == 0
    report = json.loads(out)
    assert report["errors"] == ["AICCHTTPError", "AICCOutcomeUnknownError"]
    assert report["peak_mb"] < 200
    assert server.received[CALLED_INFO_PATH] == 1  # an overflow is not retried
    assert server.received[VOICE_PATH] == 1


# -- 3. cancelled waiters give their rate-cap reservation back ------------------------------


@pytest.mark.asyncio
async def test_rate_cap_forgets_cancelled_waiters() -> None:
    slept: list[float] = []
    forever = asyncio.get_running_loop().create_future()

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.shield(forever)  # a caller waiting its turn, until cancelled

    cap = RateCap(rate=2.0, clock=lambda: 0.0, sleep=fake_sleep)
    await cap.wait()  # the first start is immediate
    waiters = [asyncio.ensure_future(cap.wait()) for _ in range(100)]
    await asyncio.sleep(0)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    slept.clear()

    nxt = asyncio.ensure_future(cap.wait())
    await asyncio.sleep(0)
    assert slept == [0.5]  # one interval after the last real start, not 50 s
    nxt.cancel()
    await asyncio.gather(nxt, return_exceptions=True)
    forever.cancel()


@pytest.mark.asyncio
async def test_timed_out_callers_do_not_delay_the_next_call(fake_aicc: FakeAICC) -> None:
    async with fake_aicc.client(rate_limits={"voice_notification": 2}) as aicc:
        await notify(aicc)
        results = await asyncio.gather(
            *(asyncio.wait_for(notify(aicc), 0.05) for _ in range(100)), return_exceptions=True
        )
        assert all(isinstance(r, TimeoutError) for r in results)
        # The next call waits for one interval (0.5 s), not for 100 reservations (50 s).
        await asyncio.wait_for(notify(aicc), 5)
    assert len(fake_aicc.received(VOICE)) == 2


# -- 4. secrets are masked in every error ---------------------------------------------------


@pytest.mark.asyncio
async def test_access_token_echoed_in_a_business_error_is_masked() -> None:
    body = json.dumps({"retCode": "16", "retMsg": f"Bearer {ACCESS} is not trusted"})
    async with serve({TOKEN_PATH: token(ACCESS), VOICE_PATH: json_text(body)}) as (_server, aicc):
        with pytest.raises(AICCBusinessError) as caught:
            await notify(aicc)
    assert caught.value.code == "16"
    assert "***" in str(caught.value)
    assert leaks(caught.value, ACCESS) == []


@pytest.mark.parametrize("status", [200, 400, 502])
@pytest.mark.asyncio
async def test_json_escaped_app_secret_is_masked(status: int) -> None:
    escaped = json.dumps(SECRET)  # "s\u00e9cret-app-42", as a server would echo it
    text = f'{{"retCode": "3", "retMsg": "app_secret {escaped[1:-1]} and {ACCESS}"}}'
    async with serve({TOKEN_PATH: token(ACCESS), VOICE_PATH: json_text(text, status)}) as (
        _s,
        aicc,
    ):
        with pytest.raises(AICCError) as caught:
            await notify(aicc)
    assert leaks(caught.value, SECRET, ACCESS) == []


@pytest.mark.asyncio
async def test_given_messaging_token_is_masked_everywhere() -> None:
    given = "msg/tok+ABCDEFGH=="
    echoed = json.dumps(given).replace("/", "\\/")  # JSON may escape "/"
    body = f'{{"resultCode": "3", "resultDesc": "token {echoed[1:-1]} / {given}"}}'
    async with serve({LEAVE_MESSAGE_PATH: json_text(body)}) as (_server, aicc):
        with pytest.raises(AICCBusinessError) as caught:
            await aicc.messaging.leave_message("u1", "1380000", "hi", token=given)
    assert leaks(caught.value, given) == []

    from aicc_async.endpoints.messaging import _GivenToken

    assert given not in repr(_GivenToken(given))


# -- 5. every failure a server can cause is an AICCError ------------------------------------

NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.asyncio
async def test_deeply_nested_json_is_a_typed_error() -> None:
    async with serve({VOICE_PATH: json_text(NESTED), CALLED_INFO_PATH: json_text(NESTED)}) as (
        s,
        aicc,
    ):
        with pytest.raises(AICCOutcomeUnknownError):
            await notify(aicc)
        with pytest.raises(AICCHTTPError):
            await aicc.mobile_agent.get_called_info("1", "2")
    assert s.received[VOICE_PATH] == 1


@pytest.mark.parametrize(
    "answer",
    [
        json.dumps({"AccessToken": "tok\r\nX-Evil: 1", "Expires": "600"}),
        json.dumps({"AccessToken": "tok with spaces", "Expires": "600"}),
        '{"AccessToken": ' + NESTED + "}",
        NESTED,
        "<html>captive portal</html>",
        json.dumps({"Expires": "600"}),
    ],
)
@pytest.mark.asyncio
async def test_garbage_from_the_token_endpoint_means_not_sent(answer: str) -> None:
    async with serve({TOKEN_PATH: json_text(answer), VOICE_PATH: json_text("{}")}) as (
        server,
        aicc,
    ):
        with pytest.raises((AICCAuthError, AICCConnectionError)) as caught:
            await notify(aicc)
    assert not isinstance(caught.value, AICCOutcomeUnknownError)
    assert "not sent" in str(caught.value)
    assert "X-Evil" not in str(caught.value)
    assert server.received[VOICE_PATH] == 0


@pytest.mark.asyncio
async def test_infinite_number_in_a_result_does_not_escape() -> None:
    body = '{"retCode": "0", "result": {"devType": 0, "skillId": Infinity, "called": "1"}}'
    async with serve({CALLED_INFO_PATH: json_text(body)}) as (_server, aicc):
        info = await aicc.mobile_agent.get_called_info("1", "2")
    assert info.skill_id is None
    assert info.called == "1"


# -- 6. cleartext URLs are refused ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "http://aicc.example.com"},
        {"base_url": "https://aicc.example.com", "token_url": "http://aicc.example.com:28070"},
    ],
)
def test_non_loopback_http_is_refused_unless_opted_in(kwargs: dict[str, str]) -> None:
    with pytest.raises(AICCValidationError, match="allow_insecure_http"):
        AICCClient(app_key="k", app_secret="s", **kwargs)  # type: ignore[arg-type]
    client = AICCClient(app_key="k", app_secret="s", allow_insecure_http=True, **kwargs)  # type: ignore[arg-type]
    assert client.config.allow_insecure_http is True


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:1"])
def test_loopback_http_is_accepted(url: str) -> None:
    assert AICCClient(url, "k", "s").config.base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://admin:hunter2-pw@aicc.example.com",
        "http//admin:hunter2-pw@aicc.example.com",
        "https://admin:hunter2-pw@aicc.example.com",
        "https://admin:hunter2-pw@[bad",
    ],
)
def test_a_malformed_url_never_echoes_its_password(url: str) -> None:
    with pytest.raises(AICCValidationError) as caught:
        AICCClient(url, "k", "s")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(AICCValidationError) as caught:
        AICCClient("https://aicc.example.com", "k", "s", token_url=url)
    assert "hunter2" not in str(caught.value)


# -- 7. token lifetimes: one parse, a floor -------------------------------------------------


@pytest.mark.parametrize("expires", ["0.01", 0.01, 0, "0", "5", -600, "abc", "nan", True])
@pytest.mark.asyncio
async def test_unusable_token_lifetimes_are_refused(expires: Any) -> None:
    ok = json_text(json.dumps({"retCode": "0", "result": {"callSerialNo": "1"}}))
    async with serve({TOKEN_PATH: token(expires=expires), VOICE_PATH: ok}) as (server, aicc):
        with pytest.raises(AICCAuthError, match="lifetime") as caught:
            await notify(aicc)
    assert "not sent" in str(caught.value)
    assert server.received[VOICE_PATH] == 0
    assert server.received[TOKEN_PATH] == 1


@pytest.mark.parametrize(
    ("expires", "lifetime"), [("600", 600.0), (600, 600.0), (" 300 ", 300.0), (None, 600.0)]
)
@pytest.mark.asyncio
async def test_usable_token_lifetimes_parse_one_way(expires: Any, lifetime: float) -> None:
    ok = json_text(json.dumps({"retCode": "0", "result": {"callSerialNo": "1"}}))
    async with serve({TOKEN_PATH: token(expires=expires), VOICE_PATH: ok}) as (server, aicc):
        for _ in range(3):
            await notify(aicc)
        current = aicc._transport.tokens.current
    assert current is not None
    assert current.lifetime == lifetime
    assert server.received[TOKEN_PATH] == 1


# -- 8. a dead token endpoint fails all waiting callers together ----------------------------


@pytest.mark.asyncio
async def test_dead_token_endpoint_fails_every_caller_with_one_fetch(fake_aicc: FakeAICC) -> None:
    fake_aicc.inject(Fault.HTML_502, times=1000, endpoint="tokenByAkSk")
    async with fake_aicc.client(retry=FAST, limits={"voice_notification": 10}) as aicc:
        results = await asyncio.gather(*(notify(aicc) for _ in range(100)), return_exceptions=True)

    assert all(type(r) is AICCConnectionError for r in results)
    assert fake_aicc.token_requests == FAST.max_attempts  # one fetch, its retries
    assert fake_aicc.received(VOICE) == []


# -- 9. max_elapsed follows the monotonic clock, not the wall clock -------------------------


@pytest.mark.asyncio
async def test_wall_clock_step_does_not_cut_retries(
    fake_aicc: FakeAICC, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = [real_datetime.timedelta(0)]

    class SteppingClock(real_datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            now = real_datetime.datetime.now(tz) + step[0]
            step[0] = real_datetime.timedelta(hours=1)  # the wall clock jumps an hour ahead
            return now

    monkeypatch.setattr(backoff._async, "datetime", types.SimpleNamespace(datetime=SteppingClock))
    policy = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.002, max_elapsed=60)
    fake_aicc.inject(Fault.HTML_502, times=9, endpoint="getCalledInfo")
    fake_aicc.called_parties = {}
    async with fake_aicc.client(retry=policy, timeout=Timeout(total=5, connect=1)) as aicc:
        with pytest.raises(AICCBusinessError):  # answered at last: not configured
            await aicc.mobile_agent.get_called_info("6666614", "8888888")
    assert len(fake_aicc.received("getCalledInfo")) == 10
