"""Shared test fixtures.

The ``fake_aicc`` fixture comes from the package's own pytest plugin
(``aicc_async.testing.pytest_plugin``, registered as a ``pytest11`` entry point).

* ``postgresql_server`` (session): a real PostgreSQL started for the test session
  (``initdb`` + ``postgres`` on a free 127.0.0.1 port, a temporary data directory,
  its unix socket there too, fsync off: the data is thrown away). PostgreSQL refuses
  to run as root, so as root the server runs as ``nobody``. Gives the DSN of a
  database ``aicc`` owned by user ``aicc`` with a password (the masking of the
  password in messages is tested against it). A missing binary skips the tests that
  use it locally and fails them in CI (``CI=true``).
* ``postgresql_dsn``: that DSN; ``campaign_name``: a campaign name no other test uses.
* ``own_postgresql``: a :class:`PostgresServer` of the test's own (``.dsn``), which it
  may ``stop()``, ``start()`` and ``restart()`` (a fast shutdown, as ``pg_ctl restart
  -m fast``).
* ``redis_server`` (session): a real ``redis-server`` on a free 127.0.0.1 port, no
  persistence, in a temporary directory (skipped locally without the binary, failed in
  CI); ``redis_url``: its URL, emptied before each test. ``running_redis(directory)``
  starts one, and ``own_redis`` gives (URL, process) of one of the test's own (one it
  may freeze with SIGSTOP).
"""

from __future__ import annotations

import contextlib
import gc
import glob
import inspect
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aioresponses.core
import pytest

pytest_plugins = ["pytester"]

# --- aioresponses 0.7.9 vs aiohttp >= 3.14 compatibility shim --------------------------
# aiohttp 3.14 added a keyword-only ``stream_writer`` argument to ClientResponse.__init__;
# aioresponses 0.7.9 does not pass it, so every mocked call fails with TypeError
# (upstream issue pnuckowski/aioresponses#289, fix in PR #288, unreleased).
# Delete this block once aioresponses ships the fix.
_NEEDS_STREAM_WRITER = (
    "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters
)


class _FinishedWriter:
    """Stands in for the request's stream writer of a mocked response: upload finished."""

    output_size = 0


class _ShimmedClientResponse(aiohttp.ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedWriter())
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def _gc_thresholds() -> Iterator[None]:
    """mypy, run in-process by the docs and typing tests, raises the garbage collector's
    thresholds for good (mypy/build.py): put them back after each test, so that a test
    of the CLI's own tuning sees Python's."""
    kept = gc.get_threshold()
    yield
    gc.set_threshold(*kept)


@pytest.fixture(autouse=True)
def _aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    if _NEEDS_STREAM_WRITER:
        monkeypatch.setattr(aioresponses.core, "ClientResponse", _ShimmedClientResponse)


# --- a real PostgreSQL for the journal tests ---------------------------------------------

PG_PASSWORD = "pg-s3cret-pw"
_PG_START_TIMEOUT = 30.0


