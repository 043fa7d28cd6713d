"""The servers a benchmark starts for itself on 127.0.0.1, each in a temporary directory
removed afterwards: PostgreSQL (as the tests' ``postgresql_server`` fixture starts it,
reusing its helpers from tests/conftest.py), ``redis-server``, and FakeAICC in a process
of its own that, when stopped, writes the arrival times of the notifications it
received (``--times FILE``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_START_TIMEOUT = 30.0


def _tests_conftest() -> Any:
    """tests/conftest.py as a module (its PostgreSQL helpers), without pytest running."""
    spec = importlib.util.spec_from_file_location("aicc_tests_conftest", ROOT / "tests/conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def postgresql() -> Iterator[str]:
    """A throw-away PostgreSQL (fsync off, as in the tests); yields the DSN of its
    database ``aicc`` (user ``aicc``, with a password). SystemExit if not installed."""
    helpers = _tests_conftest()
    binaries = helpers.postgres_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    with helpers.running_postgresql(binaries) as dsn:
        yield dsn


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """A throw-away ``redis-server`` without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server)")
    helpers = _tests_conftest()
    port = helpers._free_tcp_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while (
                subprocess.run(
                    [binary.replace("redis-server", "redis-cli"), "-p", str(port), "ping"],
                    check=False,
                    capture_output=True,
                ).stdout.strip()
                != b"PONG"
            ):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


#: FakeAICC in its own process: prints its JSON "ready" line, serves until SIGTERM, then
#: writes the arrival times of the createVoiceNotification requests to argv[2] (if not
#: "-"; recording every request costs the fake some CPU, so only when asked).
_FAKE = """
import asyncio, json, sys
from aicc_async.testing import FakeAICC
from aicc_async.testing.fake.cli import serve

latency, times = float(sys.argv[1]), sys.argv[2]
fake = FakeAICC(record=times != "-", latency=latency)

def ready(fake):
    print(json.dumps({"url": fake.url, "app_key": fake.app_key,
                      "app_secret": fake.app_secret}), flush=True)

asyncio.run(serve(fake, ready))
if times != "-":
    with open(times, "w") as f:
        json.dump([r.time for r in fake.received("createVoiceNotification")], f)
"""


class Fake:
    """A FakeAICC process: ``url``, ``env`` (the AICC_* variables), ``stats()``."""

    def __init__(self, latency: float = 0.0, times: Path | None = None) -> None:
        self._times = times
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _FAKE, str(latency), str(times or "-")],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        self.url = str(ready["url"])
        self.env = {
            "AICC_BASE_URL": self.url,
            "AICC_APP_KEY": ready["app_key"],
            "AICC_APP_SECRET": ready["app_secret"],
        }

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats``."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_fake/stats", timeout=10) as answer:  # noqa: S310 - 127.0.0.1
            return dict(json.loads(answer.read()))

    def stop(self) -> list[float]:
        """Stop it; the arrival times of the notifications, if it recorded them."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        if self._times is None:
            return []
        return [float(t) for t in json.loads(self._times.read_text())]
