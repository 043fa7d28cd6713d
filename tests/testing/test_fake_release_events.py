"""FakeAICC sends release events to a notification's callBackUrl (signed, retried, duplicated)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from fake_http import subprocess_env

from aicc_async import AICCClient, CallbackReceiver, ReleaseEvent, verify_signature
from aicc_async.testing import FakeAICC, SentReleaseEvent
from aicc_async.testing.fake.cli import main

KEY = "fake-callback-key-0123"


PATH = "/aicc/release"


class Receiver:
    """A real CallbackReceiver on 127.0.0.1 that counts what it was handed and answered."""

    def __init__(self, key: str | None = KEY, fail_first: int = 0) -> None:
        self.events: list[ReleaseEvent] = []
        self.bodies: list[Mapping[str, Any]] = []
        self.statuses: Counter[int] = Counter()
        self.fail_first = fail_first
        self.receiver = CallbackReceiver(
            key, self.on_event, allow_unsigned=key is None, max_remembered=100_000
        )
        self.server: TestServer | None = None

    async def on_event(self, event: ReleaseEvent) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("not now")
        self.events.append(event)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.bodies.append(json.loads(raw))
        response = await self.receiver.receive(raw, request.content_type)
        self.statuses[response.status] += 1
        return web.Response(
            status=response.status, body=response.body, content_type=response.content_type
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(PATH))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


async def send(fake: FakeAICC, url: str | None, n: int, first: int = 0) -> list[str]:
    """Send n notifications one after the other; the call serial numbers."""
    serials: list[str] = []
    async with fake.client() as aicc:
        for i in range(first, first + n):
            result = await aicc.voice_notification.create(
                called=f"8888{i:04d}", voice_content="$hi$", callback_url=url
            )
            assert result.call_serial_no is not None
            serials.append(result.call_serial_no)
    return serials


@pytest.mark.asyncio
async def test_every_event_sent_arrives_exactly_once(receiver: Receiver) -> None:
    async with FakeAICC(callback_key=KEY, release_delay=0, answer_rate=0.5) as fake:
        serials = await send(fake, receiver.url, 40)
        await fake.wait_release_events()
        sent = fake.release_events
    assert sorted(s.call_serial_no for s in sent) == sorted(serials)
    assert all(isinstance(s, SentReleaseEvent) and s.delivered for s in sent)
    assert all(s.attempts == 1 and not s.duplicated for s in sent)
    got = {e.call_serial_no: e for e in receiver.events}
    assert len(receiver.events) == len(got) == 40
    for s in sent:
        event = got[s.call_serial_no]
        assert event.answered is s.answered
        assert event.called == s.called
        assert event.release_reason == s.release_reason
    answered = sum(s.answered for s in sent)
    assert 0 < answered < 40
    assert receiver.statuses == Counter({200: 40})


@pytest.mark.asyncio
async def test_events_look_like_aiccs(receiver: Receiver) -> None:
    async with FakeAICC(callback_key=KEY, release_delay=0, answer_rate=0.5) as fake:
        async with fake.client() as aicc:
            for i in range(30):
                await aicc.voice_notification.create(
                    called=f"8888{i:04d}",
                    voice_content="$hi$",
                    caller_present="4001",
                    callback_url=receiver.url,
                )
        await fake.wait_release_events()
    assert len(receiver.bodies) == 30
    for body, event in zip(receiver.bodies, receiver.events, strict=True):
        assert all(isinstance(v, str) for v in body.values())
        assert verify_signature(body, KEY)
        assert len(body["timestamp"]) == 13  # milliseconds
        assert body["callerPresent"] == "4001"
        assert event.create_call_time is not None
        assert event.release_time is not None
        assert event.create_call_time < event.release_time
        assert event.release_reason_meaning is not None
        if event.answered:
            assert event.release_reason in {"0", "1"}
            assert event.talking_time is not None
            assert event.alerting_time is not None
            assert event.create_call_time < event.alerting_time < event.talking_time
            assert event.talk_duration is not None
            assert event.talk_duration > 0
        else:
            assert event.release_reason not in {"0", "1"}
            assert "talkingTime" not in body
            assert body["talkDuration"] == "0"


@pytest.mark.asyncio
async def test_answer_rate_and_seed_are_reproducible(receiver: Receiver) -> None:
    patterns = []
    for _ in range(2):
        async with FakeAICC(callback_key=KEY, release_delay=0, release_seed=7) as fake:
            await send(fake, receiver.url, 20)
            await fake.wait_release_events()
            by_serial = sorted(fake.release_events, key=lambda s: s.call_serial_no)
            patterns.append([(s.answered, s.release_reason) for s in by_serial])
    assert patterns[0] == patterns[1]
    async with FakeAICC(callback_key=KEY, release_delay=0, answer_rate=1.0) as fake:
        await send(fake, receiver.url, 5)
        await fake.wait_release_events()
        assert all(s.answered for s in fake.release_events)
    async with FakeAICC(callback_key=KEY, release_delay=0, answer_rate=0.0) as fake:
        await send(fake, receiver.url, 5)
        await fake.wait_release_events()
        assert not any(s.answered for s in fake.release_events)


@pytest.mark.asyncio
async def test_a_delivery_answered_500_is_retried() -> None:
    receiver = Receiver(fail_first=3)
    await receiver.start()
    try:
        async with FakeAICC(callback_key=KEY, release_delay=0) as fake:
            serials = await send(fake, receiver.url, 3)
            await fake.wait_release_events()
            sent = fake.release_events
            stats = fake.stats()["release_events"]
    finally:
        await receiver.close()
    assert sorted(e.call_serial_no for e in receiver.events) == sorted(serials)
    assert receiver.statuses == Counter({500: 3, 200: 3})
    assert sum(s.attempts for s in sent) == 6
    assert all(s.delivered for s in sent)
    assert stats["attempts"] == 6
    assert stats["delivered"] == 3


@pytest.mark.asyncio
async def test_a_delivery_that_never_gets_200_is_given_up_after_the_retries() -> None:
    receiver = Receiver(fail_first=1000)
    await receiver.start()
    try:
        async with FakeAICC(callback_key=KEY, release_delay=0, release_retries=2) as fake:
            await send(fake, receiver.url, 1)
            await fake.wait_release_events()
            (sent,) = fake.release_events
            stats = fake.stats()["release_events"]
    finally:
        await receiver.close()
    assert not sent.delivered
    assert sent.attempts == 3
    assert receiver.statuses == Counter({500: 3})
    assert receiver.events == []
    assert (stats["failed"], stats["delivered"], stats["pending"]) == (1, 0, 0)


@pytest.mark.asyncio
async def test_an_unreachable_callback_url_is_retried_then_given_up() -> None:
    dead = Receiver()
    await dead.start()
    url = dead.url
    await dead.close()  # nothing listens there any more
    async with FakeAICC(callback_key=KEY, release_delay=0, release_retries=1) as fake:
        await send(fake, url, 1)
        await fake.wait_release_events()
        (sent,) = fake.release_events
    assert (sent.delivered, sent.attempts) == (False, 2)


@pytest.mark.asyncio
async def test_duplicates_are_sent_but_not_delivered_twice(receiver: Receiver) -> None:
    async with FakeAICC(callback_key=KEY, release_delay=0, duplicate_rate=1.0) as fake:
        serials = await send(fake, receiver.url, 10)
        await fake.wait_release_events()
        sent = fake.release_events
        stats = fake.stats()["release_events"]
    assert all(s.duplicated for s in sent)
    assert len(receiver.bodies) == 20
    nonces = Counter(body["nonce"] for body in receiver.bodies)
    assert 10 < len(nonces) < 20  # some exact replays, some re-signed redeliveries
    assert sorted(e.call_serial_no for e in receiver.events) == sorted(serials)
    assert receiver.statuses == Counter({200: 20})
    assert (stats["duplicates"], stats["attempts"], stats["delivered"]) == (10, 20, 10)


@pytest.mark.asyncio
async def test_without_a_callback_key_events_are_unsigned() -> None:
    receiver = Receiver(key=None)
    await receiver.start()
    try:
        async with FakeAICC(release_delay=0) as fake:
            await send(fake, receiver.url, 3)
            await fake.wait_release_events()
    finally:
        await receiver.close()
    assert len(receiver.events) == 3
    for body in receiver.bodies:
        assert not {"signature", "timestamp", "nonce"} & set(body)


@pytest.mark.asyncio
async def test_no_callback_url_means_no_event(receiver: Receiver) -> None:
    async with FakeAICC(callback_key=KEY, release_delay=0) as fake:
        await send(fake, None, 3)
        await send(fake, receiver.url, 1, first=3)
        await fake.wait_release_events()
        assert len(fake.release_events) == 1
        assert fake.stats()["release_events"]["scheduled"] == 1
    assert len(receiver.events) == 1
    assert receiver.events[0].called == "88880003"


@pytest.mark.asyncio
async def test_close_cancels_pending_deliveries_cleanly(receiver: Receiver) -> None:
    fake = FakeAICC(callback_key=KEY, release_delay=3600)
    await fake.start()
    try:
        await send(fake, receiver.url, 3)
        stats = fake.stats()["release_events"]
        assert (stats["scheduled"], stats["pending"]) == (3, 3)
    finally:
        await fake.close()
    stats = fake.stats()["release_events"]
    assert (stats["pending"], stats["cancelled"], stats["attempts"]) == (0, 3, 0)
    assert [s.cancelled for s in fake.release_events] == [True] * 3
    assert receiver.bodies == []


@pytest.mark.asyncio
async def test_stats_route_counts_release_events(receiver: Receiver) -> None:
    async with FakeAICC(callback_key=KEY, release_delay=0, answer_rate=1.0) as fake:
        await send(fake, receiver.url, 4)
        await fake.wait_release_events()
        async with (
            aiohttp.ClientSession() as session,
            session.get(fake.url + "/_fake/stats") as resp,
        ):
            stats = (await resp.json())["release_events"]
    assert stats == {
        "scheduled": 4,
        "pending": 0,
        "delivered": 4,
        "failed": 0,
        "cancelled": 0,
        "answered": 4,
        "not_answered": 0,
        "attempts": 4,
        "duplicates": 0,
    }


@pytest.mark.asyncio
async def test_without_recording_only_counters_are_kept(receiver: Receiver) -> None:
    async with FakeAICC(callback_key=KEY, release_delay=0, record=False) as fake:
        await send(fake, receiver.url, 3)
        await fake.wait_release_events()
        assert fake.release_events == []
        assert fake.stats()["release_events"]["delivered"] == 3
    assert len(receiver.events) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"callback_key": "too short"},
        {"callback_key": ""},
        {"answer_rate": 1.5},
        {"answer_rate": -0.1},
        {"duplicate_rate": 2},
        {"release_delay": -1},
        {"release_delay": float("inf")},
        {"release_retries": -1},
    ],
)
def test_bad_release_options_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FakeAICC(**kwargs)


@pytest.mark.parametrize(
    "argv",
    [
        ["--answer-rate", "1.5"],
        ["--duplicate-rate", "x"],
        ["--release-delay", "-1"],
        ["--callback-key", "short"],
    ],
)
def test_module_refuses_bad_release_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


@pytest.mark.asyncio
async def test_module_sends_signed_release_events_and_counts_them(receiver: Receiver) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aicc_async.testing",
        "--callback-key",
        KEY,
        "--answer-rate",
        "0",
        "--release-delay",
        "0",
        "--duplicate-rate",
        "1",
        stdout=asyncio.subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        client = AICCClient(
            base_url=info["url"], app_key=info["app_key"], app_secret=info["app_secret"]
        )
        async with client as aicc, aiohttp.ClientSession() as session:
            for i in range(3):
                await aicc.voice_notification.create(
                    called=f"8888{i:04d}", voice_content="$hi$", callback_url=receiver.url
                )
            # Poll the control route until the fake says nothing is pending.
            for _ in range(500):
                async with session.get(info["url"] + "/_fake/stats") as resp:
                    stats = (await resp.json())["release_events"]
                if stats["scheduled"] == 3 and stats["pending"] == 0:
                    break
                await asyncio.sleep(0.01)
        assert stats["delivered"] == 3
        assert (stats["answered"], stats["not_answered"], stats["duplicates"]) == (0, 3, 3)
        assert len(receiver.events) == 3
        assert not any(e.answered for e in receiver.events)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
