"""Issue 9, campaigns you can trust with real data: the journal is bound to its target
and to its input, nobody is phoned twice for a repeated number, a finished campaign
says so, --concurrency is honoured, ``aicc report`` only reads, exports cannot destroy
the journal or run as formulas, markup in data is shown as typed, the journal does
not live without its ``-wal`` after a kill, and errors outside AICC neither mislabel
rows nor end in a traceback.

Real ``aicc`` processes against FakeAICC in its own process, counting what FakeAICC
received; journals are read with a read-only connection.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import http.server
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from shown import flat, no_traceback, one_message

from aicc_async.bulk.journal.rules import STATES as JOURNAL_STATES

CREATE = "createVoiceNotification"
STATES = set(JOURNAL_STATES)  # every state the report counts
ANSI_SGR = re.compile(r"\x1b\[[0-9;]*m")


def states_of(rows: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(r["state"] for r in rows)


def report_json(aicc, journal: Path, env: dict[str, str]) -> dict[str, Any]:
    done = aicc.run("report", journal, "--json", env=env)
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def digest(path: Path) -> str | None:
    """sha256 of the file's bytes (None: no such file)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def wal(journal: Path) -> Path:
    return journal.with_name(journal.name + "-wal")


def shm(journal: Path) -> Path:
    return journal.with_name(journal.name + "-shm")


def created(fake) -> int:
    """createVoiceNotification requests FakeAICC received (processed or not)."""
    return int(fake.stats()["received"][CREATE])


def keep_rows(source: Path, keep: Callable[[str], bool]) -> None:
    """Rewrite the CSV ``source`` with only the rows whose ``id`` ``keep`` accepts."""
    with source.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    with source.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(r for r in rows if keep(r[header.index("id")]))


# ---------------------------------------------------------------------------------------
# 1. A journal is bound to where it was sent


def test_a_sandbox_journal_refuses_the_real_tenant(
    tmp_path, fake, plain_env, aicc, write_contacts, read_journal
):
    source = write_contacts(tmp_path / "small.csv", 3)
    journal = tmp_path / "sb.db"
    first = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert first.returncode == 0, first

    second = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert second.returncode == 2, second
    message = one_message(second)
    assert "sandbox" in message, second
    assert "--journal" in message, second
    stats = fake.stats()
    assert stats["calls"] == {}
    assert stats["received"][CREATE] == 0
    assert "done 3" not in flat(second.stdout), second
    assert [(r["state"], r["sends"]) for r in read_journal(journal)] == [("done", 1)] * 3


def test_a_journal_refuses_another_base_url_and_keeps_no_secret(
    tmp_path, start_fake, aicc, write_contacts, read_journal, number_of
):
    first_aicc, other_aicc = start_fake(), start_fake()
    source = write_contacts(tmp_path / "contacts.csv", 5)
    journal = tmp_path / "campaign.db"
    first = aicc.run("notify", source, "--journal", journal, env=first_aicc.env)
    assert first.returncode == 0, first

    write_contacts(source, 10)  # five more rows: there is something to send
    second = aicc.run("notify", source, "--journal", journal, env=other_aicc.env)
    assert second.returncode == 2, second
    message = one_message(second)
    assert "belongs to" in message, second
    assert first_aicc.url in message, second
    assert "--journal" in message, second
    assert other_aicc.stats()["received"][CREATE] == 0
    assert created(first_aicc) == 5
    assert set(first_aicc.calls()) == {number_of(i) for i in range(5)}
    assert all(r["sends"] <= 1 for r in read_journal(journal))

    secret = first_aicc.app_secret.encode()
    for path in (journal, wal(journal)):
        if path.exists():
            assert secret not in path.read_bytes(), f"the app secret is stored in {path}"


def test_a_journal_refuses_another_app_key(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 5)
    journal = tmp_path / "campaign.db"
    first = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert first.returncode == 0, first
    before = fake.stats()

    write_contacts(source, 10)
    env = {**fake.env, "AICC_APP_KEY": "another-app-key"}
    second = aicc.run("notify", source, "--journal", journal, env=env)
    assert second.returncode == 2, second
    message = one_message(second)
    assert "belongs to" in message, second
    assert "--journal" in message, second
    after = fake.stats()
    assert after["received"][CREATE] == before["received"][CREATE]
    # Refused from the journal alone: AICC was not even asked for a token.
    assert after["token_requests"] == before["token_requests"]


# ---------------------------------------------------------------------------------------
# 2. The journal is bound to its input


