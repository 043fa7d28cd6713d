"""Bulk campaign throughput and memory: ``aicc notify`` against FakeAICC in another process.

For each input size (default 100,000 and 1,000,000 rows) it writes a contacts CSV,
then runs, each in its own process:

* ``aicc notify FILE --journal J --concurrency C`` (the whole CLI: CSV reading,
  validation, SQLite journal, progress bar), and
* for sizes up to ``--raw-max`` rows, raw aiohttp reading the same CSV and posting
  the same requests at the same concurrency (no validation, no journal): the floor;
* with ``--sdk``, the SDK without a campaign: the same CSV read and validated by
  ``CampaignFile``, each request sent by ``aicc.voice_notification.send`` from the
  same number of workers (no journal). ``aicc`` minus ``sdk`` is what the campaign
  machinery (journal, engine) costs; ``sdk`` minus ``raw`` what the request path does.

It prints rows per second, the ratio to raw (of the medians, and ``paired``: the
median of each round's own ratio, raw and the client having run one after the other,
which a busy spell on a shared machine moves less), the CPU time each client process
used (user + system, from ``wait4``: on a machine other work shares, a steadier
figure than the wall time) per row and as a ratio to raw, and the peak RSS of each
process (``ru_maxrss``). With 2+ cores the server runs on core 1 and the client on core 0.
The journal file size is printed too.

With ``--journal-cost`` it also measures the SQLite journal on its own, in a process
on the client's core: the CPU a row's journal work takes (its load, its ``sending``
mark and its outcome, each commit synced as in a run), in commits of the batch the
engine waits for (a tenth of the concurrency) and of half the concurrency, as a share
of raw aiohttp's CPU per row. That is the part of the gap to raw no engine change removes.

    python benchmarks/campaign.py [--rows 100000 1000000] [--concurrency 100] [--rounds 3]
                                  [--sdk] [--journal-cost]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
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

SDK_CLIENT = r"""
import asyncio, sys
from aicc_async import AICCClient
from aicc_async.bulk.campaign.csv_input import CampaignFile

async def main(url, key, secret, path, concurrency):
    async with AICCClient(url, key, secret, max_connections=concurrency,
                          limits={"voice_notification": concurrency}) as aicc:
        queue = asyncio.Queue(concurrency)

        async def worker():
            while (row := await queue.get()) is not None:
                await aicc.voice_notification.send(row.request)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        with CampaignFile(path, "voice_notification") as rows:
            for row in rows.rows():
                await queue.put(row)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)

asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
"""

JOURNAL_CLIENT = r"""
import asyncio, hashlib, json, sys, time
from pathlib import Path
import attrs
from aicc_async.bulk.journal import Finished, Journal, LoadedRow
from aicc_async.bulk.journal.sqlite import SQLiteJournal
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest

