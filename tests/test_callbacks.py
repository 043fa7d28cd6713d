"""Release-event callbacks: the signature, ReleaseEvent, and CallbackReceiver over real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

import aicc_async
from aicc_async import AICCValidationError, CallbackReceiver, ReleaseEvent
from aicc_async.callbacks import CallbackResponse, compute_signature, verify_signature

KEY = "0123456789abcdef"
NOW = 1_700_000_000.0
SERIAL = "1182700000000001"
CALLED = "88880000"
FULL_BODY: Mapping[str, str] = {
    "callSerialNo": SERIAL,
    "called": CALLED,
    "callerPresent": "4001",
    "createCallTime": "2022/02/17,13:10:06:836",
    "alertingTime": "2022/02/17,13:10:08:100",
    "talkingTime": "2022/02/17,13:10:10:000",
    "releaseTime": "2022/02/17,13:10:40:002",
    "talkDuration": "30",
    "recordfile": "/rec/1.wav",
    "locationId": "0",
    "releaseReason": "0",
}
OK = {"retCode": "0", "retMsg": "success"}


# --------------------------------------------------------------------------- signature
# The expected values were computed outside the code under test, with
#   printf '%s' "$STRING" | openssl dgst -sha256 -hmac "$KEY" -binary | base64


def test_signature_matches_a_vector_computed_by_hand() -> None:
    # 0123456789abcdef_1700000000_n0nce_callSerialNo=1182700000000001,called=88880000
    fields = {"called": CALLED, "callSerialNo": SERIAL}
    assert (
        compute_signature(fields, KEY, "1700000000", "n0nce")
        == "SfjPhr1R5FNxskU+dZ7OKzZmyOcOdy5TPVFLJujcQA4="
    )


def test_signature_covers_every_documented_field() -> None:
    # 0123456789abcdef_1700000000_abc123_alertingTime=2022/02/17,13:10:08:100,callSerialNo=...,
    # called=...,callerPresent=4001,createCallTime=...,locationId=0,recordfile=/rec/1.wav,
    # releaseReason=0,releaseTime=...,talkDuration=30,talkingTime=2022/02/17,13:10:10:000
    expected = "KjGmRp9bRETM39hCRmn3H9HRHGVPUxbDB9M3t94Yy0I="
    assert compute_signature(FULL_BODY, KEY, "1700000000", "abc123") == expected
    for name in FULL_BODY:
        tampered = {**FULL_BODY, name: FULL_BODY[name] + "1"}
        assert compute_signature(tampered, KEY, "1700000000", "abc123") != expected, name
        missing = {k: v for k, v in FULL_BODY.items() if k != name}
        assert compute_signature(missing, KEY, "1700000000", "abc123") != expected, name


def test_signature_renders_numbers_booleans_and_null_as_json_text() -> None:
    # 0123456789abcdef_1700000000_abc123_a=1,b=2,c=true,d=false,e=null,f=1.5
    fields = {"f": 1.5, "e": None, "d": False, "c": True, "b": "2", "a": 1}
    expected = "yQNuIoBullMDrx8ItTKgO5or/R8zmXKggHVIC7F0snI="
    assert compute_signature(fields, KEY, 1700000000, "abc123") == expected


def test_signature_leaves_out_timestamp_nonce_and_signature_fields() -> None:
    body = {
        "called": CALLED,
        "callSerialNo": SERIAL,
        "timestamp": "1700000000",
        "nonce": "n0nce",
        "signature": "whatever",
    }
    expected = "SfjPhr1R5FNxskU+dZ7OKzZmyOcOdy5TPVFLJujcQA4="
    assert compute_signature(body, KEY, "1700000000", "n0nce") == expected


def test_signature_with_a_millisecond_timestamp() -> None:
    # 0123456789abcdef_1700000000123_n0nce_callSerialNo=1182700000000001,called=88880000
    fields = {"callSerialNo": SERIAL, "called": CALLED}
    expected = "fmzfLflkfuuEGddyS3LyEHo7KEuwFRKEcZRFyodx6pA="
    assert compute_signature(fields, KEY, "1700000000123", "n0nce") == expected
    assert compute_signature(fields, KEY, 1700000000123, "n0nce") == expected


def signed(
    fields: Mapping[str, Any],
    *,
    key: str = KEY,
    timestamp: str = str(int(NOW)),
    nonce: str = "nonce-1",
) -> dict[str, Any]:
    body = {**fields, "timestamp": timestamp, "nonce": nonce}
    body["signature"] = compute_signature(body, key, timestamp, nonce)
    return body


def test_verify_signature_accepts_the_body_as_signed_and_reordered() -> None:
    body = signed(FULL_BODY)
    assert verify_signature(body, KEY)
    reordered = dict(reversed(list(body.items())))
    assert list(reordered) != list(body)
    assert verify_signature(reordered, KEY)
    # And the same body reordered on the wire still hashes the same.
    assert verify_signature(json.loads(json.dumps(reordered)), KEY)


@pytest.mark.parametrize(
    "change",
    [
        {"called": "88880001"},
        {"talkDuration": "31"},
        {"extra": "x"},
        {"timestamp": str(int(NOW) + 1)},
        {"nonce": "nonce-2"},
        {"signature": "AAAA"},
        {"signature": 5},
    ],
)
def test_verify_signature_refuses_a_tampered_body(change: Mapping[str, Any]) -> None:
    assert not verify_signature({**signed(FULL_BODY), **change}, KEY)


def test_verify_signature_refuses_another_key_and_missing_parts() -> None:
    body = signed(FULL_BODY)
    assert not verify_signature(body, KEY + "x")
    assert not verify_signature(body, "fedcba9876543210")
    for name in ("timestamp", "nonce", "signature"):
        assert not verify_signature({k: v for k, v in body.items() if k != name}, KEY)


# --------------------------------------------------------------------------- ReleaseEvent


def test_release_event_reads_every_documented_field() -> None:
    event = ReleaseEvent.from_body({**FULL_BODY, "somethingNew": [1, 2]})
    assert event.call_serial_no == SERIAL
    assert event.called == CALLED
    assert event.caller_present == "4001"
    assert event.create_call_time == datetime(2022, 2, 17, 13, 10, 6, 836_000)
    assert event.alerting_time == datetime(2022, 2, 17, 13, 10, 8, 100_000)
    assert event.talking_time == datetime(2022, 2, 17, 13, 10, 10)
    assert event.release_time == datetime(2022, 2, 17, 13, 10, 40, 2_000)
    assert event.talk_duration == 30
    assert event.record_file == "/rec/1.wav"
    assert event.location_id == "0"
    assert event.release_reason == "0"
    assert event.release_reason_meaning == "the called party hung up after the call was connected"
    assert event.answered
    assert event.raw["somethingNew"] == [1, 2]
    assert event.raw["recordfile"] == "/rec/1.wav"


def test_release_event_optional_fields_default_to_none() -> None:
    event = ReleaseEvent.from_body({"callSerialNo": SERIAL, "called": CALLED})
    assert event.caller_present is None
    assert event.create_call_time is None
    assert event.talking_time is None
    assert event.talk_duration is None
    assert event.record_file is None
    assert event.release_reason is None
    assert event.release_reason_meaning is None
    assert not event.answered


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2022/13/17,13:10:06:836",
        "2022/02/30,13:10:06:836",
        "2022/02/17,25:10:06:836",
        "2022-02-17 13:10:06",
        "2022/02/17,13:10:06:8361",
        17,
        1.5,
        True,
        None,
        [],
        {"a": 1},
    ],
)
def test_an_unparseable_time_is_none(value: Any) -> None:
    body = {"callSerialNo": SERIAL, "called": CALLED}
    body.update({n: value for n in ("createCallTime", "alertingTime", "releaseTime")})
    event = ReleaseEvent.from_body(body)
    assert event.create_call_time is None
    assert event.alerting_time is None
    assert event.release_time is None


def test_times_without_milliseconds_or_with_short_milliseconds() -> None:
    event = ReleaseEvent.from_body(
        {
            "callSerialNo": SERIAL,
            "called": CALLED,
            "createCallTime": "2022/02/17,13:10:06",
            "releaseTime": " 2022/2/7,3:01:06:5 ",
        }
    )
    assert event.create_call_time == datetime(2022, 2, 17, 13, 10, 6)
    assert event.release_time == datetime(2022, 2, 7, 3, 1, 6, 5_000)


@pytest.mark.parametrize("odd", [None, True, 12, 1.5, [], ["x"], {"a": {"b": 1}}, "x" * 500])
def test_odd_values_in_any_field_never_raise(odd: Any) -> None:
    body: dict[str, Any] = {name: odd for name in FULL_BODY}
    body.update(callSerialNo=SERIAL, called=CALLED)
    event = ReleaseEvent.from_body(body)
    assert event.call_serial_no == SERIAL
    assert event.raw is body
    assert event.talking_time is None
    assert isinstance(event.answered, bool)
    assert event.talk_duration is None or isinstance(event.talk_duration, int)


@pytest.mark.parametrize(
    ("fields", "answered"),
    [
        ({"talkingTime": "2022/02/17,13:10:10:000"}, True),
        ({"talkingTime": "not a time"}, True),
        ({"talkDuration": "12"}, True),
        ({"talkDuration": 3}, True),
        ({"talkingTime": "", "talkDuration": "0"}, False),
        ({"talkingTime": None, "talkDuration": "abc"}, False),
        ({"talkDuration": "-5"}, False),
        ({}, False),
    ],
)
def test_answered_means_a_talking_time_or_a_positive_talk_duration(
    fields: Mapping[str, Any], answered: bool
) -> None:
    event = ReleaseEvent.from_body({"callSerialNo": SERIAL, "called": CALLED, **fields})
    assert event.answered is answered


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("1", "the notification finished playing and the call was released"),
        ("4", "the called party rejected the call or did not answer while ringing"),
        (4, "the called party rejected the call or did not answer while ringing"),
        ("6", "the call failed before ringing"),
        ("12345", None),
    ],
)
def test_release_reason_meaning(code: Any, meaning: str | None) -> None:
    event = ReleaseEvent.from_body(
        {"callSerialNo": SERIAL, "called": CALLED, "releaseReason": code}
    )
    assert event.release_reason == str(code)
    assert event.release_reason_meaning == meaning


def test_release_event_is_frozen_and_its_repr_hides_the_number() -> None:
    event = ReleaseEvent.from_body(dict(FULL_BODY))
    with pytest.raises(AttributeError):
        event.called = "1"  # type: ignore[misc]
    assert CALLED not in repr(event)
    assert SERIAL in repr(event)


# --------------------------------------------------------------------------- receiver setup


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Sink:
    """on_event that records what it was handed; can be told to fail or to block."""

    def __init__(self) -> None:
        self.events: list[ReleaseEvent] = []
        self.fail = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, event: ReleaseEvent) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database is down")
        self.events.append(event)

    @property
    def serials(self) -> list[str]:
        return [e.call_serial_no for e in self.events]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink() -> Sink:
    return Sink()


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


Factory = Callable[..., Awaitable[tuple[TestClient[Any, Any], CallbackReceiver]]]


@pytest_asyncio.fixture
async def serve(clock: Clock, sink: Sink) -> AsyncIterator[Factory]:
    """Start a receiver app on 127.0.0.1; returns (client, receiver)."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**kwargs: Any) -> tuple[TestClient[Any, Any], CallbackReceiver]:
        kwargs.setdefault("shared_key", KEY)
        kwargs.setdefault("clock", clock)
        receiver = CallbackReceiver(on_event=sink, **kwargs)
        # Mounted in the user's own app, next to another route.
        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_post("/aicc/release", receiver.handle)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, receiver

    yield start
    for client in clients:
        await client.close()


