"""Scaling a campaign out: rows/s of 1, 2 and 3 ``aicc notify`` workers (separate
processes, the real command line) on one PostgreSQL campaign, and of one worker on a
SQLite journal for comparison, against FakeAICC in a process of its own; the token
requests FakeAICC saw; then 3 workers with ``--rate``, sharing a Redis and (for
comparison) without: token requests and the peak one-second request rate FakeAICC
saw against that cap.

    python benchmarks/scale_out.py [--rows 100000] [--workers 1,2,3] [--rate 200]

Starts its own PostgreSQL (as the tests do), redis-server and FakeAICC on 127.0.0.1,
in temporary directories. Rows/s is the whole command's wall time, first process
started to last one ended (start-up, reading and loading the CSV, the other workers
checking that their input is the campaign's, sending, the final report), as a user
sees it. Every run also checks that each number was phoned once. Needs
``aicc-async[cli,postgres,redis]``, PostgreSQL's binaries and ``redis-server``. At
100,000 rows it takes several minutes on a 2-core machine; ``--rows 20000`` about
one and a half.

On one machine the workers, FakeAICC and PostgreSQL share its cores: with 2 cores
more workers cannot send faster (they can only show that several workers share the
campaign correctly, and what a claim costs); spreading workers over machines is what
adds throughput, up to what PostgreSQL and the tenant's rate cap allow.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import Fake, postgresql, redis

from aicc_async.testing import peak_per_second

AICC = [sys.executable, "-c", "import sys; from aicc_async.cli import main; sys.exit(main())"]
VOICE = "createVoiceNotification"


def write_contacts(path: Path, rows: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "called", "text"])
        for i in range(rows):
            writer.writerow([i, f"139{i:08d}", f"Hello contact {i}, this is a test."])
    return path


def run_workers(
    workers: int,
    source: Path,
    journal: list[str],
    fake: Fake,
    options: list[str],
    extra_env: dict[str, str],
) -> float:
    """Run ``workers`` ``aicc notify`` processes at once; returns the wall time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICC_")}
    env.update({**fake.env, **extra_env, "COLUMNS": "200", "NO_COLOR": "1"})
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*AICC, "notify", str(source), *journal, *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a worker ended with exit status {proc.returncode}:\n{err}")
    return time.perf_counter() - started


def check(fake: Fake, rows: int) -> dict[str, object]:
    stats = fake.stats()
    calls = stats["calls"]
    assert isinstance(calls, dict)
    if stats["processed"][VOICE] != rows or len(calls) != rows or max(calls.values()) != 1:
        raise SystemExit(f"not every number phoned exactly once: {stats['processed']}")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,3", help="worker counts on PostgreSQL")
    parser.add_argument("--concurrency", type=int, default=50, help="per worker")
    parser.add_argument("--latency", type=float, default=0.0, help="FakeAICC's, seconds")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--rate", type=float, default=200.0, help="the cap shared in Redis")
    parser.add_argument("--rate-rows", type=int, default=3000, help="rows of the Redis run")
    parser.add_argument("--no-redis", action="store_true")
    opts = parser.parse_args()
    counts = [int(n) for n in opts.workers.split(",") if n]
    options = ["--concurrency", str(opts.concurrency)]
    with tempfile.TemporaryDirectory() as tmp, postgresql() as dsn:
        source = write_contacts(Path(tmp) / "contacts.csv", opts.rows)
        print(
            f"{opts.rows:,} rows, concurrency {opts.concurrency} per worker, FakeAICC latency "
            f"{opts.latency:g} s, {os.cpu_count()} CPU(s)"
        )
        for workers in counts:
            fake = Fake(opts.latency)
            try:
                journal = ["--journal", dsn, "--campaign", f"scale-{workers}"]
                elapsed = run_workers(workers, source, journal, fake, options, {})
                stats = check(fake, opts.rows)
            finally:
                fake.stop()
            print(
                f"PostgreSQL, {workers} worker(s): {opts.rows / elapsed:,.0f} rows/s "
                f"({elapsed:.1f} s), {stats['token_requests']} token request(s)"
            )
        if not opts.no_sqlite:
            fake = Fake(opts.latency)
            try:
                journal = ["--journal", str(Path(tmp) / "campaign.db")]
                elapsed = run_workers(1, source, journal, fake, options, {})
                stats = check(fake, opts.rows)
            finally:
                fake.stop()
            print(
                f"SQLite, 1 worker: {opts.rows / elapsed:,.0f} rows/s ({elapsed:.1f} s), "
                f"{stats['token_requests']} token request(s)"
            )
        if not opts.no_redis:
            rate_source = write_contacts(Path(tmp) / "capped.csv", opts.rate_rows)
            with redis() as redis_url:
                for shared in (True, False):
                    run_capped(opts, rate_source, dsn, Path(tmp), redis_url if shared else None)


def run_capped(
    opts: argparse.Namespace, source: Path, dsn: str, tmp: Path, redis_url: str | None
) -> None:
    """3 workers with ``--rate``, sharing ``redis_url`` (or each on its own)."""
    fake = Fake(opts.latency, times=tmp / "times.json")
    try:
        name = "scale-redis" if redis_url else "scale-no-redis"
        elapsed = run_workers(
            3,
            source,
            ["--journal", dsn, "--campaign", name],
            fake,
            ["--concurrency", str(opts.concurrency), "--rate", f"{opts.rate:g}"],
            {"AICC_REDIS_URL": redis_url} if redis_url else {},
        )
        stats = check(fake, opts.rate_rows)
    finally:
        times = fake.stop()
    print(
        f"PostgreSQL, 3 workers {'sharing Redis' if redis_url else 'without Redis'}, "
        f"--rate {opts.rate:g}: {opts.rate_rows / elapsed:,.0f} rows/s ({elapsed:.1f} s), "
        f"{stats['token_requests']} token request(s), peak {peak_per_second(times)} "
        f"requests in one second against the cap of {opts.rate:g}/s"
    )


if __name__ == "__main__":
    main()
