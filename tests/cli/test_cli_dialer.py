"""Dialer-grade campaigns through the ``aicc notify`` command (real subprocesses against
FakeAICC in its own process): calling hours, do-not-call lists, redials of the
unanswered and the contact history, on SQLite and on PostgreSQL.

* bad values (flags, a zone cell, a do-not-call line) exit 2 naming the bad part
  before anything is sent;
* numbers on a do-not-call list are suppressed, counted and exported, never phoned; a
  list edited mid-run is honoured, a bad line pauses the run until it is fixed;
* ``--no-wait`` with calling hours closed now exits 1 at once, saying what waits, yet
  records the release events of the calls it placed (and schedules their redials);
  Ctrl-C while waiting for calling hours is a clean stop;
* redials: each row called until answered or its attempts are used up;
* SIGKILL and resume, while redials wait and in the middle of a round of redials, on
  SQLite and PostgreSQL: no attempt lost, none made twice, the journal and the contact
  history account for every call FakeAICC saw, rows in flight at the kill end unknown
  and are not redialed;
* two workers on PostgreSQL share the redials and the contact history: every call
  kept once.

Nothing here waits for the wall clock to reach a window: the windows are computed
from the current time so that they are surely open, or surely closed.
"""

from __future__ import annotations

import collections
import csv
import itertools
import json
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

KEY = "cli-test-shared-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> tuple[str, ...]:
    """The arguments that make ``aicc notify`` receive its own release events."""
    return (
        "--callback-url", f"http://127.0.0.1:{port}/aicc/release",
        "--listen", f"127.0.0.1:{port}",
    )  # fmt: skip


def flat(text: str) -> str:
    return " ".join(text.split())


def report_json(aicc: Any, *journal: Any, env: dict[str, str]) -> dict[str, Any]:
    done = aicc.run("report", *journal, "--json", env=env)
    assert done.returncode == 0, done
    return dict(json.loads(done.stdout))


def answers(plan: dict[str, str]) -> list[str]:
    """FakeAICC's ``--answers`` arguments for ``plan`` (number -> outcomes)."""
    args: list[str] = []
    for called, outcomes in plan.items():
        args += ["--answers", f"{called}={outcomes}"]
    return args


def contacts(tmp_path: Path, write_csv: Callable[..., Path], called: list[str]) -> Path:
    """A contacts CSV (``id,called,text``) phoning ``called``, in order."""
    lines = [[i, number, "Hello"] for i, number in enumerate(called)]
    return write_csv(tmp_path / "contacts.csv", ["id", "called", "text"], lines)