async def post(client: TestClient[Any, Any], body: Any, **kwargs: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post("/aicc/release", data=data, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


# --------------------------------------------------------------------------- receiver


def test_receiver_is_exported_from_the_package() -> None:
    for name in ("CallbackReceiver", "ReleaseEvent", "compute_signature", "verify_signature"):
        assert name in aicc_async.__all__
        assert getattr(aicc_async, name) is getattr(aicc_async.callbacks, name)


@pytest.mark.asyncio
async def test_a_valid_event_is_delivered_once(serve: Factory, sink: Sink) -> None:
    client, _ = await serve()
    assert await post(client, signed(FULL_BODY)) == (200, OK)
    assert sink.serials == [SERIAL]
    event = sink.events[0]
    assert event.answered
    assert event.raw["signature"]
    assert event.talk_duration == 30


@pytest.mark.asyncio
async def test_a_replayed_body_is_acknowledged_but_not_delivered_again(
    serve: Factory, sink: Sink
) -> None:
    client, _ = await serve()
    body = signed(FULL_BODY)
    for _ in range(3):
        assert await post(client, body) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_a_redelivery_with_a_new_nonce_is_acknowledged_but_not_delivered_again(
    serve: Factory, sink: Sink, clock: Clock
) -> None:
    client, _ = await serve()
    assert await post(client, signed(FULL_BODY, nonce="a")) == (200, OK)
    clock.now += 60
    later = signed(FULL_BODY, nonce="b", timestamp=str(int(clock.now)))
    assert await post(client, later) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_a_reused_nonce_with_another_serial_is_not_delivered(
    serve: Factory, sink: Sink
) -> None:
    client, _ = await serve()
    assert await post(client, signed(FULL_BODY, nonce="same")) == (200, OK)
    other = signed({**FULL_BODY, "callSerialNo": "2"}, nonce="same")
    assert await post(client, other) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_different_serials_are_each_delivered(serve: Factory, sink: Sink) -> None:
    client, _ = await serve()
    for n in range(5):
        body = signed({**FULL_BODY, "callSerialNo": str(n)}, nonce=f"n{n}")
        assert await post(client, body) == (200, OK)
    assert sink.serials == ["0", "1", "2", "3", "4"]


async def refused(client: TestClient[Any, Any], body: Any, **kwargs: Any) -> tuple[int, str]:
    status, answer = await post(client, body, **kwargs)
    assert 400 <= status < 500
    assert answer["retCode"] != "0"
    assert answer["retMsg"]
    return status, answer["retCode"]


@pytest.mark.asyncio
async def test_forged_and_tampered_bodies_are_refused(serve: Factory, sink: Sink) -> None:
    client, _ = await serve()
    forged = signed(FULL_BODY, key="fedcba9876543210")
    tampered = {**signed(FULL_BODY), "talkDuration": "999"}
    garbage = {**signed(FULL_BODY), "signature": "not base64 at all"}
    wrong_type = {**signed(FULL_BODY), "signature": 123}
    codes = {await refused(client, b) for b in (forged, tampered, garbage, wrong_type)}
    assert codes == {(401, "4")}
    assert sink.events == []


@pytest.mark.asyncio
async def test_an_unsigned_event_is_refused_when_a_key_is_set(serve: Factory, sink: Sink) -> None:
    client, _ = await serve()
    assert await refused(client, dict(FULL_BODY)) == (401, "3")
    no_nonce = {k: v for k, v in signed(FULL_BODY).items() if k != "nonce"}
    assert await refused(client, no_nonce) == (401, "5")
    no_timestamp = {k: v for k, v in signed(FULL_BODY).items() if k != "timestamp"}
    assert await refused(client, no_timestamp) == (401, "5")
    assert sink.events == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "timestamp",
    [
        str(int(NOW) - 301),
        str(int(NOW) + 301),
        str(int(NOW * 1000) - 301_000),
        str(int(NOW * 1000) + 301_000),
        "0",
        "yesterday",
        "",
        "1.7e9",
    ],
)
async def test_a_stale_or_unreadable_timestamp_is_refused(
    serve: Factory, sink: Sink, timestamp: str
) -> None:
    client, _ = await serve()
    status, code = await refused(client, signed(FULL_BODY, timestamp=timestamp))
    assert (status, code) == (401, "6")
    assert sink.events == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "timestamp",
    [
        str(int(NOW)),
        str(int(NOW) - 300),
        str(int(NOW) + 300),
        str(int(NOW * 1000)),
        str(int(NOW * 1000) - 299_999),
        str(int(NOW * 1000) + 300_000),
    ],
)
async def test_timestamps_in_seconds_or_milliseconds_within_tolerance_are_accepted(
    serve: Factory, sink: Sink, timestamp: str
) -> None:
    client, _ = await serve()
    assert await post(client, signed(FULL_BODY, timestamp=timestamp)) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_a_numeric_timestamp_is_accepted(serve: Factory, sink: Sink) -> None:
    client, _ = await serve(tolerance=10)
    body: dict[str, Any] = {**FULL_BODY, "timestamp": int(NOW * 1000), "nonce": "n"}
    body["signature"] = compute_signature(body, KEY, body["timestamp"], "n")
    assert await post(client, body) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_unsigned_events_without_a_key_need_an_explicit_opt_in(
    serve: Factory, sink: Sink
) -> None:
    strict, _ = await serve(shared_key=None)
    assert await refused(strict, dict(FULL_BODY)) == (403, "7")
    assert sink.events == []
    lenient, _ = await serve(shared_key=None, allow_unsigned=True)
    assert await post(lenient, dict(FULL_BODY)) == (200, OK)
    assert await post(lenient, dict(FULL_BODY)) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_unsigned_mode_still_refuses_a_stale_timestamp(serve: Factory, sink: Sink) -> None:
    client, _ = await serve(shared_key=None, allow_unsigned=True)
    stale = {**FULL_BODY, "timestamp": str(int(NOW) - 3600)}
    assert await refused(client, stale) == (401, "6")
    assert sink.events == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "1"),
        (b"", "1"),
        (b"\xff\xfe\x00garbage", "1"),
        (b"[" * 50_000, "1"),
        (b'[{"callSerialNo": "1", "called": "2"}]', "1"),
        (b'"a string"', "1"),
        (b"null", "1"),
        (b'{"called": "88880000"}', "2"),
        (b'{"callSerialNo": "1"}', "2"),
        (b'{"callSerialNo": "", "called": "88880000"}', "2"),
        (b'{"callSerialNo": {"a": 1}, "called": "88880000"}', "2"),
        (b'{"callSerialNo": "1", "called": true}', "2"),
        (b'{"callSerialNo": "1", "called": null}', "2"),
    ],
)
async def test_malformed_bodies_are_refused(
    serve: Factory, sink: Sink, body: bytes, code: str
) -> None:
    client, _ = await serve(shared_key=None, allow_unsigned=True)
    assert await refused(client, body) == (400, code)
    assert sink.events == []


