"""``--rate auto`` against a tenant whose flow-control limit the client is not told.

FakeAICC (in this process, loopback only) answers HTTP 429 above a hidden limit (a
token bucket, 0.2 s deep) and every other request after ``--latency`` seconds. A
voice campaign (SQLite journal in a temporary folder) sends ``--rows`` rows:

* ``told``: ``rate=CAP`` (the user knows the limit): the reference.
* ``auto``: ``rate="auto"``, ``concurrency="auto"``.
* ``halve``: ``rate="auto"``; the limit halves (CAP -> CAP/2) ``--change-at`` seconds in.
* ``workers``: three processes, each a third of the rows with its own journal,
  ``rate="auto"`` shared through Redis (``redis-server`` started here), one limit.

For each run: rows placed per second in the steady state (from ``--settle`` seconds
after the start, or after the change, to 2 s before the end), the share of requests
answered 429 (whole run, and in that window), and whether every row is done.
Medians of ``--runs`` runs.

    python benchmarks/adaptive_rate.py [--rows 6000] [--cap 150] [--latency 0.2]
        [--runs 3] [--scenarios told,auto,halve,workers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aicc_async.bulk import Campaign, CampaignRow
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.testing import FakeAICC

VOICE = "createVoiceNotification"


def rows(n: int, start: int = 0) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"r{i}",
            request=CreateVoiceNotificationRequest(called=f"139{i:08d}", voice_content="$Hi$"),
        )
        for i in range(start, start + n)
    ]


def figures(
    fake: FakeAICC, begin: float, window_from: float, change: float | None = None
) -> dict[str, float]:
    """Placed per second and the 429 share, in [window_from, end - 2 s] and overall;
    with ``change``: seconds after it until every later second had under 3 % 429s."""
    seen = [(r.time - begin, r.processed) for r in fake.received(VOICE)]
    end = max(t for t, _ in seen)
    lo, hi = window_from, end - 2.0
    window = [ok for t, ok in seen if lo <= t < hi]
    result = {
        "seconds": round(end, 1),
        "steady_rate": window.count(True) / max(hi - lo, 1e-9),
        "steady_429": window.count(False) / max(1, len(window)),
        "all_429": fake.throttled / max(1, len(seen)),
    }
    if change is not None:
        followed = change
        for second in range(int(change), int(end)):
            answers = [ok for t, ok in seen if second <= t < second + 1]
            if answers and answers.count(False) / len(answers) > 0.03:
                followed = second + 1.0
        result["followed_after"] = followed - change
    return result


async def one_process(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    fake = FakeAICC(latency=args.latency, hidden_rate_limit=args.cap)
    async with fake:
        with tempfile.TemporaryDirectory() as scratch:
            async with Campaign(Path(scratch) / "c.db", "voice_notification") as campaign:
                await campaign.load(rows(args.rows))
                async with fake.client(
                    limits={"voice_notification": 400}, max_connections=400
                ) as aicc:
                    rate: Any = args.cap if scenario == "told" else "auto"
                    concurrency: Any = 400 if scenario == "told" else "auto"
                    begin = time.monotonic()
                    change = None
                    if scenario == "halve":

                        async def halve() -> None:
                            await asyncio.sleep(args.change_at)
                            fake.set_hidden_limit(args.cap / 2)

                        change = asyncio.ensure_future(halve())
                    counts = await campaign.run(aicc, rate=rate, concurrency=concurrency)
                    if change is not None:
                        change.cancel()
        settle = args.change_at + 10 if scenario == "halve" else args.settle
        result = figures(fake, begin, settle, args.change_at if scenario == "halve" else None)
        result["all_done"] = counts.done == args.rows
        return result


WORKER = """
import asyncio, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from adaptive_rate import rows
from aicc_async.bulk import Campaign

url, key, secret, redis_url, start, n = sys.argv[2:8]

async def main():
    with tempfile.TemporaryDirectory() as scratch:
        async with Campaign(Path(scratch) / "c.db", "voice_notification") as campaign:
            await campaign.load(rows(int(n), int(start)))
            async with AICCClient(url, key, secret, redis_url=redis_url,
                                  rate_limits={"voice_notification": "auto"},
                                  limits={"voice_notification": 400},
                                  max_connections=400) as aicc:
                counts = await campaign.run(aicc, rate="auto", concurrency="auto")
    print(json.dumps({"done": counts.done}))

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HERE = str(Path(__file__).resolve().parent)


async def workers(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    fake = FakeAICC(latency=args.latency, hidden_rate_limit=args.cap)
    async with fake:
        share = args.rows // 3
        begin = time.monotonic()
        procs = []
        for i in range(3):
            argv = [HERE, fake.url, fake.app_key, fake.app_secret, redis_url]
            argv += [str(i * share), str(share)]
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", WORKER, *argv, stdout=asyncio.subprocess.PIPE
                )
            )
        outs = [json.loads((await p.communicate())[0]) for p in procs]
    result = figures(fake, begin, args.settle)
    result["all_done"] = sum(o["done"] for o in outs) == 3 * share
    return result


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--cap", type=float, default=150.0)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--change-at", type=float, default=15.0)
    parser.add_argument("--scenarios", default="told,auto,halve,workers")
    args = parser.parse_args()
    print(f"# loadavg {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")
    redis = None
    try:
        for scenario in args.scenarios.split(","):
            results = []
            for _ in range(args.runs):
                if scenario == "workers":
                    if redis is None:
                        redis = start_redis()
                    flush = [shutil.which("redis-cli") or "redis-cli", "-u", redis[1], "flushall"]
                    subprocess.run(flush, check=False, capture_output=True)
                    result = asyncio.run(workers(args, redis[1]))
                else:
                    result = asyncio.run(one_process(args, scenario))
                print(scenario, json.dumps({k: round(v, 4) for k, v in result.items()}))
                results.append(result)
            medians = {
                k: round(statistics.median(float(r[k]) for r in results), 4)
                for k in ("steady_rate", "steady_429", "all_429", "seconds", "followed_after")
                if k in results[0]
            }
            medians["all_done_every_run"] = all(r["all_done"] for r in results)
            print(f"{scenario} median", json.dumps(medians), flush=True)
        print(f"# loadavg {os.getloadavg()[0]:.2f} at the end")
    finally:
        if redis is not None:
            redis[0].terminate()


if __name__ == "__main__":
    main()
