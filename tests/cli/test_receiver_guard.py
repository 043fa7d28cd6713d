"""The release-event receiver of ``aicc listen`` / ``notify --listen`` against slow and
half-open clients: a deadline for headers and body, a cap on open connections, and
accept errors logged once in a while."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
from pathlib import Path

import aiohttp
import pytest
from rich.console import Console

from aicc_async import CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.callbacks import compute_signature
from aicc_async.cli.display import CampaignProgress
from aicc_async.cli.outcomes import receiving
from aicc_async.cli.serving import Served, _Guard, _QuietAccepts

KEY = "a-shared-key-of-32-characters-ok"
HALF = b"POST /aicc/release HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def event(serial: str) -> dict[str, str]:
    fields = {"callSerialNo": serial, "called": "88880001", "releaseReason": "0"}
    timestamp, nonce = str(int(time.time())), f"n-{serial}"
    return {
        **fields,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": compute_signature(fields, KEY, timestamp, nonce),
    }


async def half_sent(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF)
        await writer.drain()
        return reader, writer

    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, n, 100):
        opened += await asyncio.gather(*(one() for _ in range(min(100, n - start))))
    return opened


@pytest.mark.asyncio
async def test_a_flood_of_half_sent_requests_neither_starves_the_receiver_nor_piles_up(
    tmp_path: Path,
) -> None:
    row = CampaignRow(
        key="k0", request=CreateVoiceNotificationRequest(called="88880001", voice_content="$x$")
    )
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load([row])
        before = open_fds()
        async with receiving(
            campaign,
            "127.0.0.1",
            0,
            shared_key=KEY,
            allow_unsigned=False,
            max_connections=64,
            deadline=0.5,
        ) as where:
            flood = await half_sent(where.port, 1100)
            for _ in range(20):  # let the connections closed at the cap go
                await asyncio.sleep(0)
            # The receiver holds at most its cap of them open, whatever the flood.
            server_side = open_fds() - before - len(flood)
            assert server_side <= 64 + 8, server_side
            started = time.monotonic()
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{where.port}/aicc/release", json=event("1")) as r,
            ):
                answer = (r.status, json.loads(await r.text()))
            took = time.monotonic() - started
            # Past the deadline, every half-sent request has been closed by the receiver.
            ended = await asyncio.wait_for(
                asyncio.gather(*(reader.read() for reader, _ in flood)), 5
            )
            for _, writer in flood:
                writer.close()
        outcomes = await campaign.outcomes()
    assert answer == (200, {"retCode": "0", "retMsg": "success"})
    assert took < 2.0, took
    assert all(not data or data.startswith(b"HTTP/1.1 503") for data in ended)
    assert outcomes.unmatched == 1  # the valid event was kept


@pytest.mark.asyncio
async def test_a_body_that_does_not_arrive_in_time_is_answered_408(tmp_path: Path) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        async with receiving(
            campaign, "127.0.0.1", 0, shared_key=KEY, allow_unsigned=False, deadline=0.2
        ) as where:
            reader, writer = await asyncio.open_connection("127.0.0.1", where.port)
            writer.write(
                b"POST /aicc/release HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"callSerialNo"'
            )
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        outcomes = await campaign.outcomes()
    assert answer.startswith(b"HTTP/1.1 408")
    assert outcomes.refused == (("slow body", 1),)


def test_accept_errors_are_logged_once_in_a_while(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    served = Served("127.0.0.1", 1)
    handler = _QuietAccepts(served, 30.0, lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        context = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        with caplog.at_level(logging.ERROR, logger="aicc_async"):
            for _ in range(10_000):
                handler(loop, context)
            now[0] = 31.0
            handler(loop, context)
    finally:
        loop.close()
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(lines) == 2
    assert "9999 time(s)" in lines[1].getMessage() or "10000 time(s)" in lines[1].getMessage()
    assert served.accept_errors == 10_001


def test_the_progress_line_counts_the_refused_events_by_reason() -> None:
    out = io.StringIO()
    refused = {"signature": 3, "stale": 1}
    with CampaignProgress(Console(file=out, width=200), lambda: refused) as progress:
        progress.sending(StateCounts(done=1, pending=2))
    assert "events refused 4 (signature 3, stale 1)" in out.getvalue()


class _StubHandler:
    """What the guard uses of an aiohttp request handler."""

    def __init__(self) -> None:
        self.closed = False
        self.transport: object = None

    def force_close(self) -> None:
        self.closed = True

    def connection_made(self, transport: object) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass


class _StubTransport(asyncio.Transport):
    def is_closing(self) -> bool:
        return False


def test_at_the_cap_the_connection_quiet_longest_is_closed_not_the_oldest() -> None:

    made: list[_StubHandler] = []

    def server() -> _StubHandler:
        made.append(_StubHandler())
        return made[-1]

    now = [0.0]
    guard = _Guard(server, 2, Served("127.0.0.1", 1), lambda: now[0])  # type: ignore[arg-type]
    old, new = guard.protocol(), guard.protocol()
    for connection in (old, new):
        connection.connection_made(_StubTransport())  # type: ignore[arg-type,attr-defined]
    now[0] = 5.0
    old.data_received(b"POST /aicc/release HTTP/1.1\r\n...")  # type: ignore[attr-defined]
    guard.protocol()  # a third connection at the cap of 2
    assert [h.closed for h in made] == [False, True, False]