@pytest.mark.asyncio
async def test_a_signed_body_missing_its_required_fields_is_refused(
    serve: Factory, sink: Sink
) -> None:
    client, _ = await serve()
    assert await refused(client, signed({"called": CALLED})) == (400, "2")
    assert sink.events == []


def oversized_body() -> bytes:
    body = json.dumps(signed({**FULL_BODY, "padding": "x" * 2000})).encode()
    assert len(body) > 1024
    return body


@pytest.mark.asyncio
async def test_an_oversized_body_with_content_length_is_refused(serve: Factory, sink: Sink) -> None:
    client, _ = await serve(max_body=1024)
    assert await refused(client, oversized_body()) == (413, "8")
    assert sink.events == []


@pytest.mark.asyncio
async def test_an_oversized_chunked_body_is_refused(serve: Factory, sink: Sink) -> None:
    client, _ = await serve(max_body=1024)
    data = oversized_body()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    async with client.post("/aicc/release", data=chunks()) as resp:
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status == 413
        assert (await resp.json())["retCode"] == "8"
    assert sink.events == []


@pytest.mark.asyncio
async def test_a_body_exactly_at_the_cap_is_accepted(serve: Factory, sink: Sink) -> None:
    body = json.dumps(signed(FULL_BODY)).encode()
    client, _ = await serve(max_body=len(body))
    assert await post(client, body) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_the_handler_reads_at_most_max_body_plus_one_bytes(sink: Sink) -> None:
    receiver = CallbackReceiver(KEY, sink, max_body=1024)
    payload = StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
    total = 100_000
    payload.feed_data(b"{" + b" " * (total - 1))
    payload.feed_eof()
    request = make_mocked_request("POST", "/aicc/release", payload=payload)
    response = await receiver.handle(request)
    assert response.status == 413
    unread = len(await payload.read())
    assert total - unread == 1024 + 1
    assert sink.events == []


