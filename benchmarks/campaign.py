"""Bulk campaign throughput and memory: ``aicc notify`` against FakeAICC in another process.

For each input size (default 100,000 and 1,000,000 rows) it writes a contacts CSV,
then runs, each in its own process:

* ``aicc notify FILE --journal J --concurrency C`` (the whole CLI: CSV reading,
  validation, SQLite journal, progress bar), and
* for sizes up to ``--raw-max`` rows, raw aiohttp reading the same CSV and posting
  the same requests at the same concurrency (no validation, no journal): the floor.

It prints rows per second, the ratio CLI/raw, and the peak RSS of each process
(``ru_maxrss`` from ``wait4``). With 2+ cores the server runs on core 1 and the
client on core 0. The journal file size is printed too.

    python benchmarks/campaign.py [--rows 100000 1000000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

PIN = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2

RAW_CLIENT = r"""
import asyncio, csv, json, sys
import aiohttp

VOICE = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
TOKEN = "/apigovernance/api/oauth/tokenByAkSk"

async def main(url, key, secret, path, concurrency):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async with s.post(url + TOKEN, json={"app_key": key, "app_secret": secret}) as r:
            token = (await r.json())["AccessToken"]
        headers = {"Authorization": "Bearer " + token, "X-APP-Key": key,
                   "Content-Type": "application/json"}
        queue = asyncio.Queue(concurrency)

        async def worker():
            while (row := await queue.get()) is not None:
                content = "$" + row["text"] + "$"
                body = json.dumps({"called": row["called"], "voiceContent": content})
                async with s.post(url + VOICE, data=body, headers=headers) as r:
                    assert (await r.json())["retCode"] == "0"

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                await queue.put(row)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)

asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
"""


def write_contacts(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "called", "text"])
        for i in range(rows):
            out.writerow([f"C{i:07d}", f"139{i:08d}", "Your parcel arrives today"])


def start_server() -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aicc_async.testing", "--port", "0", "--no-record"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {1})) if PIN else None,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def processed(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=10) as answer:  # noqa: S310 - loopback
        return int(json.loads(answer.read())["processed"]["createVoiceNotification"])


def timed(
    argv: list[str], env: dict[str, str], server_url: str | None = None
) -> tuple[float, float, int, float | None]:
    """Run ``argv``; returns (wall seconds, peak RSS in MiB, exit status, seconds until
    the server processed its first notification (when ``server_url`` is given))."""
    before = 0 if server_url is None else processed(server_url)
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if PIN else None,
    )
    first = None
    while server_url is not None and first is None and proc.poll() is None:
        if processed(server_url) > before:
            first = time.perf_counter() - start
        else:
            time.sleep(0.005)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode, first


def one_run(argv_for: Any, first_request: bool) -> tuple[float, float, float | None]:
    """Start a fresh FakeAICC (no state left by an earlier run), run ``argv_for(info)``
    against it; returns (wall seconds, peak RSS MiB, first request seconds)."""
    server, info = start_server()
    env = dict(
        os.environ,
        AICC_BASE_URL=info["url"],
        AICC_APP_KEY=info["app_key"],
        AICC_APP_SECRET=info["app_secret"],
    )
    try:
        wall, rss, status, first = timed(
            argv_for(info), env, info["url"] if first_request else None
        )
        assert status == 0, f"{argv_for(info)[3:5]} exited {status}"
        return wall, rss, first
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--raw-max", type=int, default=100_000, help="largest raw run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, median shown")
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()}, pinned: {PIN}, concurrency: {args.concurrency}, "
        f"rounds: {args.rounds} (medians; raw and aicc alternate, each on a fresh server)"
    )
    print(
        f"{'rows':>9} {'what':>5} {'seconds':>8} {'rows/s':>7} {'ratio':>6} {'peak RSS':>9} "
        f"{'first request':>14}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            contacts = Path(tmp, f"contacts-{rows}.csv")
            write_contacts(contacts, rows)
            journal = Path(tmp, f"campaign-{rows}.db")
            raw_walls: list[float] = []
            aicc_walls: list[float] = []
            firsts: list[float] = []
            rss = journal_size = 0.0
            for _ in range(args.rounds):
                if rows <= args.raw_max:
                    wall, _, _ = one_run(
                        lambda info, contacts=contacts, journal=journal: [
                            sys.executable,
                            "-c",
                            RAW_CLIENT,
                            info["url"],
                            info["app_key"],
                            info["app_secret"],
                            str(contacts),
                            str(args.concurrency),
                        ],
                        first_request=False,
                    )
                    raw_walls.append(wall)
                wall, rss, first = one_run(
                    lambda info, contacts=contacts, journal=journal: [
                        sys.executable,
                        "-c",
                        "import sys; from aicc_async.cli import main; sys.exit(main())",
                        "notify",
                        str(contacts),
                        "--journal",
                        str(journal),
                        "--concurrency",
                        str(args.concurrency),
                    ],
                    first_request=True,
                )
                aicc_walls.append(wall)
                if first is not None:
                    firsts.append(first)
                journal_size = journal.stat().st_size / 2**20
                journal.unlink()
            raw_rate = None
            if raw_walls:
                raw = statistics.median(raw_walls)
                raw_rate = rows / raw
                print(f"{rows:>9,} {'raw':>5} {raw:>8.1f} {raw_rate:>7,.0f}")
            wall = statistics.median(aicc_walls)
            rate = rows / wall
            ratio = f"{raw_rate / rate:.2f}" if raw_rate else ""
            first_text = f"{statistics.median(firsts):.2f} s" if firsts else ""
            print(
                f"{rows:>9,} {'aicc':>5} {wall:>8.1f} {rate:>7,.0f} {ratio:>6} "
                f"{rss:>6,.0f} MiB {first_text:>14}   journal {journal_size:,.0f} MiB"
            )
            print(
                f"          rounds: raw {[round(w, 1) for w in raw_walls]}, "
                f"aicc {[round(w, 1) for w in aicc_walls]}"
            )


if __name__ == "__main__":
    main()
