"""Write-back, mobile agent and messaging against FakeAICC: the retry table rows and
the ccmessaging-token life cycle."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.abc
import pytest

from aicc_async import (
    AICCBusinessError,
    AICCClient,
    AICCConnectionError,
    AICCOutcomeUnknownError,
    DevType,
    RetryPolicy,
    Timeout,
)
from aicc_async.auth import MessagingTokenCache
from aicc_async.testing import CalledParty, FakeAICC, Fault

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.05, max_elapsed=5)
ENDPOINT_PATHS = {
    "midresult": "/rest/isales/v1/openapi/obs/business/push/midresult",
    "getCalledInfo": "/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo",
    "createcall": "/apiaccess/ccmessaging/v1/mobileagent/createcall",
    "doLeaveMessage": "/apiaccess/ccmessaging/doLeaveMessage",
}
AMBIGUOUS = [Fault.RESET_AFTER_PROCESSING, Fault.HANG, Fault.HTML_502, Fault.HTML_504]


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    options: dict[str, Any] = {
        "retry": FAST,
        "timeout": Timeout(total=0.5, connect=0.25),
        "messaging_channel_id": "web-channel",
    }
    return fake.client(**{**options, **kwargs})


def write_back(aicc: AICCClient) -> Awaitable[Any]:
    return aicc.outbound.write_back_result(1, 88, "21713676089219765504", "1251250797")


def called_info(aicc: AICCClient) -> Awaitable[Any]:
    return aicc.mobile_agent.get_called_info("6666614", "8888888")


def create_call(aicc: AICCClient) -> Awaitable[Any]:
    return aicc.mobile_agent.create_call("88884432", "95599", call_data="1")


def leave_message(aicc: AICCClient) -> Awaitable[Any]:
    return aicc.messaging.leave_message("111111222111", "138****7777", "Please reply")


IDEMPOTENT: list[tuple[str, Callable[[AICCClient], Awaitable[Any]]]] = [
    ("midresult", write_back),
    ("getCalledInfo", called_info),
]
NON_IDEMPOTENT: list[tuple[str, Callable[[AICCClient], Awaitable[Any]]]] = [
    ("createcall", create_call),
    ("doLeaveMessage", leave_message),
]


@pytest.fixture
def fake(fake_aicc: FakeAICC) -> FakeAICC:
    fake_aicc.called_parties["6666614"] = CalledParty(
        dev_type=0, called="6666614", skill_id=12, skill_name="VIP"
    )
    return fake_aicc


@pytest.mark.parametrize("fault", AMBIGUOUS)
@pytest.mark.parametrize(("endpoint", "call"), IDEMPOTENT)
@pytest.mark.asyncio
async def test_idempotent_calls_are_resent_after_ambiguous_failures(
    fake: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]], fault: Fault
) -> None:
    fake.inject(fault, endpoint=endpoint)
    async with client(fake) as aicc:
        await call(aicc)
    assert len(fake.received(endpoint)) == 2
    assert len(fake.processed(endpoint)) >= 1


@pytest.mark.parametrize("fault", AMBIGUOUS)
@pytest.mark.parametrize(("endpoint", "call"), NON_IDEMPOTENT)
@pytest.mark.asyncio
async def test_non_idempotent_calls_are_sent_once(
    fake: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]], fault: Fault
) -> None:
    fake.inject(fault, endpoint=endpoint)
    async with client(fake) as aicc:
        with pytest.raises(AICCOutcomeUnknownError) as caught:
            await call(aicc)
    assert caught.value.endpoint == endpoint
    assert len(fake.received(endpoint)) == 1


@pytest.mark.parametrize(("endpoint", "call"), NON_IDEMPOTENT)
@pytest.mark.asyncio
async def test_non_idempotent_calls_resend_with_retry_unsafe(
    fake: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]]
) -> None:
    fake.inject(Fault.RESET_AFTER_PROCESSING, endpoint=endpoint)
    async with client(fake) as aicc:
        if endpoint == "createcall":
            await aicc.mobile_agent.create_call("88884432", "95599", retry_unsafe=True)
        else:
            await aicc.messaging.leave_message("u1", "1380000", "hi", retry_unsafe=True)
    assert len(fake.processed(endpoint)) == 2


@pytest.mark.parametrize(("endpoint", "call"), IDEMPOTENT + NON_IDEMPOTENT)
@pytest.mark.asyncio
async def test_connection_never_made_is_retried_everywhere(
    fake: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]]
) -> None:
    fake.inject(Fault.HTTP_429, endpoint=endpoint, retry_after=0)
    async with client(fake) as aicc:
        await call(aicc)
    assert len(fake.received(endpoint)) == 2
    assert len(fake.processed(endpoint)) == 1


class _RefuseOnce(aiohttp.abc.AbstractResolver):
    """Resolves every host to FakeAICC, except the first connection made for ``path``:
    to a port where nothing listens, so the kernel refuses it (ECONNREFUSED)."""

    def __init__(self, fake_port: int, dead_port: int, path: str) -> None:
        self.fake_port, self.dead_port, self.path = fake_port, dead_port, path
        self.requested = ""  # the path of the request being connected
        self.refused = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        target = self.fake_port
        if self.requested == self.path and not self.refused:
            self.refused += 1
            target = self.dead_port
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": target,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(("endpoint", "call"), IDEMPOTENT + NON_IDEMPOTENT)
@pytest.mark.asyncio
async def test_refused_connection_is_retried_everywhere(
    fake: FakeAICC, endpoint: str, call: Callable[[AICCClient], Awaitable[Any]]
) -> None:
    path = ENDPOINT_PATHS[endpoint]
    with socket.socket() as dead:  # bound, never listening: connecting to it is refused
        dead.bind(("127.0.0.1", 0))
        resolver = _RefuseOnce(int(fake.url.rsplit(":", 1)[1]), dead.getsockname()[1], path)

        async def on_request_start(
            _s: Any, _c: Any, params: aiohttp.TraceRequestStartParams
        ) -> None:
            resolver.requested = params.url.path

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            aicc = AICCClient(
                f"http://aicc.localhost:{resolver.fake_port}",
                fake.app_key,
                fake.app_secret,
                session=session,
                retry=FAST,
                messaging_channel_id="web-channel",
                allow_insecure_http=True,  # a name, resolved (here by the test's resolver)
            )
            async with aicc:
                await call(aicc)
    assert resolver.refused == 1
    assert len(fake.received(endpoint)) == 1  # the refused attempt never reached AICC
    assert len(fake.processed(endpoint)) == 1


@pytest.mark.asyncio
async def test_write_back_decodes_number_and_string_result(fake: FakeAICC) -> None:
    async with client(fake) as aicc:
        first = await write_back(aicc)
        fake.midresult_result_as_string = True
        second = await write_back(aicc)
    assert first.raw == {"result": 0}
    assert second.raw == {"result": "0"}
    assert fake.write_backs["21713676089219765504"] == 2


@pytest.mark.asyncio
async def test_create_call_result_fields(fake: FakeAICC) -> None:
    async with client(fake) as aicc:
        with_serial = await create_call(aicc)
        fake.omit_call_serial_no = True
        without = await create_call(aicc)
    assert with_serial.call_serial_no
    assert with_serial.sip_service_address == "127.0.0.1:5063"
    assert with_serial.access_code
    assert without.call_serial_no is None
    assert without.access_code


@pytest.mark.asyncio
async def test_called_info_from_configured_data_and_codes(fake: FakeAICC) -> None:
    fake.unobtainable.add("7000")
    async with client(fake) as aicc:
        info = await called_info(aicc)
        with pytest.raises(AICCBusinessError) as unobtainable:
            await aicc.mobile_agent.get_called_info("7000", "8888888")
        with pytest.raises(AICCBusinessError) as unknown:
            await aicc.mobile_agent.get_called_info("7001", "8888888")
    assert info.dev_type is DevType.SKILL_QUEUE
    assert (info.called, info.skill_id, info.skill_name) == ("6666614", 12, "VIP")
    assert unobtainable.value.code == "4"
    assert unknown.value.code == "5"


@pytest.mark.asyncio
async def test_leave_message_failure_code_13(fake: FakeAICC) -> None:
    fake.leave_message_fails = True
    async with client(fake) as aicc:
        with pytest.raises(AICCBusinessError) as caught:
            await leave_message(aicc)
    assert caught.value.code == "13"
    assert len(fake.received("doLeaveMessage")) == 1


# -- the ccmessaging-token ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_apply_token_for_many_concurrent_messages_of_one_user(fake: FakeAICC) -> None:
    async with client(fake) as aicc:
        await asyncio.gather(
            *(aicc.messaging.leave_message("user-1", "1380000", f"m{n}") for n in range(100))
        )
    assert fake.messaging_token_requests == 1
    assert len(fake.processed("doLeaveMessage")) == 100


@pytest.mark.asyncio
async def test_a_token_per_user(fake: FakeAICC) -> None:
    async with client(fake) as aicc:
        await asyncio.gather(
            *(aicc.messaging.leave_message(f"user-{n % 3}", "1380000", f"m{n}") for n in range(30))
        )
    assert fake.messaging_token_requests == 3
    tokens = {r.headers["ccmessaging-token"] for r in fake.received("doLeaveMessage")}
    assert len(tokens) == 3


@pytest.mark.asyncio
async def test_rejected_messaging_token_is_applied_for_again_and_replayed(fake: FakeAICC) -> None:
    async with client(fake) as aicc:
        await aicc.messaging.leave_message("user-1", "1380000", "first")
        fake.expire_messaging_tokens()
        await aicc.messaging.leave_message("user-1", "1380000", "second")
    assert fake.messaging_token_requests == 2
    assert fake.rejected_messaging_tokens == 1
    assert [r.body["leaveMessage"] for r in fake.processed("doLeaveMessage")] == [
        "first",
        "second",
    ]


@pytest.mark.asyncio
async def test_fresh_token_on_a_response_is_adopted(fake: FakeAICC) -> None:
    fake.rotate_messaging_token = True
    async with client(fake) as aicc:
        await aicc.messaging.leave_message("user-1", "1380000", "first")
        await aicc.messaging.leave_message("user-1", "1380000", "second")
    first, second = (r.headers["ccmessaging-token"] for r in fake.received("doLeaveMessage"))
    assert first != second
    assert fake.messaging_token_requests == 1


@pytest.mark.asyncio
async def test_token_applications_never_wait_for_a_messaging_slot(fake: FakeAICC) -> None:
    fake.chaos(seed=3, probability=1.0, faults=[Fault.LATENCY], delay=0.01)
    async with client(fake, limits={"messaging": 2}) as aicc:
        async with asyncio.timeout(20):
            await asyncio.gather(
                *(aicc.messaging.leave_message(f"user-{n}", "1380000", "hi") for n in range(20))
            )
    assert fake.messaging_token_requests == 20
    assert len(fake.processed("doLeaveMessage")) == 20


@pytest.mark.asyncio
async def test_no_messaging_token_means_not_sent(fake: FakeAICC) -> None:
    fake.inject(Fault.RESET_BEFORE_PROCESSING, times=10, endpoint="applyToken")
    async with client(fake) as aicc:
        with pytest.raises(AICCConnectionError) as caught:
            await leave_message(aicc)
    assert type(caught.value) is AICCConnectionError  # not "outcome unknown"
    assert caught.value.endpoint == "doLeaveMessage"
    assert fake.received("doLeaveMessage") == []


@pytest.mark.asyncio
async def test_refused_token_application_surfaces_its_code(fake: FakeAICC) -> None:
    fake.messaging_channels = {"another-channel"}
    async with client(fake) as aicc:
        with pytest.raises(AICCBusinessError) as caught:
            await leave_message(aicc)
    assert (caught.value.endpoint, caught.value.code) == ("applyToken", "1")
    assert fake.received("doLeaveMessage") == []


@pytest.mark.asyncio
async def test_gateway_errors_on_token_application_mean_not_sent(fake: FakeAICC) -> None:
    fake.inject(Fault.HTML_502, times=10, endpoint="applyToken")
    async with client(fake) as aicc:
        with pytest.raises(AICCConnectionError) as caught:
            await leave_message(aicc)
    assert type(caught.value) is AICCConnectionError
    assert "doLeaveMessage was not sent" in str(caught.value)
    assert fake.received("doLeaveMessage") == []


@pytest.mark.asyncio
async def test_messaging_token_cache_is_bounded() -> None:
    applied: list[str] = []

    async def apply(user_id: str) -> str:
        applied.append(user_id)
        return f"t-{user_id}"

    cache = MessagingTokenCache(apply, clock=lambda: 0.0, max_users=3)
    for user in ["a", "b", "c", "a", "d"]:  # "b" is the least recently used when "d" comes
        await cache.get(user)
    assert len(cache) == 3
    await cache.get("b")
    assert applied == ["a", "b", "c", "d", "b"]
    await cache.close()
    assert len(cache) == 0


@pytest.mark.asyncio
async def test_outbound_group_is_throttled(fake: FakeAICC) -> None:
    fake.chaos(seed=1, probability=1.0, faults=[Fault.LATENCY], delay=0.003)
    async with client(fake, limits={"outbound": 3}) as aicc:
        await asyncio.gather(
            *(aicc.outbound.write_back_result(1, 88, f"u{n}", "s") for n in range(60))
        )
    assert fake.max_in_flight == 3


@pytest.mark.asyncio
async def test_close_while_waiting_for_a_messaging_token_is_not_sent(fake: FakeAICC) -> None:
    fake.inject(Fault.HANG, endpoint="applyToken")
    aicc = client(fake)
    call = asyncio.ensure_future(leave_message(aicc))
    async with asyncio.timeout(5):
        while fake.messaging_token_requests == 0:  # noqa: ASYNC110 - FakeAICC's counter
            await asyncio.sleep(0.001)
    await aicc.close()

    with pytest.raises(AICCConnectionError, match="closed"):
        await call
    assert fake.received("doLeaveMessage") == []