@pytest.mark.asyncio
async def test_a_failing_on_event_answers_5xx_and_a_later_delivery_succeeds(
    serve: Factory, sink: Sink
) -> None:
    client, _ = await serve()
    sink.fail = 1
    body = signed(FULL_BODY)
    status, answer = await post(client, body)
    assert status == 500
    assert answer["retCode"] == "9"
    assert sink.events == []
    # AICC retries the very same body: the nonce was not remembered either.
    assert await post(client, body) == (200, OK)
    assert await post(client, body) == (200, OK)
    assert sink.serials == [SERIAL]


def encoded(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.asyncio
async def test_concurrent_duplicates_are_delivered_once(sink: Sink, clock: Clock) -> None:
    receiver = CallbackReceiver(KEY, sink, clock=clock)
    sink.gate = asyncio.Event()
    first = asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce="a"))))
    await sink.entered.wait()
    # Both reach the receiver while the first is still inside on_event.
    second = asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce="b"))))
    third = asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce="a"))))
    await asyncio.sleep(0)
    assert not second.done()
    assert not third.done()
    sink.gate.set()
    answers = await asyncio.gather(first, second, third)
    assert [(r.status, r.json) for r in answers] == [(200, OK)] * 3
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_a_concurrent_duplicate_delivers_when_the_first_attempt_fails(
    sink: Sink, clock: Clock
) -> None:
    receiver = CallbackReceiver(KEY, sink, clock=clock)
    sink.gate = asyncio.Event()
    sink.fail = 1
    first = asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce="a"))))
    await sink.entered.wait()
    second = asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce="b"))))
    await asyncio.sleep(0)
    assert not second.done()
    sink.gate.set()
    one, two = await asyncio.gather(first, second)
    assert (one.status, one.ret_code) == (500, "9")
    assert (two.status, two.json) == (200, OK)
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_the_seen_hook_acknowledges_events_recorded_elsewhere(
    serve: Factory, sink: Sink
) -> None:
    asked: list[str] = []

    async def seen(serial: str) -> bool:
        asked.append(serial)
        return serial == "1000"

    client, _ = await serve(seen=seen)
    assert await post(client, signed({**FULL_BODY, "callSerialNo": "1000"}, nonce="1")) == (200, OK)
    assert await post(client, signed(FULL_BODY, nonce="2")) == (200, OK)
    assert await post(client, signed(FULL_BODY, nonce="3")) == (200, OK)
    assert sink.serials == [SERIAL]
    assert asked == ["1000", SERIAL]  # a serial delivered here is not asked about again


