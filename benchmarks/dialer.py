"""What the dialer checks cost a campaign: ``aicc notify`` plain beside ``aicc notify``
with every check on, against FakeAICC in another process.

For each input size (default 25,000 and 100,000 rows) it writes a contacts CSV (as
``campaign.py`` does) and a do-not-call list of ``--dnc`` numbers (default 100,000,
written with separators and a ``+`` so each goes through the number normalising), of
which 1 % of the rows' numbers are on it and the rest are numbers no row has. Then,
for ``--rounds`` rounds, alternating which goes first, each in its own process on a
fresh server:

* ``plain``: ``aicc notify FILE --journal J --concurrency C``, today's campaign;
* ``dialer``: the same plus ``--do-not-call LIST --calling-hours "mon-sun 00:00-24:00"
  --timezone UTC --contact-history H --max-calls-per-number 3/7d``: every row goes
  through the do-not-call lookup, the calling-hours gate (always open: nothing waits)
  and the contact limit, and every call is recorded in a fresh SQLite history.

It prints each run's seconds, rows/s, CPU seconds (user + system, from ``wait4``) and
peak RSS (``ru_maxrss`` of that process alone), then the medians, the ratio of the
medians and ``paired`` (the median of each round's own dialer/plain ratio: the two ran
one after the other, so a busy spell on a shared machine moves it less), for wall time
and CPU time. The peak RSS at two sizes shows whether memory stays flat with input.

    python benchmarks/dialer.py [--rows 25000 100000] [--dnc 100000] [--rounds 3]
                                [--concurrency 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import Runs, notify_argv, one_run, write_contacts

HOURS = "mon-sun 00:00-24:00"
LIMIT = "3/7d"


def write_do_not_call(path: Path, rows: int, numbers: int) -> int:
    """``numbers`` opted-out numbers: every 100th row's number, then numbers no row has.
    Returns how many rows are on the list."""
    on_list = range(0, rows, 100)
    with path.open("w", encoding="utf-8") as f:
        f.write("# opted out\n")
        for i in on_list:  # the rows' numbers are 139{i:08d} (campaign.write_contacts)
            f.write(f"139 {i:08d}\n")
        for i in range(numbers - len(on_list)):
            f.write(f"+86 138-{i:08d}\n")
    return len(on_list)


def clean(folder: Path, stem: str) -> None:
    for leftover in folder.glob(stem + "*"):
        leftover.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[25_000, 100_000])
    parser.add_argument("--dnc", type=int, default=100_000, help="numbers on the list")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds, median shown")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    print(
        f"rounds: {args.rounds} (paired, alternating order, each run on a fresh server); "
        f"concurrency {args.concurrency}; do-not-call list {args.dnc:,} numbers; "
        f'calling hours "{HOURS}" UTC; history: fresh SQLite file; limit {LIMIT}'
    )
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in args.rows:
            contacts = folder / f"contacts-{rows}.csv"
            write_contacts(contacts, rows)
            dnc = folder / f"dnc-{rows}.txt"
            suppressed = write_do_not_call(dnc, rows, args.dnc)
            dialer_flags = [
                "--do-not-call",
                str(dnc),
                "--calling-hours",
                HOURS,
                "--timezone",
                "UTC",
                "--contact-history",
                str(folder / "history.db"),
                "--max-calls-per-number",
                LIMIT,
            ]
            plain, dialer = Runs("plain"), Runs("dialer")
            print(f"\n{rows:,} rows ({suppressed:,} on the do-not-call list)")
            print(
                f"{'round':>5} {'what':>6} {'seconds':>8} {'rows/s':>7} {'CPU s':>6} "
                f"{'peak RSS':>10}"
            )
            for r in range(args.rounds):
                order = [(plain, []), (dialer, dialer_flags)]
                if r % 2:
                    order.reverse()
                for runs, extra in order:
                    argv = notify_argv(contacts, folder / "journal.db", args.concurrency, extra)
                    wall, rss, _, cpu = one_run(lambda _, argv=argv: argv, first_request=False)
                    clean(folder, "journal.db")
                    clean(folder, "history.db")
                    runs.add(wall, rss, None, cpu)
                    print(
                        f"{r + 1:>5} {runs.what:>6} {wall:>8.1f} {rows / wall:>7,.0f} "
                        f"{cpu:>6.1f} {rss:>6,.0f} MiB"
                    )
            wall_p, wall_d = statistics.median(plain.walls), statistics.median(dialer.walls)
            cpu_p, cpu_d = statistics.median(plain.cpus), statistics.median(dialer.cpus)
            paired = statistics.median(
                d / p for d, p in zip(dialer.walls, plain.walls, strict=True)
            )
            paired_cpu = statistics.median(
                d / p for d, p in zip(dialer.cpus, plain.cpus, strict=True)
            )
            line = (
                f"{rows:>9,}  plain {wall_p:.1f} s ({rows / wall_p:,.0f} rows/s, "
                f"{plain.rss:,.0f} MiB)  dialer {wall_d:.1f} s ({rows / wall_d:,.0f} rows/s, "
                f"{dialer.rss:,.0f} MiB)  wall ratio {wall_d / wall_p:.2f} "
                f"(paired {paired:.2f})  CPU ratio {cpu_d / cpu_p:.2f} (paired {paired_cpu:.2f}), "
                f"CPU µs/row {1e6 * cpu_p / rows:.0f} / {1e6 * cpu_d / rows:.0f}"
            )
            print("medians:" + line)
            summary.append(line)
    print("\nsummary (medians):")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