def test_rows_removed_from_the_input_are_withdrawn_and_never_phoned(
    tmp_path, start_fake, aicc, write_contacts, read_journal, number_of
):
    fake = start_fake(0.05)
    source = write_contacts(tmp_path / "contacts.csv", 100)
    journal = tmp_path / "campaign.db"
    command = ("notify", source, "--journal", journal, "--concurrency", "5")

    running = aicc.start(*command, env=fake.env)
    fake.wait_for(
        lambda s: s["processed"][CREATE] >= 25 or running.proc.poll() is not None, deadline=30
    )
    assert running.proc.poll() is None, f"the campaign ended too early: {running.wait()}"
    running.signal(signal.SIGTERM)
    stopped = running.wait(15)
    assert stopped.returncode == 130, stopped
    fake.wait_for(lambda s: s["in_flight"] == 0, deadline=10)
    rows = read_journal(journal)
    assert all(r["state"] == "pending" for r in rows[50:]), "the first run went too far"

    keep_rows(source, lambda key: int(key) < 50)  # rows 50-99 opted out
    resumed = aicc.run(*command, env=fake.env)
    assert resumed.returncode == 0, resumed
    no_traceback(resumed)

    calls = fake.calls()
    assert not {number_of(i) for i in range(50, 100)} & set(calls), "a removed row was phoned"
    assert calls == {number_of(i): 1 for i in range(50)}
    assert created(fake) == 50
    rows = read_journal(journal)
    assert len(rows) == 100
    assert [r["state"] for r in rows[:50]] == ["done"] * 50
    for row in rows[50:]:
        assert (row["state"], row["code"], row["sends"]) == ("withdrawn", "withdrawn", 0), row
    assert "withdrawn 50" in flat(resumed.stdout), resumed
    report = report_json(aicc, journal, fake.env)
    assert set(report["states"]) == STATES, report
    assert report["states"]["withdrawn"] == 50
    assert report["states"]["done"] == 50


def test_a_withdrawn_row_put_back_is_sent(
    tmp_path, fake, aicc, write_contacts, read_journal, number_of
):
    source = write_contacts(tmp_path / "contacts.csv", 10)
    journal = tmp_path / "campaign.db"
    # A first run that loads every row but cannot send any (a wrong secret).
    refused = aicc.run(
        "notify", source, "--journal", journal, env={**fake.env, "AICC_APP_SECRET": "wrong"}
    )
    assert refused.returncode == 2, refused
    assert states_of(read_journal(journal)) == {"pending": 10}

    write_contacts(source, 6)
    second = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert second.returncode == 0, second
    assert fake.calls() == {number_of(i): 1 for i in range(6)}
    assert [r["state"] for r in read_journal(journal)] == ["done"] * 6 + ["withdrawn"] * 4

    write_contacts(source, 10)
    third = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert third.returncode == 0, third
    assert fake.calls() == {number_of(i): 1 for i in range(10)}
    assert states_of(read_journal(journal)) == {"done": 10}


def test_a_resume_that_adds_rows_says_so(
    tmp_path, fake, aicc, write_contacts, read_journal, number_of
):
    source = write_contacts(tmp_path / "contacts.csv", 10)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0

    write_contacts(source, 15)
    more = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert more.returncode == 0, more
    no_traceback(more)
    assert "5 new rows added" in flat(more.stderr), more
    assert fake.calls() == {number_of(i): 1 for i in range(15)}
    assert created(fake) == 15
    assert states_of(read_journal(journal)) == {"done": 15}


def test_an_input_with_no_row_in_common_is_refused(
    tmp_path, fake, aicc, write_contacts, write_csv, read_journal, number_of
):
    source = write_contacts(tmp_path / "contacts.csv", 10)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    before = read_journal(journal)

    other = write_csv(
        tmp_path / "other.csv",
        ["id", "called", "text"],
        [[f"a{i}", number_of(100 + i), f"Other campaign {i}"] for i in range(10)],
    )
    done = aicc.run("notify", other, "--journal", journal, env=fake.env)
    assert done.returncode == 2, done
    assert "no row in common" in one_message(done), done
    assert created(fake) == 10
    assert fake.calls() == {number_of(i): 1 for i in range(10)}
    assert read_journal(journal) == before


def test_a_line_inserted_above_rows_sent_without_an_id_column_gets_safe_advice(
    tmp_path, fake, aicc, write_csv, number_of, read_journal
):
    # Without an id column a row's key is its line: one line inserted above rows already
    # sent moves them all. The advice was "...or use a new --journal", which would phone
    # every one of them again.
    header = ["called", "text"]
    rows = [[number_of(i), f"Hello {i}"] for i in range(5)]
    source = write_csv(tmp_path / "contacts.csv", header, rows)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    before = read_journal(journal)

    write_csv(source, header, [[number_of(9), "Inserted"], *rows])
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 2, done
    message = one_message(done)
    assert "has no id column, so each row's key is its line number" in message, done
    assert "line 2 now holds another row than the one already sent from it" in message, done
    assert "add an id column giving each row the line number it had" in message, done
    assert "would phone every row already sent again" in message, done
    assert "use a new --journal" not in message, done
    assert created(fake) == 5
    assert read_journal(journal) == before

    # What it advises is safe: an id column with the lines the rows had, a new id for the
    # inserted row. Only that row is phoned.
    write_csv(
        source,
        ["id", *header],
        [["new-1", number_of(9), "Inserted"], *([str(i + 2), *r] for i, r in enumerate(rows))],
    )
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 0, done
    assert fake.calls() == {number_of(i): 1 for i in (0, 1, 2, 3, 4, 9)}