@pytest.mark.asyncio
async def test_a_failing_seen_hook_answers_5xx_and_delivers_nothing(
    serve: Factory, sink: Sink
) -> None:
    async def seen(serial: str) -> bool:
        raise OSError("journal locked")

    client, _ = await serve(seen=seen)
    status, answer = await post(client, signed(FULL_BODY))
    assert (status, answer["retCode"]) == (500, "10")
    assert sink.events == []


@pytest.mark.asyncio
async def test_memory_of_delivered_serials_is_bounded(serve: Factory, sink: Sink) -> None:
    client, receiver = await serve(max_remembered=2)
    for n in range(3):
        body = signed({**FULL_BODY, "callSerialNo": str(n)}, nonce=f"n{n}")
        assert await post(client, body) == (200, OK)
    assert receiver.remembered == (2, 2)
    # "0" was forgotten (no seen hook): a redelivery is handed on again.
    assert await post(client, signed({**FULL_BODY, "callSerialNo": "0"}, nonce="x")) == (200, OK)
    assert await post(client, signed({**FULL_BODY, "callSerialNo": "2"}, nonce="y")) == (200, OK)
    assert sink.serials == ["0", "1", "2", "0"]


@pytest.mark.asyncio
async def test_nonces_are_forgotten_once_their_timestamp_is_stale(
    serve: Factory, sink: Sink, clock: Clock
) -> None:
    client, receiver = await serve(tolerance=10)
    for n in range(3):
        body = signed({**FULL_BODY, "callSerialNo": str(n)}, nonce=f"n{n}")
        assert await post(client, body) == (200, OK)
    assert receiver.remembered == (3, 3)
    clock.now += 11
    body = signed(FULL_BODY, nonce="late", timestamp=str(int(clock.now)))
    assert await post(client, body) == (200, OK)
    assert receiver.remembered == (1, 4)


