"""The SDK's own cost against raw aiohttp, in CPU instructions: a figure a noisy
machine cannot move.

``overhead.py`` times both on the clock, which another process on the same core
skews by tens of percent. This runs the same two clients (``overhead.Raw`` and
``overhead.SDK``, FakeAICC in its own process) under ``valgrind --tool=callgrind``,
which counts the instructions the client process executes. Each client runs twice,
with N and 5N requests after a warm-up; the difference divided by 4N is the
instruction count per request, start-up and imports cancelled out. Needs valgrind
(Debian package ``valgrind``); takes two to three minutes.

``--kinds raw,sdk,sdk-auto`` adds the SDK with ``rate_limits={"voice_notification":
"auto"}`` (the adaptive limiter paces and hears every answer; no limit is hit).

    python benchmarks/instructions.py [--requests 250] [--concurrency 50] [--kinds raw,sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys

import overhead  # beside this script

from aicc_async.adaptive import AutoRate


class SDKAuto(overhead.SDK):
    """The SDK with ``rate="auto"`` on its group (starting far above what is sent)."""

    def __init__(self, info: dict[str, str], concurrency: int) -> None:
        auto = {"voice_notification": AutoRate(initial=100_000)}
        super().__init__(info, concurrency, rate_limits=auto)


async def client(kind: str, requests: int, concurrency: int, info: dict[str, str]) -> None:
    """One client process: log in, warm the pool, then ``requests`` requests."""
    kinds = {"raw": overhead.Raw, "sdk": overhead.SDK, "sdk-auto": SDKAuto}
    one = kinds[kind](info, concurrency)
    try:
        await one.login()
        await overhead.run_workers(concurrency, 200, one.one)
        await overhead.run_workers(concurrency, requests, one.one)
    finally:
        await one.close()


def instructions(
    valgrind: str, kind: str, requests: int, concurrency: int, info: dict[str, str]
) -> int:
    """Instructions the client process executed, as callgrind counted them."""
    done = subprocess.run(
        [
            valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, __file__, "--client", kind,
            "--requests", str(requests), "--concurrency", str(concurrency),
        ],
        env={**os.environ, "AICC_BENCH_SERVER": json.dumps(info)},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--kinds", default="raw,sdk", help="raw, sdk and/or sdk-auto")
    parser.add_argument("--client", choices=("raw", "sdk", "sdk-auto"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        info = json.loads(os.environ["AICC_BENCH_SERVER"])
        asyncio.run(client(args.client, args.requests, args.concurrency, info))
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    n, c = args.requests, args.concurrency
    proc, info = overhead.start_server()
    try:
        print(f"# instructions per request, concurrency {c}, ({5 * n} - {n}) requests")
        per = {}
        for kind in args.kinds.split(","):
            low, high = (instructions(valgrind, kind, k, c, info) for k in (n, 5 * n))
            per[kind] = (high - low) / (4 * n)
            print(f"{kind:>8}: {per[kind]:>10,.0f}")
        for kind in per:
            if kind != "raw" and "raw" in per:
                print(f"{kind}/raw: {per[kind] / per['raw']:.3f}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
