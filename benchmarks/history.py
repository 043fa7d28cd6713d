"""The contact history's cost per row: ``counts()`` for a claim of 50 numbers, and
``admit()`` of 50 new entries against a limit, on a history of 100,000 entries
(50,000 numbers, up to 3 calls each over 30 days), on a SQLite file and on
PostgreSQL. Median microseconds per row over ``--repeat`` batches of random numbers
of the history.

    python benchmarks/history.py [--entries 100000] [--repeat 200] [--backends sqlite,postgresql]

Starts its own PostgreSQL (as the tests do, fsync off) in a temporary directory; the
SQLite file is in one too (synchronous=FULL, on this machine's disk). Well under a
minute on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import postgresql

from aicc_async.bulk.dialer.history import HistoryEntry, Limit, open_history

NOW = time.time()  # near the server's clock: no skew warning
DAY = 86_400.0
BATCH = 50


def number(i: int) -> str:
    return f"139{i:08d}"


async def measure(location: str, entries: int, repeat: int) -> tuple[float, float]:
    """(counts, admit): median µs per row."""
    rng = random.Random(7)
    numbers = entries // 2
    async with await open_history(location, clock=lambda: NOW) as history:
        fill = [
            HistoryEntry(number(i % numbers), NOW - rng.uniform(0, 30 * DAY), "fill", str(i))
            for i in range(entries)
        ]
        for start in range(0, entries, 5000):
            await history.record(fill[start : start + 5000])
        counts: list[float] = []
        for _ in range(repeat):
            wanted = [number(rng.randrange(numbers)) for _ in range(BATCH)]
            started = time.perf_counter()
            await history.counts(wanted, NOW - 7 * DAY)
            counts.append((time.perf_counter() - started) / BATCH * 1e6)
        admits: list[float] = []
        limit = Limit(3, 7 * DAY)
        for r in range(repeat):
            batch = [
                HistoryEntry(number(rng.randrange(numbers)), NOW, "bench", f"{r}-{j}")
                for j in range(BATCH)
            ]
            started = time.perf_counter()
            await history.admit(batch, limit)
            admits.append((time.perf_counter() - started) / BATCH * 1e6)
    return statistics.median(counts), statistics.median(admits)


@contextlib.contextmanager
def sqlite_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield str(Path(tmp) / "history.db")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"history of {args.entries:,} entries; batches of {BATCH}; median of {args.repeat}")
    print(f"{'backend':<12}{'counts() µs/row':>18}{'admit() µs/row':>18}")
    for backend in args.backends.split(","):
        where = sqlite_file() if backend == "sqlite" else postgresql()
        with where as location:
            counts, admit = asyncio.run(measure(location, args.entries, args.repeat))
        print(f"{backend:<12}{counts:>18.1f}{admit:>18.1f}")


if __name__ == "__main__":
    main()
