"""Values and helpers the SDK and campaign tests share (importable from every test
folder: this folder is on ``sys.path`` beside its ``conftest.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from aicc_async import AICCClient, AICCError, RetryPolicy, Timeout, WriteBackResultRequest
from aicc_async.bulk import CampaignRow
from aicc_async.testing import FakeAICC

#: The voice notification interface, as requests and the fake's counters name it.
VOICE = "createVoiceNotification"
#: A retry policy that gives up fast (three attempts, millisecond waits).
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    """A client of ``fake`` with short timeouts and :data:`FAST` retries (``kwargs`` win)."""
    kwargs.setdefault("timeout", Timeout(total=0.5, connect=0.2))
    kwargs.setdefault("retry", FAST)
    return fake.client(**kwargs)


def number(i: int) -> str:
    """The ``i``-th test phone number."""
    return f"8888{i:05d}"


def write_backs(n: int) -> list[CampaignRow]:
    """``n`` write-back rows ``w0``, ``w1``, ... (unique ids ``uid-0``, ``uid-1``, ...)."""
    return [
        CampaignRow(
            key=f"w{i}",
            request=WriteBackResultRequest(
                sub_cc_no=1, vdn_id=2, unique_id=f"uid-{i}", service_id="svc", status="0"
            ),
        )
        for i in range(n)
    ]


def leaks(error: AICCError, *secrets: str) -> list[str]:
    """Every plain or JSON-escaped form of ``secrets`` found in the error's texts."""
    forms = []
    for secret in secrets:
        forms += [secret, json.dumps(secret)[1:-1], json.dumps(secret).replace("/", "\\/")[1:-1]]
    texts = [str(error), repr(error), *(repr(v) for v in vars(error).values())]
    return [form for form in forms for text in texts if form in text]


class FakeClock:
    """A monotonic clock the test moves by hand; shared by client and FakeAICC."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class JumpClock:
    """A wall clock for the dialer (``Campaign.run(clock=...)``) that starts at ``start``
    and runs with the machine's clock, except that a sleep moves it on at once (the run
    waits through calling hours and redial times in milliseconds). Journal stamps stay
    the machine's, so it never runs behind them."""

    def __init__(self, start: datetime.datetime) -> None:
        self.offset = start.timestamp() - time.time()
        self.slept = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.time(), datetime.timezone.utc)

    async def sleep(self, seconds: float) -> None:
        self.offset += seconds
        self.slept += seconds
        await asyncio.sleep(min(seconds, 0.01))  # release events still travel


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on 127.0.0.1 while the block runs; yields its release-event URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/aicc/release"
    finally:
        await runner.cleanup()