def test_an_input_with_other_keys_after_rows_were_sent_is_never_told_to_start_over(
    tmp_path, fake, aicc, write_csv, number_of
):
    source = write_csv(
        tmp_path / "contacts.csv",
        ["id", "called", "text"],
        [[f"c{i}", number_of(i), "Hello"] for i in range(4)],
    )
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    # The same people, the id column taken out: every key is now a line number.
    write_csv(source, ["called", "text"], [[number_of(i), "Hello"] for i in range(4)])
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 2, done
    message = one_message(done)
    assert "no row in common" in message, done
    assert "already sent 4 rows" in message, done
    assert "would send those 4 rows again" in message, done
    assert "Use a new --journal" not in message, done
    assert created(fake) == 4


@pytest.mark.parametrize(
    ("fault", "flag", "state"),
    [
        ("http_500", "--retry-failed", "failed"),
        ("reset_after_processing", "--retry-unknown", "unknown"),
    ],
    ids=["retry-failed", "retry-unknown"],
)
def test_retry_requeues_only_rows_still_in_the_input(
    tmp_path, start_fake, aicc, write_contacts, read_journal, fault, flag, state
):
    fake = start_fake(
        0.0, "--chaos-probability", "0.3", "--chaos-faults", fault, "--chaos-seed", "3"
    )
    source = write_contacts(tmp_path / "contacts.csv", 60)
    journal = tmp_path / "campaign.db"
    command = ("notify", source, "--journal", journal, "--timeout", "2")
    first = aicc.run(*command, env=fake.env)
    assert first.returncode == 1, first
    rows = {r["key"]: r for r in read_journal(journal)}
    hit = sorted((k for k, r in rows.items() if r["state"] == state), key=int)
    assert len(hit) >= 2, rows
    removed = set(hit[: len(hit) // 2])
    kept = set(hit) - removed
    calls_before = fake.calls()

    keep_rows(source, lambda key: key not in removed)
    again = aicc.run(*command, flag, env=fake.env)
    assert again.returncode in (0, 1), again
    no_traceback(again)

    calls = fake.calls()
    after = {r["key"]: r for r in read_journal(journal)}
    for key in removed:
        number = rows[key]["called"]
        assert after[key]["sends"] == 1, ("a removed row was sent again", after[key])
        assert after[key]["state"] == state, after[key]
        assert calls.get(number, 0) == calls_before.get(number, 0), after[key]
    for key in kept:
        assert after[key]["sends"] == 2, after[key]


# ---------------------------------------------------------------------------------------
# 3. A number in several rows is phoned once


A, B, C = "13900000001", "13900000002", "13900000003"
REPEATS = [
    ["1", A, "first"],
    ["2", B, "second"],
    ["3", A, "third"],
    ["4", C, "fourth"],
    ["5", A, "fifth"],
]


def test_a_number_in_several_rows_is_phoned_once(tmp_path, fake, aicc, write_csv, read_journal):
    source = write_csv(tmp_path / "contacts.csv", ["id", "called", "text"], REPEATS)
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    no_traceback(done)
    assert fake.calls() == {A: 1, B: 1, C: 1}
    assert done.returncode == 0, done
    rows = {r["key"]: r for r in read_journal(journal)}
    assert {k: r["state"] for k, r in rows.items()} == {
        "1": "done",
        "2": "done",
        "3": "duplicate",
        "4": "done",
        "5": "duplicate",
    }
    for key in ("3", "5"):
        row = rows[key]
        assert row["code"] == "duplicate", row
        assert row["sends"] == 0, row
        assert "row '1'" in row["description"], row
        assert A not in row["description"], row  # no full number in the text
    assert "duplicate 2" in flat(done.stdout), done
    report = report_json(aicc, journal, fake.env)
    assert set(report["states"]) == STATES, report
    assert report["states"]["duplicate"] == 2
    assert report["states"]["done"] == 3

    export = tmp_path / "problems.csv"
    exported = aicc.run("report", journal, "--export", export, env=fake.env)
    assert exported.returncode == 0, exported
    with export.open(newline="", encoding="utf-8") as f:
        written = {r["id"]: r for r in csv.DictReader(f)}
    assert {k: r["state"] for k, r in written.items() if k in ("3", "5")} == {
        "3": "duplicate",
        "5": "duplicate",
    }, written

    # A later run adds a row for a number already phoned: skipped too.
    write_csv(source, ["id", "called", "text"], [*REPEATS, ["6", B, "sixth"]])
    again = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert again.returncode == 0, again
    assert fake.calls() == {A: 1, B: 1, C: 1}
    row = {r["key"]: r for r in read_journal(journal)}["6"]
    assert (row["state"], row["code"]) == ("duplicate", "duplicate"), row
    assert "row '2'" in row["description"], row


def test_a_number_written_with_plus_or_00_in_one_csv_is_phoned_once(
    tmp_path, fake, aicc, write_csv, read_journal
):
    # +8613812345678 and 008613812345678 are one number to AICC: once gave two calls.
    rows = [["1", "+8613812345678", "a"], ["2", "008613812345678", "b"], ["3", C, "c"]]
    source = write_csv(tmp_path / "contacts.csv", ["id", "called", "text"], rows)
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 0, done
    assert fake.calls() == {"+8613812345678": 1, C: 1}
    states = {r["key"]: (r["state"], r["description"]) for r in read_journal(journal)}
    assert states["2"] == ("duplicate", "number already used by row '1'"), states


def test_allow_repeat_numbers_phones_every_row(tmp_path, fake, aicc, write_csv, read_journal):
    source = write_csv(tmp_path / "contacts.csv", ["id", "called", "text"], REPEATS)
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, "--allow-repeat-numbers", env=fake.env)
    assert done.returncode == 0, done
    assert fake.calls() == {A: 3, B: 1, C: 1}
    assert states_of(read_journal(journal)) == {"done": 5}


@pytest.mark.asyncio
async def test_library_campaign_sends_a_number_once_unless_allowed(tmp_path, fake_aicc):
    from aicc_async import CreateVoiceNotificationRequest
    from aicc_async.bulk import Campaign, CampaignRow

    rows = [
        CampaignRow(key=key, request=CreateVoiceNotificationRequest(called=n, voice_content="$Hi$"))
        for key, n, _ in REPEATS
    ]
    async with fake_aicc.client() as client:
        async with Campaign(tmp_path / "once.db", "voice_notification") as campaign:
            await campaign.load(rows)
            counts = await campaign.run(client)
        assert fake_aicc.calls_to(A) == 1
        assert (counts.done, counts.duplicate) == (3, 2)

        async with Campaign(tmp_path / "repeat.db", "voice_notification") as campaign:
            await campaign.load(rows)
            counts = await campaign.run(client, allow_repeat_numbers=True)
        assert fake_aicc.calls_to(A) == 1 + 3
        assert (counts.done, counts.duplicate) == (5, 0)


# ---------------------------------------------------------------------------------------
# 4. Re-running a finished campaign


@pytest.mark.parametrize("with_invalid", [False, True], ids=["all-done", "one-invalid"])
def test_rerunning_a_finished_campaign_says_nothing_is_left(
    tmp_path, fake, aicc, write_csv, with_invalid
):
    rows = [[str(i), f"139{i:08d}", f"hello {i}"] for i in range(3)]
    if with_invalid:
        rows.append(["bad", "12-34", "hello"])
    source = write_csv(tmp_path / "contacts.csv", ["id", "called", "text"], rows)
    journal = tmp_path / "campaign.db"
    status = 1 if with_invalid else 0
    first = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert first.returncode == status, first
    assert "Nothing left to send" not in flat(first.stderr), first

    again = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert again.returncode == status, again
    no_traceback(again)
    assert "Nothing left to send" in flat(again.stderr), again
    assert created(fake) == 3


# ---------------------------------------------------------------------------------------
# 5. --concurrency above 100


@pytest.mark.parametrize("concurrency", [150, 400])
def test_concurrency_above_100_is_honoured(
    tmp_path, start_fake, aicc, write_contacts, read_journal, concurrency
):
    # Every answer takes 2 s: all rows are in flight together if nothing caps the pool.
    fake = start_fake(2.0)
    source = write_contacts(tmp_path / "contacts.csv", concurrency)
    journal = tmp_path / "campaign.db"
    done = aicc.run(
        "notify",
        source,
        "--journal",
        journal,
        "--concurrency",
        str(concurrency),
        "--timeout",
        "30",
        env=fake.env,
    )
    assert done.returncode == 0, done
    stats = fake.stats()
    assert stats["max_in_flight"] == concurrency, stats["max_in_flight"]
    assert len(stats["calls"]) == concurrency
    assert set(stats["calls"].values()) == {1}
    assert states_of(read_journal(journal)) == {"done": concurrency}


# ---------------------------------------------------------------------------------------
# 6. aicc report only reads


def test_report_creates_nothing_for_a_missing_or_empty_path(tmp_path, plain_env, aicc):
    missing_dir = tmp_path / "missing"
    missing_dir.mkdir()
    missing = missing_dir / "nope.db"
    done = aicc.run("report", missing, env=plain_env)
    assert done.returncode == 2, done
    assert "no journal at" in one_message(done), done
    assert list(missing_dir.iterdir()) == []

    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    empty = empty_dir / "empty.db"
    empty.write_bytes(b"")
    done = aicc.run("report", empty, env=plain_env)
    assert done.returncode in (2, 3), done
    one_message(done)
    assert empty.read_bytes() == b"", "report wrote into an empty file"
    assert [p.name for p in empty_dir.iterdir()] == ["empty.db"]


def test_report_after_a_kill_changes_nothing_and_shows_the_rows_in_flight(
    tmp_path, start_fake, aicc, write_contacts, read_journal
):
    fake = start_fake(5.0)  # the rows sent stay in flight until the kill
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"
    running = aicc.start("notify", source, "--journal", journal, "--concurrency", "5", env=fake.env)
    fake.wait_for(
        lambda s: s["received"][CREATE] >= 5 or running.proc.poll() is not None, deadline=30
    )
    running.signal(signal.SIGKILL)
    assert running.wait(10).returncode == -signal.SIGKILL
    assert wal(journal).exists(), "expected a WAL journal after the kill"
    before = (digest(journal), digest(wal(journal)))

    text = aicc.run("report", journal, env=fake.env)
    assert text.returncode == 0, text
    no_traceback(text)
    assert "in flight" in flat(text.stdout), text
    for _ in range(2):  # and again: the first report turned nothing into unknown
        report = report_json(aicc, journal, fake.env)
        states = report["states"]
        assert states["sending"] == 5, report
        assert states["unknown"] == 0, report
        assert states["pending"] == 15, report
    assert (digest(journal), digest(wal(journal))) == before, "report changed the journal"
    assert states_of(read_journal(journal)) == {"sending": 5, "pending": 15}


def test_report_while_a_campaign_runs(tmp_path, start_fake, aicc, write_contacts, read_journal):
    fake = start_fake(0.5)
    source = write_contacts(tmp_path / "contacts.csv", 30)
    journal = tmp_path / "campaign.db"
    running = aicc.start("notify", source, "--journal", journal, "--concurrency", "5", env=fake.env)
    fake.wait_for(
        lambda s: s["received"][CREATE] >= 5 or running.proc.poll() is not None, deadline=30
    )
    assert running.proc.poll() is None, f"the campaign ended too early: {running.wait()}"

    reports = [aicc.start("report", journal, *args, env=fake.env) for args in ((), ("--json",))]
    text, as_json = (r.wait(30) for r in reports)
    assert text.returncode == 0, text
    no_traceback(text)
    assert "in flight" in flat(text.stdout), text
    assert as_json.returncode == 0, as_json
    report = json.loads(as_json.stdout)
    assert report["states"]["sending"] >= 1, report
    assert sum(report["states"].values()) == 30, report
    assert running.proc.poll() is None, "the campaign ended before the reports did"

    finished = running.wait(60)
    assert finished.returncode == 0, finished
    assert len(fake.calls()) == 30
    assert set(fake.calls().values()) == {1}
    assert states_of(read_journal(journal)) == {"done": 30}


def one_done_one_failed(tmp_path, fake, aicc, write_csv) -> tuple[Path, Path]:
    """A finished campaign (input, journal) of two rows: one done, one failed."""
    source = write_csv(
        tmp_path / "contacts.csv",
        ["id", "called", "text"],
        [["1", "13900000001", "hello"], ["2", "12-34", "hello"]],
    )
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 1
    return source, journal


def test_report_of_a_finished_campaign_changes_no_byte(
    tmp_path, fake, aicc, write_csv, read_journal
):
    _, journal = one_done_one_failed(tmp_path, fake, aicc, write_csv)
    journal_before, wal_before = digest(journal), digest(wal(journal))

    for args in ((), ("--json",), ("--export", tmp_path / "problems.csv")):
        done = aicc.run("report", journal, *args, env=fake.env)
        assert done.returncode == 0, done
    assert digest(journal) == journal_before, "report changed the journal"
    if wal_before is None:  # SQLite may leave an empty -wal behind a reader, no more
        assert not wal(journal).exists() or wal(journal).stat().st_size == 0
    else:
        assert digest(wal(journal)) == wal_before, "report changed the journal's -wal"


# ---------------------------------------------------------------------------------------
# 7. --export cannot destroy the journal or the input


def test_export_refuses_the_journal_its_files_and_the_input(
    tmp_path, fake, aicc, write_csv, read_journal
):
    source, journal = one_done_one_failed(tmp_path, fake, aicc, write_csv)
    (tmp_path / "sub").mkdir()
    (tmp_path / "journal-link.db").symlink_to(journal)
    (tmp_path / "input-link.csv").symlink_to(source)

    targets = {
        "the journal": journal,
        "the journal, spelt relative to the working directory": Path(
            os.path.relpath(journal, os.getcwd())
        ),
        "the journal, through sub/..": tmp_path / "sub" / ".." / "campaign.db",
        "a symlink to the journal": tmp_path / "journal-link.db",
        "the journal's -wal": wal(journal),
        "the journal's -shm": shm(journal),
        "the input": source,
        "a symlink to the input": tmp_path / "input-link.csv",
    }
    journal_before, source_before = digest(journal), digest(source)
    targets_before = {what: digest(target) for what, target in targets.items()}
    running = {  # at once: each should be refused before it reads a row
        what: aicc.start("report", journal, "--export", target, env=fake.env)
        for what, target in targets.items()
    }
    for what, target in targets.items():
        done = running[what].wait(30)
        assert done.returncode == 2, (what, done)
        one_message(done)
        if target.name.endswith(("-wal", "-shm")):
            # SQLite's readers may create or touch these; an export would start "id,".
            assert not target.exists() or not target.read_bytes().startswith(b"id,"), what
        else:
            assert digest(target) == targets_before[what], f"--export wrote {what}"
    assert digest(journal) == journal_before, "--export changed the journal"
    assert digest(source) == source_before, "--export changed the input"

    report = report_json(aicc, journal, fake.env)
    assert report["rows"] == 2
    assert (report["states"]["done"], report["states"]["failed"]) == (1, 1)


def test_export_replaces_an_unrelated_file_only_when_complete(tmp_path, fake, aicc, write_csv):
    _, journal = one_done_one_failed(tmp_path, fake, aicc, write_csv)
    target = tmp_path / "problems.csv"
    target.write_text("an older export\n")
    inode = target.stat().st_ino

    done = aicc.run("report", journal, "--export", target, env=fake.env)
    assert done.returncode == 0, done
    with target.open(newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert [(r["id"], r["state"]) for r in written] == [("2", "failed")]
    # Written beside it, then renamed over it: a new file, no temporary one left.
    assert target.stat().st_ino != inode, "the export was written into the old file in place"
    names = {p.name for p in tmp_path.iterdir() if not p.name.startswith("campaign.db")}
    assert names == {"contacts.csv", "problems.csv"}, names


def test_export_refuses_another_journal_and_any_sqlite_file(
    tmp_path, fake, aicc, write_csv, write_contacts
):
    # `aicc report a.db --export b.db` once replaced b.db, another campaign's journal.
    _, journal = one_done_one_failed(tmp_path, fake, aicc, write_csv)
    other = tmp_path / "other.db"
    others = write_contacts(tmp_path / "others.csv", 3)
    assert aicc.run("notify", others, "--journal", other, env=fake.env).returncode == 0
    crm = tmp_path / "crm.db"
    with contextlib.closing(sqlite3.connect(crm)) as db, db:
        db.execute("CREATE TABLE people (name TEXT, phone TEXT)")
    targets = {"another campaign's journal": other, "another application's database": crm}
    before = {what: digest(target) for what, target in targets.items()}

    for option in ("--export", "--export-unanswered"):
        for what, target in targets.items():
            done = aicc.run("report", journal, option, target, env=fake.env)
            assert done.returncode == 2, (option, what, done)
            message = one_message(done)
            assert f"will not write the export over {target}" in message, done
            assert "SQLite database" in message, done
            assert digest(target) == before[what], f"{option} wrote over {what}"
    assert report_json(aicc, other, fake.env)["states"]["done"] == 3


# ---------------------------------------------------------------------------------------
# 8. CSV formula injection


FORMULA_ROWS = {
    # id: (called, text, priority): each row is invalid, so it is exported
    "=1+2": ('=HYPERLINK("http://evil.example","x")', "hi", ""),
    "f2": ("+8613900000002", "", ""),
    "f3": ("-13900000003", "@SUM(A1:A9)", ""),
    "f4": ("13900000004", "=cmd|' /C calc'!A0", "-x"),
}


def test_exported_cells_cannot_run_as_formulas(tmp_path, fake, aicc, write_csv):
    source = write_csv(
        tmp_path / "contacts.csv",
        ["id", "called", "text", "priority"],
        [["ok", "13900000005", "hello", ""]]
        + [[key, *cells] for key, cells in FORMULA_ROWS.items()],
    )
    journal = tmp_path / "campaign.db"
    first = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert first.returncode == 1, first
    assert fake.calls() == {"13900000005": 1}

    export = tmp_path / "problems.csv"
    done = aicc.run("report", journal, "--export", export, env=fake.env)
    assert done.returncode == 0, done
    with export.open(newline="", encoding="utf-8") as f:
        header, *records = list(csv.reader(f))
    for record in records:
        for name, cell in zip(header, record, strict=True):
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    written = {r[0]: dict(zip(header, r, strict=True)) for r in records}
    assert set(written) == {"'=1+2", "f2", "f3", "f4"}, written
    assert written["'=1+2"]["called"] == '\'=HYPERLINK("http://evil.example","x")'
    assert written["f2"]["called"] == "'+8613900000002"
    assert written["f3"]["called"] == "'-13900000003"
    assert written["f3"]["text"] == "'@SUM(A1:A9)"
    assert written["f4"]["text"] == "'=cmd|' /C calc'!A0"
    assert written["f4"]["priority"] == "'-x"

    # Fed back as input (the text filled in), the number survives the round trip.
    fixed = dict(written["f2"], text="hello again")
    again = write_csv(tmp_path / "fixed.csv", header, [[fixed[c] for c in header]])
    resent = aicc.run("notify", again, "--journal", tmp_path / "fixed.db", env=fake.env)
    assert resent.returncode == 0, resent
    assert fake.calls() == {"13900000005": 1, "+8613900000002": 1}


# ---------------------------------------------------------------------------------------
# 9. Rich markup in data


@pytest.mark.parametrize("value", ["[/bold]", "[link=http://x]y[/link]"], ids=["close", "link"])
def test_markup_in_a_cell_is_shown_as_typed(tmp_path, fake, aicc, write_csv, value):
    env = {**fake.env, "FORCE_COLOR": "1"}  # NO_COLOR stays: styles, links still rendered
    source = write_csv(
        tmp_path / "contacts.csv",
        ["id", "called", "text", "priority"],
        [["1", "13900000001", value, ""], ["2", "13900000002", "hello", value]],
    )
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, env=env)
    report = aicc.run("report", journal, env=env)
    for ran, status in ((done, 1), (report, 0)):
        assert ran.returncode == status, ran
        no_traceback(ran)
        assert "MarkupError" not in ran.output, ran
        assert "\x1b]8;" not in ran.output, ("a hyperlink was rendered", ran)
        assert value in ANSI_SGR.sub("", ran.stdout), ran  # the invalid priority, as typed
    assert fake.calls() == {"13900000001": 1}


def test_markup_in_a_column_name_and_a_file_name(tmp_path, fake, aicc, write_csv):
    source = write_csv(
        tmp_path / "contacts.csv", ["id", "called", "text", "[/red]"], [["1", B, "hello", "x"]]
    )
    done = aicc.run("notify", source, "--journal", tmp_path / "campaign.db", env=fake.env)
    assert done.returncode == 0, done
    no_traceback(done)
    assert "[/red]" in done.stderr, done
    assert fake.calls() == {B: 1}

    folder = tmp_path / "a["
    folder.mkdir()
    empty = folder / "bold].csv"  # the path reads .../a[/bold].csv
    empty.write_bytes(b"")
    done = aicc.run("notify", empty, "--journal", tmp_path / "other.db", env=fake.env)
    assert done.returncode == 2, done
    assert "a[/bold].csv" in one_message(done), done


# ---------------------------------------------------------------------------------------
# 10. The journal and its -wal

#: Another SQLite client: opens the journal, reads it, closes it (SQLite then copies the
#: -wal into the file and deletes it).
FOLD = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1])\n"
    "print(db.execute('SELECT count(*) FROM rows').fetchone()[0])\n"
    "db.close()\n"
)