@pytest.mark.asyncio
async def test_receiver_app_stands_alone(sink: Sink, clock: Clock) -> None:
    receiver = CallbackReceiver(KEY, sink, clock=clock)
    async with TestClient(TestServer(receiver.app("/hooks/aicc"), host="127.0.0.1")) as client:
        async with client.post("/hooks/aicc", json=signed(FULL_BODY)) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert await resp.json() == OK
        async with client.get("/hooks/aicc") as resp:
            assert resp.status == 405
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_framework_free_entry_point(sink: Sink, clock: Clock) -> None:
    receiver = CallbackReceiver(KEY, sink, clock=clock)
    body = json.dumps(signed(FULL_BODY)).encode()
    response = await receiver.receive(body, "application/json")
    assert isinstance(response, CallbackResponse)
    assert response.status == 200
    assert response.json == OK
    assert json.loads(response.body) == OK
    assert response.content_type == "application/json"
    again = await receiver.receive(body)
    assert again.status == 200
    forged = await receiver.receive(json.dumps(signed(FULL_BODY, key=KEY + "x")).encode())
    assert (forged.status, forged.json["retCode"]) == (401, "4")
    huge = await receiver.receive(b" " * (64 * 1024 + 1))
    assert (huge.status, huge.json["retCode"]) == (413, "8")
    assert sink.serials == [SERIAL]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"shared_key": "short"}, "shared_key"),
        ({"shared_key": "x" * 15}, "shared_key"),
        ({"shared_key": 1234567890123456789}, "shared_key"),
        ({"shared_key": KEY, "allow_unsigned": True}, "allow_unsigned"),
        ({"shared_key": KEY, "on_event": None}, "on_event"),
        ({"shared_key": KEY, "on_event": "print"}, "on_event"),
        ({"shared_key": KEY, "tolerance": 0}, "tolerance"),
        ({"shared_key": KEY, "tolerance": float("nan")}, "tolerance"),
        ({"shared_key": KEY, "max_body": 0}, "max_body"),
        ({"shared_key": KEY, "max_remembered": 0}, "max_remembered"),
        ({"shared_key": KEY, "seen": 3}, "seen"),
    ],
)
def test_bad_receiver_settings_are_refused(kwargs: dict[str, Any], field: str) -> None:
    async def on_event(event: ReleaseEvent) -> None:
        return None

    kwargs.setdefault("on_event", on_event)
    with pytest.raises(AICCValidationError) as info:
        CallbackReceiver(**kwargs)
    assert info.value.field == field
    assert "short" not in str(info.value)