def sqlite_query(path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """``sql`` on a SQLite file read-only (safe while a campaign writes it)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return list(db.execute(sql, args))
    finally:
        db.close()


def pg_query(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql, args)
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def poll(condition: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline} s")
        time.sleep(0.02)


# -- 1. bad values: exit 2 naming the bad part, nothing sent ---------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--calling-hours", "mon-fri 22:00-02:00"), ["--calling-hours", "22:00-02:00"]),
        (("--timezone", "Mars/Olympus"), ["--timezone", "Mars/Olympus"]),
        (("--attempts", "11"), ["--attempts", "11"]),
        (("--redial-after", "soon"), ["--redial-after", "soon"]),
        (("--max-calls-per-number", "3/7d"), ["--max-calls-per-number", "--contact-history"]),
        (("--do-not-call", "{tmp}/missing.txt"), ["missing.txt", "does not exist"]),
        (("--do-not-call", "{tmp}/opt-outs.txt"), ["opt-outs.txt", "line 3", "1390000x002"]),
    ],
    ids=[
        "hours",
        "zone",
        "attempts",
        "redial-after",
        "limit-no-history",
        "dnc-missing",
        "dnc-line",
    ],
)
def test_a_bad_value_exits_2_naming_it_and_sends_nothing(
    tmp_path, fake, aicc, write_contacts, args, named
):
    source = write_contacts(tmp_path / "contacts.csv", 5)
    (tmp_path / "opt-outs.txt").write_text("# opt-outs\n13900000001\n1390000x002\n")
    args = tuple(a.format(tmp=tmp_path) for a in args)
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", *args, env=fake.env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.output, done
    for part in named:
        assert part in flat(done.stderr), done
    assert fake.calls() == {}


@pytest.mark.parametrize("hours", [None, "00:00-24:00"], ids=["plain", "calling-hours"])
def test_a_timezone_cell_that_is_no_zone_exits_2_before_anything_is_sent(
    tmp_path, fake, aicc, write_csv, number_of, hours
):
    # The bad cell comes after good rows: none of them may have been phoned already.
    rows = [[i, number_of(i), "Hi", "Asia/Shanghai"] for i in range(30)]
    rows.append([30, number_of(30), "Hi", "Mars/Olympus"])
    source = write_csv(tmp_path / "contacts.csv", ["id", "called", "text", "timezone"], rows)
    extra = () if hours is None else ("--calling-hours", hours)
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", *extra, env=fake.env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.output, done
    stderr = flat(done.stderr)
    assert "contacts.csv line 32: timezone: 'Mars/Olympus'" in stderr, done
    assert fake.calls() == {}


# -- 2. do-not-call lists -------------------------------------------------------------------


def test_numbers_on_a_do_not_call_list_are_suppressed_counted_and_exported(
    tmp_path, fake, aicc, write_contacts, number_of
):
    n = 20
    source = write_contacts(tmp_path / "contacts.csv", n)
    blocked = {3, 7, 11}
    # A plain list (with separators and a +86-free form) and a CSV with a called column.
    (tmp_path / "opt-outs.txt").write_text(f"# asked not to be called\n{number_of(3)}\n")
    (tmp_path / "more.csv").write_text(
        f"called,why\n{number_of(7)[:3]} {number_of(7)[3:]},complaint\n{number_of(11)},opt-out\n"
    )
    journal = tmp_path / "j.db"
    command = (
        "notify", source, "--journal", journal,
        "--do-not-call", tmp_path / "opt-outs.txt", "--do-not-call", tmp_path / "more.csv",
    )  # fmt: skip
    done = aicc.run(*command, env=fake.env)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output, done
    assert fake.calls() == {number_of(i): 1 for i in range(n) if i not in blocked}

    report = report_json(aicc, journal, env=fake.env)
    assert report["states"]["suppressed"] == len(blocked), report
    assert report["states"]["done"] == n - len(blocked), report

    export = tmp_path / "export.csv"
    exported = aicc.run("report", journal, "--export", export, env=fake.env)
    assert exported.returncode == 0, exported
    with export.open(newline="", encoding="utf-8") as f:
        states = {row["id"]: row["state"] for row in csv.DictReader(f)}
    assert {key for key, state in states.items() if state == "suppressed"} == {
        str(i) for i in blocked
    }

    again = aicc.run(*command, env=fake.env)  # a resume phones nobody, still settled
    assert again.returncode == 0, again
    assert sum(fake.calls().values()) == n - len(blocked)


def test_a_list_edited_mid_run_is_honoured_and_a_bad_line_pauses_until_fixed(
    tmp_path, start_fake, aicc, write_contacts, number_of, journal_rows
):
    n = 100
    fake = start_fake(0.05)
    source = write_contacts(tmp_path / "contacts.csv", n)
    opt_outs = tmp_path / "opt-outs.txt"
    opt_outs.write_text("# nobody yet\n")
    journal = tmp_path / "j.db"
    # The live line (what the run waits for) is drawn as on a terminal.
    env = {**fake.env, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    running = aicc.start(
        "notify", source, "--journal", journal, "--concurrency", "1",
        "--do-not-call", opt_outs,
        env=env,
    )  # fmt: skip
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 5)
    # Opt-outs arrive mid-run (the last rows, seconds away at one call at a time).
    opt_outs.write_text(f"# asked today\n{number_of(98)}\n{number_of(99)}\n")
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 20)
    # A typo: new calls stop, and the run says why, until the list is corrected.
    opt_outs.write_text(f"{number_of(98)}\n{number_of(99)}\n1390000x097\n")
    said = flat(running.wait_for_stderr("1390000x097", deadline=15))
    assert "Paused:" in said, said
    assert "opt-outs.txt' line 3" in said, said
    at_pause = fake.processed()
    assert at_pause < n - 2
    opt_outs.write_text(f"{number_of(97)}\n{number_of(98)}\n{number_of(99)}\n")
    done = running.wait(60)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output, done
    assert fake.calls() == {number_of(i): 1 for i in range(97)}
    states = {r["called"]: r["state"] for r in journal_rows(journal)}
    assert [states[number_of(i)] for i in (97, 98, 99)] == ["suppressed"] * 3


# -- 3. --no-wait while calling hours are closed --------------------------------------------


def test_no_wait_outside_calling_hours_exits_1_at_once_saying_what_waits(
    tmp_path, fake, aicc, write_contacts
):
    # A one-hour window twelve hours away (UTC), never crossing midnight: closed now.
    hour = (datetime.now(timezone.utc).hour + 12) % 24
    window = f"{hour:02d}:00-{hour + 1:02d}:00"
    source = write_contacts(tmp_path / "contacts.csv", 7)
    done = aicc.run(
        "notify", source, "--journal", tmp_path / "j.db",
        "--calling-hours", window, "--timezone", "UTC", "--no-wait",
        env=fake.env, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "Traceback" not in done.output, done
    stderr = flat(done.stderr)
    assert "7 rows wait for calling hours" in stderr, done
    assert f"next window opens {hour:02d}:00" in stderr, done
    assert done.elapsed < 20, done  # at once, not after sleeping
    assert fake.calls() == {}


@pytest.mark.parametrize("terminal", [True, False], ids=["live-line", "log-file"])
def test_ctrl_c_while_waiting_for_calling_hours_is_a_clean_stop(
    tmp_path, fake, aicc, write_contacts, read_journal, terminal
):
    hour = (datetime.now(timezone.utc).hour + 12) % 24
    source = write_contacts(tmp_path / "contacts.csv", 7)
    journal = tmp_path / "j.db"
    env = fake.env  # stderr a file (cron): the wait is written as a line of its own
    if terminal:
        env = {**fake.env, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}  # the live line
    running = aicc.start(
        "notify", source, "--journal", journal,
        "--calling-hours", f"{hour:02d}:00-{hour + 1:02d}:00", "--timezone", "UTC",
        env=env,
    )  # fmt: skip
    running.wait_for_stderr("7 rows wait for calling hours; next window opens", deadline=20)
    running.signal(signal.SIGINT)
    done = running.wait(15)
    assert done.returncode == 130, done
    assert "Traceback" not in done.output, done
    assert "Run the same command again to resume" in flat(done.stderr), done
    assert fake.calls() == {}
    assert [r["state"] for r in read_journal(journal)] == ["pending"] * 7


def hours_open_now() -> str:
    """Calling hours open from an hour ago to an hour ahead (UTC), split at midnight:
    closed now in a zone twelve hours away."""
    now = datetime.now(timezone.utc)
    start, end = now.hour * 60 + now.minute - 60, now.hour * 60 + now.minute + 61
    spans = [(start, end)]
    if start < 0:
        spans = [(0, end), (start + 1440, 1440)]
    elif end > 1440:
        spans = [(start, 1440), (0, end - 1440)]
    return ", ".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in spans)


def test_no_wait_still_records_the_release_events_of_the_calls_it_placed(
    tmp_path, start_fake, aicc, write_csv
):
    # Four rows may be called now, three (twelve hours ahead) wait for calling hours:
    # --no-wait exits 1, but not before the events of the four calls are recorded
    # (nobody would be listening for them after the exit).
    called = numbers()[:7]
    fake = start_fake(0.0, "--callback-key", KEY, "--release-delay", "0.3")
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    zones = ["UTC"] * 4 + ["Etc/GMT-12"] * 3
    lines = [[i, number, "Hello", zones[i]] for i, number in enumerate(called)]
    source = write_csv(tmp_path / "contacts.csv", ["id", "called", "text", "timezone"], lines)
    journal = tmp_path / "j.db"
    done = aicc.run(
        "notify", source, "--journal", journal, *listening(free_port()),
        "--calling-hours", hours_open_now(), "--no-wait", "--wait-outcomes", "20",
        env=env, timeout=40,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "3 rows wait for calling hours" in flat(done.stderr), done
    assert fake.calls() == dict.fromkeys(called[:4], 1)
    events = fake.stats()["release_events"]
    assert events["delivered"] == 4, events
    assert events["failed"] == 0, events
    rows = sqlite_query(journal, "SELECT key, outcome FROM rows ORDER BY seq")
    assert [r["outcome"] is not None for r in rows] == [True] * 4 + [False] * 3


def test_no_wait_schedules_the_redials_of_its_calls_before_it_exits(
    tmp_path, start_fake, aicc, write_csv
):
    called = numbers()[:5]
    plan = dict.fromkeys(called, "never")
    fake = start_fake(0.0, "--callback-key", KEY, "--release-delay", "0.3", *answers(plan))
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = contacts(tmp_path, write_csv, called)
    journal = tmp_path / "j.db"
    command = (
        "notify", source, "--journal", journal, *listening(free_port()),
        "--attempts", "2", "--redial-after", "1h", "--no-wait", "--wait-outcomes", "20",
    )  # fmt: skip
    done = aicc.run(*command, env=env, timeout=40)
    assert done.returncode == 1, done
    assert "5 rows wait for a redial" in flat(done.stderr), done
    assert fake.stats()["release_events"]["failed"] == 0
    rows = sqlite_query(journal, "SELECT outcome, due, attempt, state FROM rows")
    assert [(r["state"], r["attempt"], r["due"] is not None) for r in rows] == [
        ("pending", 1, True)
    ] * 5
    assert len(sqlite_query(journal, "SELECT * FROM attempts WHERE outcome = 'not_answered'")) == 5

    again = aicc.run(*command, env=env, timeout=40)  # an hour early: nothing to do yet
    assert again.returncode == 1, again
    assert "5 rows wait for a redial" in flat(again.stderr), again
    assert fake.calls() == dict.fromkeys(called, 1)


# -- 4. redials ------------------------------------------------------------------------------


def test_unanswered_rows_are_redialed_until_answered_or_attempts_used_up(
    tmp_path, start_fake, aicc, write_contacts, number_of, read_journal
):
    plan = {number_of(0): "no_answer,answered", number_of(1): "never", number_of(2): "answered"}
    fake = start_fake(0.0, "--callback-key", KEY, "--release-delay", "0.05", *answers(plan))
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = write_contacts(tmp_path / "contacts.csv", 3)
    journal = tmp_path / "j.db"
    done = aicc.run(
        "notify", source, "--journal", journal, *listening(free_port()),
        "--attempts", "3", "--redial-after", "1s",  # 1 s: the shortest duration accepted
        "--wait-outcomes", "20",
        env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done
    assert "Traceback" not in done.output, done
    assert fake.calls() == {number_of(0): 2, number_of(1): 3, number_of(2): 1}

    report = report_json(aicc, journal, env=env)
    assert report["attempts"] == {"1": 1, "2": 1, "3": 1}, report
    assert report["outcomes"]["answered"] == 2, report
    assert report["outcomes"]["not_answered"] == 1, report
    rows = {r["called"]: r for r in read_journal(journal)}
    assert rows[number_of(1)]["outcome"] == "not_answered"
    assert rows[number_of(0)]["outcome"] == "answered"


# -- 5./6./7. SIGKILL and resume -------------------------------------------------------------

N = 40

#: A block of numbers for each campaign: the PostgreSQL contact history is shared by the
#: session's tests, and a number's calls there count for every campaign.
_blocks = itertools.count()


def numbers(count: int = N) -> list[str]:
    """``count`` numbers no other test of this module calls."""
    block = next(_blocks)
    return [f"136{block:03d}{i:05d}" for i in range(count)]


class Journal:
    """Where a campaign's rows, archived attempts and contact history are read from."""

    def rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def attempts(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def history(self) -> collections.Counter[str]:
        raise NotImplementedError


class SqliteJournal(Journal):
    def __init__(self, path: Path, history: Path) -> None:
        self.path = path
        self.history_path = history
        self.args: tuple[Any, ...] = ("--journal", path)
        self.history_args: tuple[Any, ...] = ("--contact-history", history)
        self.report: tuple[Any, ...] = (path,)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [dict(r) for r in sqlite_query(self.path, "SELECT * FROM rows ORDER BY seq")]

    def attempts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in sqlite_query(self.path, "SELECT * FROM attempts")]

    def history(self) -> collections.Counter[str]:
        return collections.Counter(
            r["number"] for r in sqlite_query(self.history_path, "SELECT number FROM contacts")
        )


class PostgresJournal(Journal):
    def __init__(self, dsn: str, name: str) -> None:
        self.dsn = dsn
        self.name = name
        # A dead worker's rows in flight are unknown once its lease expired: 3 s.
        self.args = ("--journal", dsn, "--campaign", name, "--lease", "3")
        self.history_args = ("--contact-history", dsn)
        self.report = (dsn, "--campaign", name)

    def rows(self) -> list[dict[str, Any]]:
        if not pg_query(self.dsn, "SELECT to_regclass('aicc_rows') AS t")[0]["t"]:
            return []
        return pg_query(
            self.dsn, "SELECT * FROM aicc_rows WHERE campaign = %s ORDER BY seq", self.name
        )

    def attempts(self) -> list[dict[str, Any]]:
        return pg_query(self.dsn, "SELECT * FROM aicc_attempts WHERE campaign = %s", self.name)

    def history(self) -> collections.Counter[str]:
        found = pg_query(
            self.dsn, "SELECT number FROM aicc_contacts WHERE campaign LIKE %s", f"%'{self.name}'%"
        )
        return collections.Counter(r["number"] for r in found)


def kill_and_resume(
    tmp_path: Path,
    start_fake: Callable[..., Any],
    aicc: Any,
    write_csv: Callable[..., Path],
    journal: Journal,
    *,
    attempts: int,
    kill_when: str,
    history: bool,
) -> None:
    """``aicc notify`` of N never-answering numbers, SIGKILLed either while every row
    waits for its redial (``kill_when="waiting"``) or in the middle of the round of
    redials (``"redialing"``), then run again to its end; checks the journal, the
    archived attempts and (``history``) the contact history against FakeAICC's calls."""
    called = numbers()
    source = contacts(tmp_path, write_csv, called)
    plan = dict.fromkeys(called, "never")
    # The release events come 0.3 s after each call: one for a call in flight at the
    # kill never reaches the killed process first; nobody listens when it is delivered.
    fake = start_fake(0.1, "--callback-key", KEY, "--release-delay", "0.3", *answers(plan))
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    command = (
        "notify", source, *journal.args, *listening(free_port()),
        "--concurrency", "4", "--attempts", str(attempts), "--redial-after", "3s",
        "--wait-outcomes", "5",
        *((*journal.history_args, "--max-calls-per-number", f"{attempts}/1d") if history else ()),
    )  # fmt: skip

    first = aicc.start(*command, env=env)
    if kill_when == "waiting":
        # Every first call's release event recorded and its redial scheduled.
        poll(
            lambda: sum(1 for r in journal.rows() if r["due"] is not None) == N,
            f"all {N} rows scheduled for a redial",
        )
    else:
        fake.wait_for(
            lambda s: (
                # well into the redials, with calls in flight
                (s["processed"]["createVoiceNotification"] >= N + N // 4 and s["in_flight"] > 0)
                or first.proc.poll() is not None
            )
        )
    assert first.proc.poll() is None, f"the campaign ended before the kill: {first.wait()}"
    first.signal(signal.SIGKILL)
    assert first.wait(10).returncode == -signal.SIGKILL
    in_flight = {r["number"] for r in journal.rows() if r["state"] == "sending"}
    if kill_when == "waiting":
        assert fake.calls() == dict.fromkeys(called, 1)
        assert not in_flight
    else:
        assert fake.processed() < N * attempts
    # The events nobody could receive are given up before the resume listens.
    fake.wait_for(lambda s: s["release_events"]["pending"] == 0)

    second = aicc.run(*command, env=env, timeout=60)
    assert "Traceback" not in second.output, second
    calls = fake.calls()
    rows = journal.rows()
    assert len(rows) == N
    archived = collections.Counter(a["seq"] for a in journal.attempts())
    references = [a["reference"] for a in journal.attempts()] + [
        r["reference"] for r in rows if r["reference"] is not None
    ]
    assert len(references) == len(set(references)), "a call recorded twice"
    states = collections.Counter(r["state"] for r in rows)
    assert states["pending"] == states["sending"] == states["limited"] == 0, states
    for row in rows:
        placed = calls.get(row["number"], 0)
        assert placed <= attempts, row
        # Each earlier attempt archived once, the last one in the row.
        assert archived[row["seq"]] == row["attempt"] - 1, row
        if row["number"] in in_flight:
            # In flight at the kill: its outcome is unknown, and it is never redialed.
            assert row["state"] == "unknown", row
            assert row["attempt"] - 1 <= placed <= row["attempt"], row
        else:
            assert row["state"] == "done", row
            assert placed == row["attempt"], row
            if row["outcome"] == "not_answered":  # heard: redialed until used up
                assert placed == attempts, row
    if kill_when == "waiting":
        # Nothing was lost while the redials waited: every number got all its calls.
        assert calls == dict.fromkeys(called, attempts)
        assert second.returncode == 0, second
    else:
        assert 1 <= len(in_flight) <= 4
        assert second.returncode == (1 if in_flight else 0), second
        assert sum(calls.values()) > N + N // 4  # the resume made the redials left
    report = report_json(aicc, *journal.report, env=env)
    assert sum(report["attempts"].values()) == N, report
    assert {int(k): v for k, v in report["attempts"].items()} == dict(
        collections.Counter(r["attempt"] for r in rows)
    ), report

    if history:
        entries = journal.history()
        for number in {r["number"] for r in rows}:
            possibly = 1 if number in in_flight else 0
            # Every call placed recorded; at most the call possibly placed beyond them.
            assert calls.get(number, 0) <= entries[number] <= calls.get(number, 0) + possibly, (
                number,
                entries[number],
                calls.get(number),
            )


@pytest.mark.parametrize("history", [False, True], ids=["journal", "history"])
@pytest.mark.parametrize("kill_when", ["waiting", "redialing"])
def test_sqlite_redials_and_history_survive_sigkill_and_resume(
    tmp_path, start_fake, aicc, write_csv, kill_when, history
):
    journal = SqliteJournal(tmp_path / "j.db", tmp_path / "history.db")
    kill_and_resume(
        tmp_path, start_fake, aicc, write_csv, journal,
        attempts=2 if kill_when == "waiting" else 3, kill_when=kill_when, history=history,
    )  # fmt: skip


@pytest.mark.parametrize("kill_when", ["waiting", "redialing"])
def test_postgresql_redials_and_history_survive_sigkill_and_resume(
    tmp_path, start_fake, aicc, write_csv, postgresql_dsn, campaign_name, kill_when
):
    journal = PostgresJournal(postgresql_dsn, campaign_name)
    kill_and_resume(
        tmp_path, start_fake, aicc, write_csv, journal,
        attempts=2 if kill_when == "waiting" else 3, kill_when=kill_when, history=True,
    )  # fmt: skip


@pytest.mark.parametrize("attempts", [2, 3])
def test_two_postgresql_workers_share_the_redials_and_keep_every_call_once(
    tmp_path, start_fake, aicc, write_csv, postgresql_dsn, campaign_name, attempts
):
    called = numbers(150)
    # A third answer at once, a third on the second call, a third never.
    outcomes = ["answered", "no_answer,answered", "never"]
    plan = {number: outcomes[i % 3] for i, number in enumerate(called)}
    expected = {number: min(1 + i % 3, attempts) for i, number in enumerate(called)}
    fake = start_fake(0.01, "--callback-key", KEY, "--release-delay", "0.05", *answers(plan))
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    journal = PostgresJournal(postgresql_dsn, campaign_name)
    command = (
        "notify", contacts(tmp_path, write_csv, called), *journal.args, "--concurrency", "4",
        "--attempts", str(attempts), "--redial-after", "1s", "--wait-outcomes", "20",
        *journal.history_args, "--max-calls-per-number", f"{attempts}/1d",
    )  # fmt: skip
    # Each worker receives the release events of its own calls.
    workers = [aicc.start(*command, *listening(free_port()), env=env) for _ in range(2)]
    for worker in workers:
        done = worker.wait(60)
        assert done.returncode == 0, done
        assert "Traceback" not in done.output, done
    assert fake.calls() == expected  # nobody called more than attempts times
    rows = journal.rows()
    assert collections.Counter(r["outcome"] for r in rows) == {"answered": 100, "not_answered": 50}
    assert {r["number"]: r["attempt"] for r in rows} == expected
    # Every call kept once: the earlier ones archived, each with its own call serial number.
    archived = journal.attempts()
    assert collections.Counter(a["number"] for a in archived) == {
        number: count - 1 for number, count in expected.items() if count > 1
    }
    assert all(a["outcome"] == "not_answered" and a["reference"] for a in archived), archived
    references = [a["reference"] for a in archived] + [r["reference"] for r in rows]
    assert len(set(references)) == sum(expected.values())
    # The shared contact history holds each call once (none limited by a double entry).
    assert journal.history() == expected


def test_a_postgresql_worker_killed_mid_redials_loses_no_attempt_and_repeats_none(
    tmp_path, start_fake, aicc, write_csv, postgresql_dsn, campaign_name
):
    n, attempts = 80, 3
    called = numbers(n)
    fake = start_fake(
        0.05, "--callback-key", KEY, "--release-delay", "0.3",
        *answers(dict.fromkeys(called, "never")),
    )  # fmt: skip
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = contacts(tmp_path, write_csv, called)
    journal = PostgresJournal(postgresql_dsn, campaign_name)
    command = (
        "notify", source, *journal.args, "--concurrency", "3",
        "--attempts", str(attempts), "--redial-after", "1s", "--wait-outcomes", "5",
        *journal.history_args,
    )  # fmt: skip
    doomed, survivor = (aicc.start(*command, *listening(free_port()), env=env) for _ in range(2))
    fake.wait_for(
        lambda s: (
            (s["processed"]["createVoiceNotification"] >= n + 20 and s["in_flight"] > 0)
            or doomed.proc.poll() is not None
        )
    )
    assert doomed.proc.poll() is None, doomed.wait()
    doomed.signal(signal.SIGKILL)
    assert doomed.wait(10).returncode == -signal.SIGKILL
    in_flight = {r["number"] for r in journal.rows() if r["state"] == "sending"}

    done = survivor.wait(60)
    assert "Traceback" not in done.output, done
    assert done.returncode in (0, 1), done
    calls = fake.calls()
    rows = journal.rows()
    archived = collections.Counter(a["seq"] for a in journal.attempts())
    references = [a["reference"] for a in journal.attempts()] + [
        r["reference"] for r in rows if r["reference"] is not None
    ]
    assert len(references) == len(set(references)), "a call recorded twice"
    assert {r["state"] for r in rows} <= {"done", "unknown"}, collections.Counter(
        r["state"] for r in rows
    )
    entries = journal.history()
    for row in rows:
        placed = calls.get(row["number"], 0)
        assert placed <= attempts, row
        assert archived[row["seq"]] == row["attempt"] - 1, row
        if row["state"] == "unknown":  # in flight in the dead worker: never redialed
            assert row["number"] in in_flight, row
            assert row["attempt"] - 1 <= placed <= row["attempt"], row
        else:
            assert placed == row["attempt"], row
        assert placed <= entries[row["number"]] <= row["attempt"], (row, entries[row["number"]])
    assert sum(calls.values()) > n + 20  # the survivor went on with the redials