def kill_mid_run(aicc, fake, source: Path, journal: Path, *, processed: int) -> None:
    """``aicc notify`` killed with SIGKILL once FakeAICC processed ``processed`` calls;
    returns when no request of it is in flight any more."""
    running = aicc.start(
        "notify", source, "--journal", journal, "--concurrency", "10", env=fake.env
    )
    fake.wait_for(
        lambda s: s["processed"][CREATE] >= processed or running.proc.poll() is not None,
        deadline=60,
    )
    assert running.proc.poll() is None, f"the campaign ended before the kill: {running.wait()}"
    running.signal(signal.SIGKILL)
    assert running.wait(10).returncode == -signal.SIGKILL
    fake.wait_for(lambda s: s["in_flight"] == 0, deadline=10)


def test_a_copy_without_its_wal_after_a_kill_is_refused(tmp_path, start_fake, aicc, write_contacts):
    fake = start_fake(0.02)
    source = write_contacts(tmp_path / "contacts.csv", 2000)
    journal = tmp_path / "campaign.db"
    kill_mid_run(aicc, fake, source, journal, processed=200)
    assert wal(journal).exists(), "expected a -wal file after the kill"
    copy = tmp_path / "copy.db"
    shutil.copyfile(journal, copy)  # the .db alone, as a careless backup would
    before = fake.stats()

    done = aicc.run("notify", source, "--journal", copy, env=fake.env)
    after = fake.stats()
    twice = {n: c for n, c in after["calls"].items() if c > 1}
    assert not twice, f"{len(twice)} numbers phoned twice from a copy without its -wal"
    assert done.returncode == 2, done
    assert "copy.db-wal" in one_message(done), done
    assert after["received"][CREATE] == before["received"][CREATE]


