"""A real ``redis-server`` for the tests of the state shared across processes.

Fixtures:

* ``redis_server`` (session): starts ``redis-server`` on a free 127.0.0.1 port with
  no persistence in a temporary directory, waits until it answers PING, stops it at
  teardown. A missing binary skips these tests locally and fails them in CI
  (``CI=true``).
* ``redis_url``: that server's URL, emptied before each test.
* ``free_port``: a 127.0.0.1 port nothing listens on (an unreachable Redis).
* ``run_clients(n, script_args)``: run ``n`` client processes (``CLIENT`` below) at
  once and return their JSON outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_START_TIMEOUT = 10.0
_REPO = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the Redis tests")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer PING on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    import redis

    with contextlib.closing(redis.Redis.from_url(redis_server)) as client:
        client.flushall()
    return redis_server


@pytest.fixture
def free_port() -> int:
    return _free_port()


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
