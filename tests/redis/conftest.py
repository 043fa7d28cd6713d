"""A real ``redis-server`` for the tests of the state shared across processes.

Fixtures (``redis_server`` and ``redis_url`` come from tests/conftest.py):

* ``free_port``: a 127.0.0.1 port nothing listens on (an unreachable Redis).
* ``run_clients(n, script_args)``: run ``n`` client processes (``CLIENT`` below) at
  once and return their JSON outputs.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

_START_TIMEOUT = 10.0
_REPO = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: One client process: fires ``count`` voice notifications at once with its own
#: AICCClient on the shared Redis, prints what it saw as JSON.
CLIENT = """
import asyncio, json, sys
from aicc_async import AICCClient

url, key, secret, redis_url, count, rate = sys.argv[1:7]

async def main():
    options = {"rate_limits": {"voice_notification": float(rate)}} if float(rate) else {}
    async with AICCClient(url, key, secret, redis_url=redis_url, **options) as aicc:
        results = await asyncio.gather(
            *(aicc.voice_notification.create(called=f"138{n:08d}", voice_content="$a$")
              for n in range(int(count))),
            return_exceptions=True,
        )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    print(json.dumps({"sent": len(results) - len(errors), "errors": errors}))

asyncio.run(main())
"""


@pytest.fixture
def run_clients() -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    async def run(processes: int, *args: str) -> list[dict[str, Any]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AICC_")}
        env["PYTHONPATH"] = _REPO
        pipe = asyncio.subprocess.PIPE
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, *args, stdout=pipe, stderr=pipe, env=env
            )
            for _ in range(processes)
        ]
        outputs = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            outputs.append(json.loads(out))
        return outputs

    return run