def test_a_killed_campaign_resumes_after_another_sqlite_client_folded_its_wal(
    tmp_path, start_fake, aicc, write_contacts, number_of
):
    # Opening a crashed journal with any SQLite client folds its -wal in and deletes it:
    # nothing is lost, yet every later run was refused for good ("put the -wal back").
    # Through a symlink too: SQLite keeps the -wal beside the real file.
    fake = start_fake(0.02)
    source = write_contacts(tmp_path / "contacts.csv", 400)
    real = tmp_path / "data" / "campaign.db"
    real.parent.mkdir()
    journal = tmp_path / "campaign.db"
    journal.symlink_to(real)
    kill_mid_run(aicc, fake, source, journal, processed=50)
    assert wal(real).exists(), "expected a -wal file after the kill"
    folded = subprocess.run(
        [sys.executable, "-c", FOLD, str(journal)], capture_output=True, text=True, check=True
    )
    assert int(folded.stdout) == 400
    assert not wal(real).exists(), "the other client did not fold the -wal in"
    sent = created(fake)

    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode in (0, 1), done  # 1: rows in flight at the kill are unknown
    calls = fake.calls()
    assert not {n: c for n, c in calls.items() if c > 1}, "a number was phoned twice"
    report = report_json(aicc, journal, fake.env)
    assert report["states"]["done"] + report["states"]["unknown"] == 400, report
    assert report["states"]["unknown"] <= 10, report  # at most the rows in flight
    assert sent < created(fake) <= 400  # the resume sent the rest, each row at most once
    assert created(fake) >= report["states"]["done"]