@pytest.mark.asyncio
async def test_the_key_signature_and_full_number_never_reach_the_logs(
    serve: Factory, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aicc_async")
    client, _ = await serve()
    good = signed(FULL_BODY, nonce="g")
    forged = signed({**FULL_BODY, "callSerialNo": "9"}, key="fedcba9876543210", nonce="f")
    await post(client, good)
    await post(client, good)
    await post(client, forged)
    await post(client, dict(FULL_BODY))
    sink.fail = 1
    await post(client, signed({**FULL_BODY, "callSerialNo": "7"}, nonce="h"))
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage()
        assert KEY not in text
        assert good["signature"] not in text
        assert forged["signature"] not in text
        if record.levelno >= logging.INFO:
            assert CALLED not in text


# --------------------------------------------------------------------------- the guide


def test_the_guides_receiver_example_runs_as_pasted() -> None:
    guide = Path(__file__).parent.parent / "docs" / "guides" / "call-outcomes.md"
    section = guide.read_text(encoding="utf-8").split("\n## In an aiohttp app\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    assert match, "no python block under '## In an aiohttp app'"
    done = subprocess.run(
        [sys.executable, "-c", match.group(1)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"\d+ (answered|not answered) \d+ [a-z ]+", line), line


# --------------------------------------------------------------------------- field forms


def resplit(body: Mapping[str, Any], into: str, taken: tuple[str, ...]) -> dict[str, Any]:
    """``body`` re-packed so that the fields ``taken`` ride inside the value of ``into``:
    the signed text is the same, so the signature still holds."""
    repacked = {k: v for k, v in body.items() if k not in taken}
    repacked[into] = ",".join([body[into], *(f"{name}={body[name]}" for name in taken)])
    return repacked


@pytest.mark.asyncio
async def test_a_genuine_event_re_split_under_its_signature_is_refused_and_changes_nothing(
    serve: Factory, sink: Sink
) -> None:
    client, _ = await serve()
    genuine = signed(FULL_BODY)
    # releaseReason=0,releaseTime=...,talkDuration=30,talkingTime=... sort in that order:
    # folding the answered proof into releaseReason keeps the signed text as it was.
    forged = resplit(genuine, "releaseReason", ("releaseTime", "talkDuration", "talkingTime"))
    assert verify_signature(forged, KEY)
    assert not ReleaseEvent.from_body(forged).answered
    assert await refused(client, forged) == (400, "11")
    assert sink.events == []
    # The genuine event is not taken for a replay of the forged one.
    assert await post(client, genuine) == (200, OK)
    assert [e.answered for e in sink.events] == [True]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change",
    [
        {"callSerialNo": "12a"},
        {"callSerialNo": "1" * 51},
        {"called": "8888-0000"},
        {"called": "+86+1"},
        {"callerPresent": "4001,x=1"},
        {"createCallTime": "2022/02/17 13:10:06:836"},
        {"releaseTime": "2022/02/17,13:10:40:002,a=1"},
        {"talkDuration": "30.5"},
        {"talkDuration": "-1"},
        {"releaseReason": "0 "},
        {"locationId": "x"},
        {"recordfile": "/rec/1.wav,x=1"},
        {"recordfile": "/rec/a=1.wav"},
        {"extra": "a,b"},
        {"extra": [1, 2]},
        {"a=1,b": "2"},
    ],
)
async def test_a_field_out_of_its_documented_form_is_refused(
    serve: Factory, sink: Sink, change: Mapping[str, Any]
) -> None:
    client, _ = await serve()
    assert await refused(client, signed({**FULL_BODY, **change})) == (400, "11")
    unsigned, _ = await serve(shared_key=None, allow_unsigned=True)
    assert await refused(unsigned, {**FULL_BODY, **change}) == (400, "11")
    assert sink.events == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "change",
    [
        {"called": "+8613812345678"},
        {"callSerialNo": 1182700000000001, "talkDuration": 30},
        {"talkingTime": "", "talkDuration": "0"},
        {"talkingTime": None},
        {"releaseTime": "2022/02/17,13:10:40"},
        {"extra": "anything else"},
    ],
)
async def test_fields_in_their_documented_forms_are_accepted(
    serve: Factory, sink: Sink, change: Mapping[str, Any]
) -> None:
    client, _ = await serve()
    assert await post(client, signed({**FULL_BODY, **change})) == (200, OK)
    assert len(sink.events) == 1


# --------------------------------------------------------------------------- refusals counted


@pytest.mark.asyncio
async def test_refused_events_are_counted_by_reason_and_handed_to_on_refused(
    serve: Factory, sink: Sink
) -> None:
    told: list[str] = []

    async def on_refused(reason: str) -> None:
        told.append(reason)

    client, receiver = await serve(on_refused=on_refused)
    await refused(client, signed(FULL_BODY, key="fedcba9876543210"))
    await refused(client, dict(FULL_BODY))
    await refused(client, b"not json")
    await refused(client, signed({**FULL_BODY, "talkDuration": "1,x=2"}))
    assert told == ["signature", "unsigned", "malformed", "field form"]
    assert receiver.refused == {"signature": 1, "unsigned": 1, "malformed": 1, "field form": 1}
    assert await post(client, signed(FULL_BODY)) == (200, OK)
    assert len(told) == 4  # an accepted event is no refusal


@pytest.mark.asyncio
async def test_a_wrong_shared_key_shows_after_ten_events_refused_for_their_signature(
    serve: Factory, sink: Sink
) -> None:
    client, receiver = await serve()
    for i in range(9):
        await refused(client, signed(FULL_BODY, key="fedcba9876543210", nonce=f"n{i}"))
    assert not receiver.key_mismatch
    await refused(client, signed(FULL_BODY, key="fedcba9876543210", nonce="n9"))
    assert receiver.key_mismatch


@pytest.mark.asyncio
async def test_one_verified_event_means_the_key_matches(serve: Factory, sink: Sink) -> None:
    client, receiver = await serve()
    assert await post(client, signed(FULL_BODY)) == (200, OK)
    for i in range(20):
        await refused(client, signed(FULL_BODY, key="fedcba9876543210", nonce=f"n{i}"))
    assert not receiver.key_mismatch
    assert receiver.refused == {"signature": 20}


# --------------------------------------------------------------------------- a hanging on_event


@pytest.mark.asyncio
async def test_a_hanging_on_event_is_cut_off_with_a_5xx_so_aicc_delivers_again(
    sink: Sink, clock: Clock
) -> None:
    receiver = CallbackReceiver(KEY, sink, clock=clock, handler_timeout=0.05)
    sink.gate = asyncio.Event()  # on_event hangs
    answer = await asyncio.wait_for(receiver.receive(encoded(signed(FULL_BODY))), 5)
    assert (answer.status, answer.ret_code) == (500, "13")
    sink.gate.set()
    again = await receiver.receive(encoded(signed(FULL_BODY, nonce="again")))
    assert (again.status, again.ret_code) == (200, "0")
    assert sink.serials == [SERIAL]


@pytest.mark.asyncio
async def test_redeliveries_waiting_on_one_serial_are_bounded(sink: Sink, clock: Clock) -> None:
    receiver = CallbackReceiver(KEY, sink, clock=clock, max_waiting=4)
    sink.gate = asyncio.Event()
    first = asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce="first"))))
    await sink.entered.wait()
    redeliveries = [
        asyncio.create_task(receiver.receive(encoded(signed(FULL_BODY, nonce=f"n{i}"))))
        for i in range(200)
    ]
    for _ in range(5):
        await asyncio.sleep(0)
    waiting = [task for task in redeliveries if not task.done()]
    assert len(waiting) == 4
    busy = {(t.result().status, t.result().ret_code) for t in redeliveries if t.done()}
    assert busy == {(503, "12")}  # AICC delivers those again later
    sink.gate.set()
    assert (await first).status == 200
    assert {(await t).status for t in waiting} == {200}
    assert sink.serials == [SERIAL]
