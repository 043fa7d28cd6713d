"""Fixtures for the ``aicc`` command-line tests: every test runs the real CLI in a
subprocess against FakeAICC running in its own process (``python -m aicc_async.testing``).

Fixtures:

* ``start_fake(latency=0.0, *extra_args)``: start a FakeAICC process; returns a
  :class:`FakeProcess` (``.url``, ``.env``, ``.stats()``); stopped at teardown.
* ``fake``: one FakeAICC process without latency.
* ``plain_env``: the environment without AICC_* variables (``COLUMNS=200``, ``NO_COLOR=1``).
* ``aicc``: an :class:`AiccRunner` (``.run(*args, env=...)`` / ``.start(*args, env=...)``).
* ``write_contacts(path, n)``: a contacts CSV (``id,called,text``) of ``n`` rows.
* ``journal_rows(path)``: the journal's rows as dicts (read with sqlite3).
* ``number_of(i)``: the number of contact ``i`` in those files.
* ``read_journal(path)``: the journal's rows, read with a read-only connection.
* ``write_csv(path, header, rows)``: a CSV of any columns.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

#: ``aicc`` as a subprocess, in whatever venv runs the tests (no console script needed).
AICC = [sys.executable, "-c", "import sys; from aicc_async.cli import main; sys.exit(main())"]

_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0


def number(i: int) -> str:
    """The distinct 11-digit number of contact ``i``."""
    return f"139{i:08d}"


#: Where the subprocesses keep their bytecode (set for the session, outside the repo).
_PYCACHE: list[str] = []


def base_env() -> dict[str, str]:
    """os.environ without AICC_* settings, with a wide, colourless console.

    The subprocesses share a bytecode cache in a temporary directory (each of the
    dozens of ``aicc`` runs would otherwise compile the package again).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICC_")}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1")
    env.pop("FORCE_COLOR", None)
    if _PYCACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE[0]
    return env


@pytest.fixture(scope="session", autouse=True)
def _bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _PYCACHE.append(str(tmp_path_factory.mktemp("pycache")))
    yield
    _PYCACHE.clear()


class FakeProcess:
    """A FakeAICC serving in a subprocess."""

    def __init__(self, proc: subprocess.Popen[str], url: str, app_key: str, app_secret: str):
        self.proc = proc
        self.url = url
        self.app_key = app_key
        self.app_secret = app_secret
        self.env = base_env()
        self.env.update(AICC_BASE_URL=url, AICC_APP_KEY=app_key, AICC_APP_SECRET=app_secret)

    def stats(self) -> dict[str, Any]:
        """``GET /_fake/stats`` (the fake's counters)."""
        with urllib.request.urlopen(f"{self.url}/_fake/stats", timeout=10) as answer:  # noqa: S310 - http://127.0.0.1 only
            return json.loads(answer.read())

    def calls(self) -> dict[str, int]:
        """createVoiceNotification calls placed, per number."""
        return dict(self.stats()["calls"])

    def processed(self) -> int:
        """createVoiceNotification requests processed so far."""
        return int(self.stats()["processed"]["createVoiceNotification"])

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], *, deadline: float = 30.0
    ) -> dict[str, Any]:
        """Poll the stats until ``condition(stats)`` holds; returns those stats."""
        end = time.monotonic() + deadline
        while True:
            stats = self.stats()
            if condition(stats):
                return stats
            if time.monotonic() > end:
                raise AssertionError(f"condition not met within {deadline} s; stats: {stats}")
            time.sleep(0.01)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """End ``proc``: ``sig``, then SIGKILL after a timeout; always reaps it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(_STOP_TIMEOUT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def start_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., FakeProcess]]:
    """Factory: ``start_fake(latency=0.0, *extra_args)`` starts FakeAICC in its own process
    (``python -m aicc_async.testing --port 0 --no-record --latency ...``); every one
    started is stopped at teardown (SIGTERM, then SIGKILL)."""
    procs: list[subprocess.Popen[str]] = []
    logs = tmp_path_factory.mktemp("fake-aicc")

    def start(latency: float = 0.0, *extra: str) -> FakeProcess:
        # stderr goes to a file: a pipe nobody drains could fill up and stall the fake.
        log = logs / f"stderr-{len(procs)}.txt"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aicc_async.testing",
                    "--port",
                    "0",
                    "--no-record",
                    "--latency",
                    str(latency),
                    *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                text=True,
                env=base_env(),
                start_new_session=True,
            )
        procs.append(proc)
        line = _first_line(proc, _START_TIMEOUT)
        try:
            ready = json.loads(line)
        except ValueError:
            stop_process(proc, signal.SIGKILL)
            raise AssertionError(
                f"FakeAICC did not start: {line!r}; stderr: {log.read_text()}"
            ) from None
        return FakeProcess(proc, ready["url"], ready["app_key"], ready["app_secret"])

    yield start
    for proc in procs:
        stop_process(proc, signal.SIGTERM)


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of ``proc`` ("" if none came within ``timeout`` seconds)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline()


@pytest.fixture
def plain_env() -> dict[str, str]:
    """The environment for ``aicc`` without any AICC_* variable (wide, no colour)."""
    return base_env()


@pytest.fixture
def fake(start_fake: Callable[..., FakeProcess]) -> FakeProcess:
    """A FakeAICC process answering at once."""
    return start_fake()


class Finished:
    """What a finished ``aicc`` process left: exit status, stdout, stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str, elapsed: float) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return (
            f"<aicc exit {self.returncode} after {self.elapsed:.1f} s\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}>"
        )