def test_a_cleanly_closed_journal_needs_no_wal(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 50)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    copy = tmp_path / "copy.db"
    shutil.copyfile(journal, copy)  # checkpointed at the end of the run: the .db is enough

    done = aicc.run("notify", source, "--journal", copy, env=fake.env)
    assert done.returncode == 0, done
    assert "Nothing left to send" in flat(done.stderr), done
    assert created(fake) == 50
    assert set(fake.calls().values()) == {1}


# ---------------------------------------------------------------------------------------
# 11. Errors that are not AICC's


TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
GARBAGE = {
    "html": (b"<html><body>Welcome to nginx!</body></html>", "text/html"),
    "no-access-token": (b'{"error": "none", "Expires": 3600}', "application/json"),
    "int-overflow": (
        b'{"AccessToken": "abc", "Expires": 1' + b"0" * 400 + b"}",
        "application/json",
    ),
    "deep-nesting": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
}


@pytest.fixture
def garbage_server() -> Iterator[Callable[[bytes, str], tuple[str, collections.Counter[str]]]]:
    """``garbage_server(body, content_type)``: an HTTP server on 127.0.0.1 answering every
    POST with HTTP 200 and ``body``; returns its URL and a Counter of the paths posted to."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(body: bytes, content_type: str) -> tuple[str, collections.Counter[str]]:
        hits: collections.Counter[str] = collections.Counter()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hits[self.path] += 1
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", hits

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_from_the_token_endpoint_leaves_rows_pending(
    tmp_path, plain_env, aicc, write_contacts, read_journal, garbage_server, garbage
):
    url, hits = garbage_server(*GARBAGE[garbage])
    env = {**plain_env, "AICC_BASE_URL": url, "AICC_APP_KEY": "key", "AICC_APP_SECRET": "secret"}
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, "--timeout", "2", env=env)
    assert set(hits) == {TOKEN_PATH}, f"requests beyond the token endpoint: {hits}"
    assert states_of(read_journal(journal)) == {"pending": 20}, done
    # The token service gave no usable token: an AICCAuthError (check the credentials
    # and the token URL), exit 2 like refused credentials; nothing else was sent.
    assert done.returncode == 2, done
    message = one_message(done)
    assert "token" in message.lower(), done
    assert "pending" in message, done


def test_a_journal_of_random_bytes_is_not_a_journal(tmp_path, fake, aicc, write_contacts):
    # Not SQLite at all: the wrong path was given (exit 2, as for any file that is not a
    # journal); a damaged journal is exit 3 (below).
    source = write_contacts(tmp_path / "contacts.csv", 5)
    journal = tmp_path / "campaign.db"
    journal.write_bytes(random.Random(9).randbytes(64 * 1024))
    before = digest(journal)

    for args in (("notify", source, "--journal", journal), ("report", journal)):
        done = aicc.run(*args, env=fake.env)
        assert done.returncode == 2, done
        assert "not an aicc journal" in one_message(done), done
    assert digest(journal) == before
    assert created(fake) == 0


def test_an_emptied_journal_is_refused_and_nobody_is_phoned_again(
    tmp_path, fake, aicc, write_contacts
):
    # `: > campaign.db` once made the next run a new campaign: every number phoned twice.
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    journal.write_bytes(b"")

    for args in (("notify", source, "--journal", journal), ("report", journal)):
        done = aicc.run(*args, env=fake.env)
        assert done.returncode == 2, done
        message = one_message(done)
        assert "is an empty file, not an aicc journal" in message, done
        assert "phone every row again" in message, done
    assert journal.read_bytes() == b""
    assert created(fake) == 20
    assert set(fake.calls().values()) == {1}


def test_a_truncated_journal_ends_with_exit_3(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 1500)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    assert not wal(journal).exists() or wal(journal).stat().st_size == 0
    with journal.open("r+b") as f:
        f.truncate(journal.stat().st_size // 2)
    sent = created(fake)

    for args in (("notify", source, "--journal", journal), ("report", journal)):
        done = aicc.run(*args, env=fake.env)
        assert done.returncode == 3, done
        assert "journal" in one_message(done), done
    assert created(fake) == sent
