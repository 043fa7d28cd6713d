"""asyncpg vs psycopg 3 (async, and blocking on a thread as the journal runs it) on the
PostgreSQL journal's hot path: one transaction
that records the outcomes of the rows sent, then claims as many ``pending`` rows
(``FOR UPDATE SKIP LOCKED``, under the campaign's advisory lock) and marks them
``sending``. One connection, batches of ``--batch`` rows, ``--rows`` rows in all,
each driver twice (the better pass counts).

    python benchmarks/postgres_driver.py postgresql://USER:PASSWORD@127.0.0.1:5432/DB

Needs both drivers (``pip install asyncpg "psycopg[binary]"``) and a PostgreSQL it
may create a scratch table in (``aicc_driver_bench``, dropped at the end). Well
under a minute on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

TABLE = "aicc_driver_bench"
SETUP = [
    f"DROP TABLE IF EXISTS {TABLE}",
    f"CREATE TABLE {TABLE} (seq bigint PRIMARY KEY, state text NOT NULL, "
    "payload text NOT NULL, number text, reference text, sends int NOT NULL DEFAULT 0)",
    f"INSERT INTO {TABLE} SELECT g, 'pending', '{{\"called\": \"' || g || '\"}}', "  # noqa: S608
    "g::text, NULL FROM generate_series(1, %d) g",
]
LOCK = "SELECT pg_advisory_xact_lock(42)"
FINISH = f"UPDATE {TABLE} SET state = 'done', reference = $2 WHERE seq = $1"  # noqa: S608
CLAIM = (
    f"UPDATE {TABLE} SET state = 'sending', sends = sends + 1 WHERE seq IN ("  # noqa: S608
    f"SELECT seq FROM {TABLE} WHERE state = 'pending' ORDER BY seq "
    "LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING seq, payload"
)


async def with_asyncpg(dsn: str, rows: int, batch: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for statement in SETUP:
            await conn.execute(statement.replace("%d", str(rows)))
        started = time.perf_counter()
        done: list[tuple[int, str]] = []
        while True:
            async with conn.transaction():
                await conn.execute(LOCK)
                if done:
                    await conn.executemany(FINISH, done)
                claimed = await conn.fetch(CLAIM, batch)
            if not claimed:
                break
            done = [(r["seq"], f"serial-{r['seq']}") for r in claimed]
        elapsed = time.perf_counter() - started
        await conn.execute(f"DROP TABLE {TABLE}")
        return rows / elapsed
    finally:
        await conn.close()


async def with_psycopg(dsn: str, rows: int, batch: int) -> float:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    finish, claim = (q.replace("$1", "%s").replace("$2", "%s") for q in (FINISH, CLAIM))
    try:
        for statement in SETUP:
            await conn.execute(statement.replace("%d", str(rows)))  # type: ignore[arg-type]
        started = time.perf_counter()
        done: list[tuple[int, str]] = []
        while True:
            async with conn.transaction():
                await conn.execute(LOCK)
                if done:
                    async with conn.cursor() as cur:
                        await cur.executemany(finish, [(ref, seq) for seq, ref in done])  # type: ignore[arg-type]
                cur = await conn.execute(claim, (batch,))  # type: ignore[arg-type]
                claimed = await cur.fetchall()
            if not claimed:
                break
            done = [(seq, f"serial-{seq}") for seq, _ in claimed]
        elapsed = time.perf_counter() - started
        await conn.execute(f"DROP TABLE {TABLE}")  # type: ignore[arg-type]
        return rows / elapsed
    finally:
        await conn.close()


async def with_psycopg_thread(dsn: str, rows: int, batch: int) -> float:
    """psycopg's blocking API on one worker thread, a thread hop per transaction: how
    the journal uses it (the SQL it shares with the SQLite backend runs there)."""
    import psycopg

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(dsn, autocommit=True)

    conn = await asyncio.to_thread(connect)
    finish, claim = (q.replace("$1", "%s").replace("$2", "%s") for q in (FINISH, CLAIM))

    def transaction(done: list[tuple[int, str]]) -> list[tuple[int, str]]:
        with conn.transaction():
            conn.execute(LOCK)
            if done:
                with conn.cursor() as cur:
                    cur.executemany(finish, [(ref, seq) for seq, ref in done])  # type: ignore[arg-type]
            return conn.execute(claim, (batch,)).fetchall()  # type: ignore[arg-type,return-value]

    try:
        for statement in SETUP:
            await asyncio.to_thread(conn.execute, statement.replace("%d", str(rows)))  # type: ignore[arg-type]
        started = time.perf_counter()
        done: list[tuple[int, str]] = []
        while claimed := await asyncio.to_thread(transaction, done):
            done = [(seq, f"serial-{seq}") for seq, _ in claimed]
        elapsed = time.perf_counter() - started
        await asyncio.to_thread(conn.execute, f"DROP TABLE {TABLE}")  # type: ignore[arg-type]
        return rows / elapsed
    finally:
        await asyncio.to_thread(conn.close)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dsn")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    drivers: dict[str, Callable[[str, int, int], Awaitable[float]]] = {
        "asyncpg": with_asyncpg,
        "psycopg": with_psycopg,
        "psycopg (blocking, on a thread)": with_psycopg_thread,
    }
    best: dict[str, float] = {}
    for _ in range(2):
        for name, run in drivers.items():
            rate = await run(args.dsn, args.rows, args.batch)
            best[name] = max(best.get(name, 0.0), rate)
    for name, rate in best.items():
        print(f"{name:32} {rate:9,.0f} rows/s  (commits of {args.batch} rows)")
    ranked = sorted(best, key=best.__getitem__, reverse=True)
    print(f"{ranked[0]} is {best[ranked[0]] / best[ranked[-1]]:.2f}x {ranked[-1]}")


if __name__ == "__main__":
    asyncio.run(main())
