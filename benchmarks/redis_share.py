"""Shared state in Redis: token requests and the peak one-second request rate against
the configured cap, for 1, 2 and 3 client processes on one Redis (and, for
comparison, 3 processes without Redis); then the cost of one rate-cap decision:
the SDK's GCRA Lua script vs the ``limits`` library's moving window (if installed).

    python benchmarks/redis_share.py [--rate 20] [--per-process 30]

Needs ``redis-server`` on PATH and ``aicc-async[redis]``. Starts its own Redis and
FakeAICC on 127.0.0.1; runs well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aicc_async.redis_state import RedisState
from aicc_async.testing import FakeAICC, peak_per_second

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "redis"))
from conftest import CLIENT  # noqa: E402 - the tests' client process

VOICE = "createVoiceNotification"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(processes: int, redis_url: str | None, n: int, rate: float) -> str:
    async with FakeAICC() as fake:
        return await run_against(fake, processes, redis_url, n, rate)


async def run_against(
    fake: FakeAICC, processes: int, redis_url: str | None, n: int, rate: float
) -> str:
    script = CLIENT if redis_url else CLIENT.replace("redis_url=redis_url, ", "")
    args = [fake.url, fake.app_key, fake.app_secret, redis_url or "-", str(n), str(rate)]
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushall()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *args, stdout=subprocess.DEVNULL
        )
        for _ in range(processes)
    ]
    for proc in procs:
        await proc.wait()
    times = [r.time for r in fake.received(VOICE)]
    return (
        f"{processes} process(es) {'with' if redis_url else 'without'} Redis: "
        f"{len(times)} requests, {fake.token_requests} token request(s), "
        f"peak {peak_per_second(times)}/s against a cap of {rate:g}/s"
    )


async def decisions(redis_url: str, count: int = 2000) -> list[str]:
    """Granted-or-wait decisions per second, one at a time (a generous rate, so each
    one is granted): what one start costs in Redis round trips."""
    state = RedisState(redis_url, token_endpoint="", app_key="bench")
    lines = []
    start = time.perf_counter()
    for _ in range(count):
        await state.gcra(f"{state.rate_prefix}:bench", 1e-6, 0.0)
    lines.append(f"GCRA Lua script: {count / (time.perf_counter() - start):,.0f} decisions/s")
    await state.close()
    try:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter
    except ImportError:
        lines.append("limits: not installed (pip install limits)")
        return lines
    storage = RedisStorage("async+" + redis_url, implementation="redispy")
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(1_000_000)
    start = time.perf_counter()
    for _ in range(count):
        await limiter.hit(item, "bench")
    lines.append(
        f"limits MovingWindow hit: {count / (time.perf_counter() - start):,.0f} decisions/s "
        "(and a refusal says nothing about when to retry: a second call, get_window_stats)"
    )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--per-process", type=int, default=30)
    opts = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = await asyncio.create_subprocess_exec(
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", tmp, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"redis://127.0.0.1:{port}/0"
            await asyncio.sleep(0.3)
            for processes in (1, 2, 3):
                print(await run(processes, url, opts.per_process, opts.rate))
            print(await run(3, None, opts.per_process, opts.rate))
            for line in await decisions(url):
                print(line)
        finally:
            server.terminate()
            await server.wait()


if __name__ == "__main__":
    asyncio.run(main())
