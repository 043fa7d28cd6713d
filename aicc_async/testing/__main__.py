"""Run FakeAICC in the foreground: ``python -m aicc_async.testing [--host H] [--port P]``.

Prints one JSON line ``{"url": ..., "app_key": ..., "app_secret": ...}`` to stdout,
then serves until SIGINT or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence

from aicc_async.testing.fake_server import FakeAICC


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aicc_async.testing",
        description="Run the FakeAICC simulator until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free)")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="do not keep every request in memory (for long benchmarks)",
    )
    return parser.parse_args(argv)


async def _serve(host: str, port: int, record: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    async with FakeAICC(host=host, port=port, record=record) as fake:
        line = json.dumps({"url": fake.url, "app_key": fake.app_key, "app_secret": fake.app_secret})
        print(line, flush=True)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, not args.no_record))
    except KeyboardInterrupt:  # a SIGINT that arrived before the handler was installed
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