async def main(path, rows, batch):
    journal = await SQLiteJournal.open(Path(path), "voice_notification")
    cpu = {"load": 0.0, "send": 0.0}
    load, _ = await journal.begin_load(None, stream=True)  # a new campaign: synced
    for first in range(0, rows, 2000):
        loaded = []
        for i in range(first, min(first + 2000, rows)):
            request = CreateVoiceNotificationRequest(f"139{i:08d}", "$Your parcel arrives today$")
            payload = Journal.dumps(attrs.asdict(request))  # the row as a campaign loads it
            digest = hashlib.sha256(f"request:{payload}".encode()).hexdigest()[:32]
            loaded.append(LoadedRow(f"C{i:07d}", digest, "pending", payload, number=f"139{i:08d}"))
        start = time.process_time()
        await journal.load(loaded, load)
        cpu["load"] += time.process_time() - start
    start = time.process_time()
    await journal.end_load(load, 0, None)
    after, finished = 0, []
    while True:  # each commit records a batch of outcomes and claims as many rows
        claim = await journal.commit(finished, batch, after, once_per_number=True)
        after = claim.cursor
        if not claim.rows and not finished:
            break
        finished = [Finished(c.seq, "done", reference=str(10**9 + c.seq)) for c in claim.rows]
    cpu["send"] = time.process_time() - start
    await journal.close()
    print(json.dumps({k: 1e6 * v / rows for k, v in cpu.items()}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def journal_cost(tmp: str, rows: int, batch: int) -> dict[str, float]:
    """µs of CPU per row the SQLite journal alone takes (``load``, ``send``), on core 0."""
    path = Path(tmp, f"journal-cost-{batch}.db")
    out = subprocess.run(
        [sys.executable, "-c", JOURNAL_CLIENT, str(path), str(rows), str(batch)],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if PIN else None,
    ).stdout
    for name in os.listdir(tmp):
        if name.startswith(path.name):
            os.unlink(Path(tmp, name))
    costs: dict[str, float] = json.loads(out)
    return costs


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
) -> tuple[float, float, int, float | None, float]:
    """Run ``argv``; returns (wall seconds, peak RSS in MiB, exit status, seconds until
    the server processed its first notification (when ``server_url`` is given), CPU
    seconds (user + system) the process used)."""
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
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode, first, cpu


@dataclasses.dataclass
class Runs:
    """The rounds of one client on one input size."""

    what: str
    walls: list[float] = dataclasses.field(default_factory=list)
    cpus: list[float] = dataclasses.field(default_factory=list)
    firsts: list[float] = dataclasses.field(default_factory=list)
    rss: float = 0.0

    def add(self, wall: float, rss: float, first: float | None, cpu: float) -> None:
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.rss = max(self.rss, rss)
        if first is not None:
            self.firsts.append(first)

    def line(self, rows: int, raw: Runs | None) -> str:
        wall, cpu = statistics.median(self.walls), statistics.median(self.cpus)
        ratio = cpu_ratio = paired = ""
        if raw is not None and raw.walls and raw is not self:
            ratio = f"{wall / statistics.median(raw.walls):.2f}"
            cpu_ratio = f"{cpu / statistics.median(raw.cpus):.2f}"
            # Each round runs raw and this client one after the other: the median of
            # the rounds' own ratios moves less with a busy spell than the ratio of
            # the medians does.
            rounds = zip(self.walls, raw.walls, strict=True)
            paired = f"{statistics.median(mine / floor for mine, floor in rounds):.2f}"
        first = f"{statistics.median(self.firsts):.2f} s" if self.firsts else ""
        return (
            f"{rows:>9,} {self.what:>5} {wall:>8.1f} {rows / wall:>7,.0f} {ratio:>6} "
            f"{paired:>6} {cpu:>6.1f} {1e6 * cpu / rows:>7.0f} {cpu_ratio:>6} "
            f"{self.rss:>6,.0f} MiB {first:>9}"
        )


def notify_argv(
    contacts: Path, journal: Path, concurrency: int, extra: Sequence[str] = ()
) -> list[str]:
    """``aicc notify`` of ``contacts`` (in this Python), plus the options ``extra``."""
    return [
        sys.executable,
        "-c",
        "import sys; from aicc_async.cli import main; sys.exit(main())",
        "notify",
        str(contacts),
        "--journal",
        str(journal),
        "--concurrency",
        str(concurrency),
        *extra,
    ]


def one_run(argv_for: Any, first_request: bool) -> tuple[float, float, float | None, float]:
    """Start a fresh FakeAICC (no state left by an earlier run), run ``argv_for(info)``
    against it; returns (wall seconds, peak RSS MiB, first request seconds, CPU seconds)."""
    server, info = start_server()
    env = dict(
        os.environ,
        AICC_BASE_URL=info["url"],
        AICC_APP_KEY=info["app_key"],
        AICC_APP_SECRET=info["app_secret"],
    )
    try:
        wall, rss, status, first, cpu = timed(
            argv_for(info), env, info["url"] if first_request else None
        )
        assert status == 0, f"{argv_for(info)[3:5]} exited {status}"
        return wall, rss, first, cpu
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--raw-max", type=int, default=100_000, help="largest raw run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, median shown")
    parser.add_argument(
        "--sdk", action="store_true", help="also run the SDK without a campaign (no journal)"
    )
    parser.add_argument(
        "--journal-cost", action="store_true", help="also measure the SQLite journal alone"
    )
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()}, pinned: {PIN}, concurrency: {args.concurrency}, "
        f"rounds: {args.rounds} (medians; the clients alternate, each on a fresh server)"
    )
    print(
        f"{'rows':>9} {'what':>5} {'seconds':>8} {'rows/s':>7} {'ratio':>6} {'paired':>6} "
        f"{'CPU s':>6} {'µs/row':>7} {'ratio':>6} {'peak RSS':>10} {'first req':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            contacts = Path(tmp, f"contacts-{rows}.csv")
            write_contacts(contacts, rows)
            journal = Path(tmp, f"campaign-{rows}.db")
            raw, sdk, aicc = Runs("raw"), Runs("sdk"), Runs("aicc")
            journal_size = 0.0
            for _ in range(args.rounds):
                for client, runs, wanted in ((RAW_CLIENT, raw, True), (SDK_CLIENT, sdk, args.sdk)):
                    if rows > args.raw_max or not wanted:
                        continue
                    runs.add(
                        *one_run(
                            lambda info, contacts=contacts, client=client: [
                                sys.executable,
                                "-c",
                                client,
                                info["url"],
                                info["app_key"],
                                info["app_secret"],
                                str(contacts),
                                str(args.concurrency),
                            ],
                            first_request=False,
                        )
                    )
                argv = notify_argv(contacts, journal, args.concurrency)
                aicc.add(*one_run(lambda _, argv=argv: argv, first_request=True))
                journal_size = journal.stat().st_size / 2**20
                journal.unlink()
            for runs in (raw, sdk, aicc):
                if runs.walls:
                    print(runs.line(rows, raw))
            if args.journal_cost and raw.cpus:
                raw_row = 1e6 * statistics.median(raw.cpus) / rows
                for batch in (max(1, args.concurrency // 10), max(1, args.concurrency // 2)):
                    costs = [journal_cost(tmp, rows, batch) for _ in range(args.rounds)]
                    load = statistics.median(c["load"] for c in costs)
                    send = statistics.median(c["send"] for c in costs)
                    print(
                        f"          journal alone, commits of {batch} rows: load {load:.1f} + "
                        f"mark and record {send:.1f} = {load + send:.1f} µs/row, "
                        f"{(load + send) / raw_row:.0%} of raw's CPU per row"
                    )
            print(f"          journal {journal_size:,.0f} MiB; rounds (wall s): ", end="")
            print(
                ", ".join(
                    f"{r.what} {[round(w, 1) for w in r.walls]}"
                    for r in (raw, sdk, aicc)
                    if r.walls
                )
            )


if __name__ == "__main__":
    main()