def postgres_binaries() -> Path | None:
    """The directory of ``initdb`` and ``postgres``: the newest Debian layout
    (``/usr/lib/postgresql/N/bin``, what ``apt-get install postgresql`` gives, not on
    PATH) or else wherever PATH has them."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(on_path).resolve().parent
    return None


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged() -> dict[str, Any]:
    """``Popen`` arguments that drop root to ``nobody`` (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class PostgresServer:
    """A throw-away PostgreSQL of its own data directory (see :func:`running_postgresql`):
    ``dsn`` of its database ``aicc``; :meth:`stop` and :meth:`start` it (a "fast"
    shutdown, as ``pg_ctl restart -m fast`` does), on the same port."""

    def __init__(self, binaries: Path, directory: Path) -> None:
        self.binaries = binaries
        self.directory = directory
        self.port = _free_tcp_port()
        self.dsn = f"postgresql://aicc:{PG_PASSWORD}@127.0.0.1:{self.port}/aicc"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = (directory / "log").open("ab")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (``RuntimeError`` if
        it does not within 30 s)."""
        self.proc = subprocess.Popen(
            [self.binaries / "postgres", "-D", self.directory / "data", "-h", "127.0.0.1",
             "-p", str(self.port), "-k", self.directory, "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "synchronous_commit=off",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=self._log, cwd=self.directory,
            **_unprivileged(),
        )  # fmt: skip
        deadline = time.monotonic() + _PG_START_TIMEOUT
        while True:
            ready = subprocess.run(
                [self.binaries / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._log.flush()
                said = (self.directory / "log").read_text(errors="replace")
                raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{said}")
            time.sleep(0.05)

    def stop(self) -> None:
        """A fast shutdown: connections are closed, transactions rolled back."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._log.close()


@contextlib.contextmanager
def restartable_postgresql(binaries: Path) -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL started from ``binaries`` (as ``nobody`` when root), with
    a database ``aicc``; yields its :class:`PostgresServer`. Raises ``RuntimeError`` if
    it does not start."""
    # Not under pytest's tmp_path: its parents are 0700 root, out of nobody's reach.
    directory = Path(tempfile.mkdtemp(prefix="aicc-pg-"))
    password_file = directory / "password"
    password_file.write_text(PG_PASSWORD)
    drop = _unprivileged()
    if drop:
        for path in (directory, password_file):
            os.chown(path, drop["user"], drop["group"])
    server = PostgresServer(binaries, directory)
    try:
        subprocess.run(
            [binaries / "initdb", "-D", directory / "data", "-U", "aicc", "--pwfile",
             password_file, "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C",
             "--no-sync"],
            check=True, capture_output=True, cwd=directory, **drop,
        )  # fmt: skip
        server.start()
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        subprocess.run(
            [binaries / "psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "aicc",
             "-d", "postgres", "-q", "-c", "CREATE DATABASE aicc"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        yield server
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def running_postgresql(binaries: Path) -> Iterator[str]:
    """A throw-away PostgreSQL started from ``binaries`` (as ``nobody`` when root);
    yields the DSN of its database ``aicc``. Raises ``RuntimeError`` if it does not
    start. The benchmarks start theirs with it too."""
    with restartable_postgresql(binaries) as server:
        yield server.dsn


def _postgres_binaries_or_skip() -> Path:
    """:func:`postgres_binaries`; a missing binary skips the test (fails it in CI)."""
    binaries = postgres_binaries()
    if binaries is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return binaries


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[str]:
    # A RuntimeError (it did not start) fails every test using it.
    with running_postgresql(_postgres_binaries_or_skip()) as dsn:
        yield dsn


@pytest.fixture
def own_postgresql() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, which it may stop, start and restart."""
    with restartable_postgresql(_postgres_binaries_or_skip()) as server:
        yield server


@pytest.fixture
def postgresql_dsn(postgresql_server: str) -> str:
    return postgresql_server


_campaigns = itertools.count()


@pytest.fixture
def campaign_name(request: pytest.FixtureRequest) -> str:
    """A campaign name of its own for each test (the server is shared by the session)."""
    return f"t{next(_campaigns)}-{request.node.name[:40]}-{os.getpid()}"


# --- a real redis-server for the state shared across processes --------------------------

_REDIS_START_TIMEOUT = 10.0


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throw-away ``redis-server`` on a free 127.0.0.1 port, no persistence, working in
    ``directory``: yields its URL and its process (a test may SIGSTOP it). Fails the
    test if it does not answer; skips it locally without the binary (fails it in CI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the Redis tests")
        pytest.skip(reason)
    port = _free_tcp_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + _REDIS_START_TIMEOUT
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer PING on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.send_signal(signal.SIGCONT)  # a stopped server cannot act on SIGTERM
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


@pytest.fixture
def own_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of the test's own (URL, process): one it may freeze (SIGSTOP)."""
    with running_redis(tmp_path_factory.mktemp("own-redis")) as started:
        yield started


@pytest.fixture
def redis_url(redis_server: str) -> str:
    import redis

    with contextlib.closing(redis.Redis.from_url(redis_server)) as client:
        client.flushall()
    return redis_server
