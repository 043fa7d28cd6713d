"""The SDK's own cost against raw aiohttp doing the same wire work.

Starts FakeAICC in its own process, then alternates, in one run, raw aiohttp
(token fetched once by hand, JSON body, headers, JSON decode, retCode check) and
``aicc.voice_notification.create`` at concurrency 1, 50 and 200. Prints client
CPU microseconds per request (``time.process_time``: this process only, so the
server's CPU is not counted), requests per second, and the SDK/raw CPU ratio:
the median of the rounds.

    python benchmarks/overhead.py [--rounds 3] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from aicc_async import AICCClient

VOICE_PATH = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
CONTENT = "$Your parcel arrives today$"


PIN = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2


def start_server() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """FakeAICC in its own process; with 2+ cores, server on core 1 and client on core 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aicc_async.testing", "--port", "0", "--no-record"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if PIN else None,
    )
    if PIN:
        os.sched_setaffinity(0, {0})
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


async def run_workers(concurrency: int, total: int, one: Callable[[int], Awaitable[None]]) -> None:
    per_worker = total // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await one(w * per_worker + i)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def measure(
    concurrency: int, total: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, float]:
    """Returns (client CPU µs per request, requests per second)."""
    done = (total // concurrency) * concurrency
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await run_workers(concurrency, total, one)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / done * 1e6, done / wall


class Raw:
    """Hand-written aiohttp: what a user would write without the SDK."""

    def __init__(self, info: dict[str, str], concurrency: int) -> None:
        self.info = info
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(100, concurrency)),
            timeout=aiohttp.ClientTimeout(total=15, connect=5),
        )
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        async with self.session.post(
            self.info["url"] + TOKEN_PATH,
            json={"app_key": self.info["app_key"], "app_secret": self.info["app_secret"]},
            headers={"X-Token-Expire": "600"},
        ) as resp:
            token = (await resp.json())["AccessToken"]
        self.headers = {"Authorization": f"Bearer {token}", "X-APP-Key": self.info["app_key"]}

    async def one(self, n: int) -> None:
        async with self.session.post(
            self.info["url"] + VOICE_PATH,
            json={"called": f"{n:08d}", "voiceContent": CONTENT},
            headers=self.headers,
        ) as resp:
            body = await resp.json()
        if str(body["retCode"]) != "0":
            raise RuntimeError(body)
        body["result"]["callSerialNo"]

    async def close(self) -> None:
        await self.session.close()


class SDK:
    def __init__(self, info: dict[str, str], concurrency: int, **options: Any) -> None:
        self.aicc = AICCClient(
            info["url"],
            info["app_key"],
            info["app_secret"],
            max_connections=max(100, concurrency),
            limits={"voice_notification": concurrency},
            **options,
        )

    async def login(self) -> None:
        await self.one(0)

    async def one(self, n: int) -> None:
        await self.aicc.voice_notification.create(called=f"{n:08d}", voice_content=CONTENT)

    async def close(self) -> None:
        await self.aicc.close()


async def round_trip(
    kind: type[Raw] | type[SDK], info: dict[str, str], c: int, total: int
) -> tuple[float, float]:
    client: Any = kind(info, c)
    try:
        await client.login()
        await run_workers(c, min(total, 400), client.one)  # warm the pool
        return await measure(c, total, client.one)
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    proc, info = start_server()
    try:
        python = sys.version.split()[0]
        pinned = ", server and client pinned to one core each" if PIN else ""
        print(f"# {os.cpu_count()} cores{pinned}, Python {python}, aiohttp {aiohttp.__version__}")
        print(f"# {args.requests} requests per measurement, {args.rounds} rounds, median shown")
        columns = ("raw µs/req", "sdk µs/req", "ratio", "raw req/s", "sdk req/s")
        print(f"{'concurrency':>11} | " + " | ".join(f"{c:>10}" for c in columns))
        print("-" * 72)
        for c in (1, 50, 200):
            total = args.requests if c > 1 else args.requests // 3
            raw_cpu, sdk_cpu, raw_rps, sdk_rps, ratios = [], [], [], [], []
            for r in range(args.rounds):
                order = (Raw, SDK) if r % 2 == 0 else (SDK, Raw)
                got = {kind: await round_trip(kind, info, c, total) for kind in order}
                raw_cpu.append(got[Raw][0])
                sdk_cpu.append(got[SDK][0])
                raw_rps.append(got[Raw][1])
                sdk_rps.append(got[SDK][1])
                ratios.append(got[SDK][0] / got[Raw][0])
            med = statistics.median
            figures = (med(raw_cpu), med(sdk_cpu), med(ratios), med(raw_rps), med(sdk_rps))
            print(
                f"{c:>11} | "
                + " | ".join(f"{f:>10.{2 if i == 2 else 0}f}" for i, f in enumerate(figures))
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
