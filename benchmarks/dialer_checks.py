"""The dialer's building blocks on their own: loading a do-not-call list, looking a
number up in it, re-checking it for changes, and asking whether a row's calling hours
are open (and when they open next).

It writes a list of ``--numbers`` numbers (default 100,000; written with separators
and a ``+``, so every line goes through the number normalising) as a plain file and
as a CSV, then prints the median of ``--rounds`` rounds of each measurement.

    python benchmarks/dialer_checks.py [--numbers 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from aicc_async.bulk.dialer.do_not_call import DoNotCall
from aicc_async.bulk.dialer.hours import parse_calling_hours


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, rounds = args.numbers, args.rounds
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "dnc.txt"
        plain.write_text("# opted out\n" + "".join(f"+86 138-{i:08d}\n" for i in range(n)))
        table = Path(folder) / "dnc.csv"
        table.write_text(
            "id,called,name\n" + "".join(f"{i},+86138{i:08d},N{i}\n" for i in range(n))
        )
        for name, path in (("plain", plain), ("csv", table)):
            seconds = median_seconds(lambda p=path: DoNotCall.load([p]), rounds)  # type: ignore[misc]
            print(f"load {n:,} numbers ({name}): {seconds * 1000:.0f} ms median")
        lists = DoNotCall.load([plain])
        probes = [f"0086138{i:08d}" for i in range(0, 2 * n, 2)]
        seconds = median_seconds(lambda: [lists.contains(p) for p in probes], rounds)
        print(f"contains: {seconds / len(probes) * 1e9:.0f} ns per number median")
        seconds = median_seconds(lambda: [lists.refresh() for _ in range(1000)], rounds)
        print(f"refresh (file unchanged): {seconds / 1000 * 1e6:.1f} us median")
    hours = parse_calling_hours("mon-fri 09:00-20:00, sat 10:00-16:00")
    zone = ZoneInfo("Asia/Shanghai")
    moments = [
        datetime(2026, 12, 7, tzinfo=timezone.utc) + timedelta(minutes=7 * i) for i in range(10_000)
    ]
    seconds = median_seconds(lambda: [hours.is_open(m, zone) for m in moments], rounds)
    print(f"is_open: {seconds / len(moments) * 1e9:.0f} ns per row median")
    seconds = median_seconds(lambda: [hours.next_open(m, zone) for m in moments[:1000]], rounds)
    print(f"next_open: {seconds / 1000 * 1e6:.0f} us per call median")


if __name__ == "__main__":
    main()