class Running:
    """An ``aicc`` process started in the background; its output goes to files."""

    def __init__(self, args: list[str], env: dict[str, str], directory: Path) -> None:
        self._out = directory / "stdout.txt"
        self._err = directory / "stderr.txt"
        self.started = time.monotonic()
        with self._out.open("w") as out, self._err.open("w") as err:
            self.proc = subprocess.Popen(
                [*AICC, *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> Finished:
        try:
            returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, signal.SIGKILL)
            raise AssertionError(
                f"aicc did not finish within {timeout} s; stderr so far:\n"
                f"{self._err.read_text(errors='replace')}"
            ) from None
        return Finished(
            returncode,
            self._out.read_text(errors="replace"),
            self._err.read_text(errors="replace"),
            time.monotonic() - self.started,
        )

    def wait_for_stderr(self, text: str, *, deadline: float = 10.0) -> str:
        """Poll the stderr written so far until it contains ``text``; returns it."""
        end = time.monotonic() + deadline
        while True:
            written = self._err.read_text(errors="replace")
            if text in " ".join(written.split()):
                return written
            if time.monotonic() > end or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not on stderr within {deadline} s: {written}")
            time.sleep(0.01)


class AiccRunner:
    """Runs ``aicc`` as a subprocess (``python -c 'from aicc_async.cli import main'``)."""

    #: The command line that runs ``aicc`` (add its arguments).
    command = AICC

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._running: list[Running] = []
        self._count = 0

    def run(
        self, *args: str | os.PathLike[str], env: dict[str, str], timeout: float = 60.0
    ) -> Finished:
        """Run ``aicc args`` to completion."""
        return self.start(*args, env=env).wait(timeout)

    def start(self, *args: str | os.PathLike[str], env: dict[str, str]) -> Running:
        """Start ``aicc args`` in the background."""
        self._count += 1
        directory = self._directory / f"aicc-run-{self._count}"
        directory.mkdir(parents=True)
        running = Running([os.fspath(a) for a in args], env, directory)
        self._running.append(running)
        return running

    def close(self) -> None:
        for running in self._running:
            stop_process(running.proc, signal.SIGKILL)


@pytest.fixture
def aicc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AiccRunner]:
    """Runs the ``aicc`` command in subprocesses; any left running are killed at teardown."""
    runner = AiccRunner(tmp_path_factory.mktemp("aicc-output"))
    yield runner
    runner.close()


def _write_contacts(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "called", "text"])
        for i in range(n):
            writer.writerow([str(i), number(i), f"Hello contact {i}, this is a test."])
    return path


@pytest.fixture
def write_contacts() -> Callable[..., Path]:
    """``write_contacts(path, n)``: a CSV of ``n`` rows ``id,called,text`` (ids 0..n-1,
    numbers ``139`` + 8 digits, all distinct); returns ``path``."""
    return _write_contacts


def _journal_rows(path: Path) -> list[dict[str, Any]]:
    assert path.is_file(), f"no journal at {path}"
    db = sqlite3.connect(path)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM rows ORDER BY seq")]
    finally:
        db.close()


@pytest.fixture
def journal_rows() -> Callable[[Path], list[dict[str, Any]]]:
    """``journal_rows(path)``: every row of a (closed) journal as a dict, in input order;
    ``called`` is added from the payload when present."""

    def read(path: Path) -> list[dict[str, Any]]:
        rows = _journal_rows(path)
        for row in rows:
            payload = json.loads(row["payload"])
            row["called"] = payload.get("called")
        return rows

    return read


@pytest.fixture
def number_of() -> Callable[[int], str]:
    """``number_of(i)``: the number of contact ``i`` in ``write_contacts`` files."""
    return number


def _read_only_rows(path: Path) -> list[dict[str, Any]]:
    assert path.is_file(), f"no journal at {path}"
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM rows ORDER BY seq")]
    finally:
        db.close()
    for row in rows:
        row["called"] = json.loads(row["payload"]).get("called")
    return rows


@pytest.fixture
def read_journal() -> Callable[[Path], list[dict[str, Any]]]:
    """``read_journal(path)``: every row of a journal as a dict, in input order, read with
    a read-only connection (safe while a campaign runs or after a kill: it never
    checkpoints); ``called`` is added from the payload. SQLite may still create an
    empty ``-wal`` / ``-shm`` next to the file."""
    return _read_only_rows


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[str(cell) for cell in row] for row in rows])
    return path


@pytest.fixture
def write_csv() -> Callable[..., Path]:
    """``write_csv(path, header, rows)``: a UTF-8 CSV with ``header`` then ``rows``
    (cells written with ``str``); returns ``path``."""
    return _write_csv
