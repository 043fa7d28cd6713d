"""``aicc notify`` / ``aicc write-back`` campaigns end to end: real CLI processes
against FakeAICC in its own process: clean runs and identical re-runs, Ctrl-C and
SIGTERM (graceful stop, second Ctrl-C, a stop while reading the input) and
resuming, refused credentials, an unreachable AICC, --rate, write-back, chaos,
--retry-unknown and --retry-failed. Throughout: nobody is called twice unless the
user asked for it, and the journal accounts for every row."""

from __future__ import annotations

import collections
import csv
import json
import re
import signal
import socket
import time

import pytest
from shown import flat


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def report_json(aicc, journal, env):
    done = aicc.run("report", journal, "--json", env=env)
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def assert_consistent(rows, calls, total):
    """The journal accounts for every row and agrees with what FakeAICC placed."""
    assert len(rows) == total
    states = collections.Counter(r["state"] for r in rows)
    assert states["sending"] == 0, states
    assert sum(states.values()) == total
    by_number = {r["called"]: r for r in rows}
    assert all(c == 1 for c in calls.values()), {n: c for n, c in calls.items() if c != 1}
    for row in rows:
        if row["state"] == "done":
            assert calls.get(row["called"]) == 1, row
        if row["state"] == "pending":
            assert row["called"] not in calls, row
            assert row["sends"] == 0, row
    for number in calls:
        assert by_number[number]["state"] in ("done", "unknown"), by_number[number]
    return states


def test_clean_run_then_identical_rerun_sends_nothing(
    tmp_path, fake, aicc, write_contacts, journal_rows
):
    source = write_contacts(tmp_path / "contacts.csv", 300)
    journal = tmp_path / "campaign.db"

    first = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert first.returncode == 0, first
    assert "Traceback" not in first.output
    assert "300 rows" in first.stdout
    assert "done 300" in flat(first.stdout)
    rows = journal_rows(journal)
    assert len(rows) == 300
    assert {r["state"] for r in rows} == {"done"}
    stats = fake.stats()
    assert len(stats["calls"]) == 300
    assert set(stats["calls"].values()) == {1}

    second = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert second.returncode == 0, second
    assert "done 300" in flat(second.stdout)
    again = fake.stats()
    assert again["calls"] == stats["calls"]
    assert again["received"]["createVoiceNotification"] == 300
    assert {r["state"] for r in journal_rows(journal)} == {"done"}


@pytest.mark.parametrize(
    ("sig", "rows", "after"),
    [(signal.SIGINT, 2000, 200), (signal.SIGTERM, 600, 100)],
    ids=["ctrl-c", "sigterm"],
)
def test_graceful_stop_then_resume(
    tmp_path, start_fake, aicc, write_contacts, journal_rows, sig, rows, after
):
    fake = start_fake(0.02)
    source = write_contacts(tmp_path / "contacts.csv", rows)
    journal = tmp_path / "campaign.db"
    command = ("notify", source, "--journal", journal, "--concurrency", "10")

    running = aicc.start(*command, env=fake.env)
    fake.wait_for(
        lambda s: (
            s["processed"]["createVoiceNotification"] >= after or running.proc.poll() is not None
        ),
        deadline=60,
    )
    assert running.proc.poll() is None, f"the campaign ended too early: {running.wait()}"
    running.signal(sig)
    stopped = running.wait(10)
    assert stopped.returncode == 130, stopped
    assert "Traceback" not in stopped.output, stopped
    stderr = flat(stopped.stderr)
    assert "Stopping" in stderr, stopped
    assert "Run the same command again to resume" in stderr, stopped

    # The requests in flight finished: FakeAICC is idle, nothing is left 'sending'
    # and nothing is unknown; the rest is pending.
    fake.wait_for(lambda s: s["in_flight"] == 0, deadline=5)
    calls = fake.calls()
    states = assert_consistent(journal_rows(journal), calls, rows)
    assert states["unknown"] == 0, states
    assert states["pending"] > 0, states
    assert states["done"] == len(calls), states
    assert "pending" in stopped.stdout

    if sig == signal.SIGTERM:
        return  # resuming after a stop: the Ctrl-C case
    resumed = aicc.run(*command, env=fake.env, timeout=90)
    assert resumed.returncode == 0, resumed
    assert "Traceback" not in resumed.output
    calls = fake.calls()
    assert len(calls) == rows
    states = assert_consistent(journal_rows(journal), calls, rows)
    assert states == {"done": rows}
    assert fake.stats()["received"]["createVoiceNotification"] == rows


def test_refused_credentials(tmp_path, fake, aicc, write_contacts, journal_rows):
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"
    env = {**fake.env, "AICC_APP_SECRET": "not-the-secret"}

    done = aicc.run("notify", source, "--journal", journal, env=env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.output
    stderr = flat(done.stderr)
    assert "AICC_APP_SECRET" in stderr, done
    assert "stay pending" in stderr, done
    assert {r["state"] for r in journal_rows(journal)} == {"pending"}
    stats = fake.stats()
    assert stats["calls"] == {}
    assert stats["received"]["createVoiceNotification"] == 0


def test_unreachable_aicc_leaves_rows_pending(
    tmp_path, plain_env, aicc, write_contacts, journal_rows
):
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"
    env = {
        **plain_env,
        "AICC_BASE_URL": f"http://127.0.0.1:{closed_port()}",
        "AICC_APP_KEY": "key",
        "AICC_APP_SECRET": "secret",
    }

    done = aicc.run("notify", source, "--journal", journal, "--timeout", "1", env=env)
    assert done.returncode == 1, done
    assert "Traceback" not in done.output
    stderr = flat(done.stderr)
    assert "stay pending" in stderr, done
    assert "run the same command again" in stderr, done
    assert {r["state"] for r in journal_rows(journal)} == {"pending"}
    assert "pending" in done.stdout


def test_rate_limits_how_fast_rows_start(tmp_path, fake, aicc, write_contacts, journal_rows):
    source = write_contacts(tmp_path / "contacts.csv", 40)
    journal = tmp_path / "campaign.db"

    running = aicc.start("notify", source, "--journal", journal, "--rate", "50", env=fake.env)
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 1, deadline=30)
    first_call = time.monotonic()
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 40, deadline=30)
    spread = time.monotonic() - first_call
    done = running.wait(30)
    assert done.returncode == 0, done
    # 40 rows at 50 per second: the last starts ~0.78 s after the first (a burst of
    # 0.1 s worth aside). A lower bound only: the machine may be slow.
    assert spread >= 0.6, f"40 rows placed within {spread:.2f} s at --rate 50"
    assert {r["state"] for r in journal_rows(journal)} == {"done"}
    assert len(fake.calls()) == 40


def test_write_back(tmp_path, fake, aicc, journal_rows):
    source = tmp_path / "results.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sub_cc_no", "vdn_id", "unique_id", "service_id"])
        for i in range(100):
            writer.writerow([1, 2, f"u-{i:04d}", "task-7"])
    journal = tmp_path / "write-back.db"

    done = aicc.run("write-back", source, "--journal", journal, env=fake.env)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output
    assert "done" in done.stdout
    write_backs = fake.stats()["write_backs"]
    assert write_backs == {f"u-{i:04d}": 1 for i in range(100)}
    rows = journal_rows(journal)
    assert len(rows) == 100
    assert {r["state"] for r in rows} == {"done"}
    assert report_json(aicc, journal, fake.env)["kind"] == "write_back"


CHAOS = (
    "--chaos-probability",
    "0.05",
    "--chaos-faults",
    "reset_after_processing,html_502,busy",
    "--chaos-seed",
    "11",
)


def test_chaos_then_retry_unknown(tmp_path, start_fake, aicc, write_contacts, journal_rows):
    fake = start_fake(0.0, *CHAOS)
    source = write_contacts(tmp_path / "contacts.csv", 1000)
    journal = tmp_path / "campaign.db"
    command = ("notify", source, "--journal", journal, "--timeout", "2")

    first = aicc.run(*command, env=fake.env, timeout=90)
    assert first.returncode == 1, first
    assert "Traceback" not in first.output
    report = report_json(aicc, journal, fake.env)
    states = report["states"]
    assert report["rows"] == 1000
    assert sum(states.values()) == 1000
    assert states["pending"] == 0
    assert states["sending"] == 0
    assert states["unknown"] > 0, report
    assert report["problems"], report
    assert {p["state"] for p in report["problems"]} <= {"unknown", "failed"}

    calls = fake.calls()
    rows = journal_rows(journal)
    assert_consistent(rows, calls, 1000)
    unknown = {r["key"] for r in rows if r["state"] == "unknown"}
    assert len(unknown) == states["unknown"]
    sends_before = {r["key"]: r["sends"] for r in rows}
    assert set(sends_before.values()) == {1}

    # The user asks for the unknown rows to be sent again, knowing the risk.
    again = aicc.run(*command, "--retry-unknown", env=fake.env, timeout=90)
    assert again.returncode in (0, 1), again
    assert "Traceback" not in again.output
    stderr = flat(again.stderr)
    assert "--retry-unknown" in stderr, again
    assert "called twice" in stderr, again
    assert f"sending {len(unknown)} rows whose outcome was unknown again" in stderr, again

    after = fake.calls()
    rows_after = journal_rows(journal)
    assert len(rows_after) == 1000
    assert not [r for r in rows_after if r["state"] in ("pending", "sending")]
    for row in rows_after:
        number = row["called"]
        if row["key"] in unknown:
            # Sent once more: whoever was called the first time is called twice.
            assert row["sends"] == 2, row
            assert after.get(number, 0) >= calls.get(number, 0), row
        else:
            # Nothing else was sent again.
            assert row["sends"] == 1, row
            assert after.get(number, 0) == calls.get(number, 0), row
    assert any(after[r["called"]] == 2 for r in rows_after if r["key"] in unknown)
    assert max(after.values()) <= 2


def test_second_ctrl_c_abandons_the_rows_in_flight(
    tmp_path, start_fake, aicc, write_contacts, journal_rows
):
    # Every answer takes 1.5 s: the rows in flight are still in flight at the second Ctrl-C.
    fake = start_fake(1.5)
    source = write_contacts(tmp_path / "contacts.csv", 15)
    journal = tmp_path / "campaign.db"
    command = ("notify", source, "--journal", journal, "--concurrency", "10")

    running = aicc.start(*command, env=fake.env)
    fake.wait_for(
        lambda s: s["received"]["createVoiceNotification"] >= 10 or running.proc.poll() is not None,
        deadline=30,
    )
    assert running.proc.poll() is None, f"the campaign ended too early: {running.wait()}"
    running.signal(signal.SIGINT)
    running.wait_for_stderr("Stopping", deadline=10)
    running.signal(signal.SIGINT)
    stopped = running.wait(10)
    assert stopped.returncode == 130, stopped
    assert "Traceback" not in stopped.output, stopped
    assert "Run the same command again to resume" in flat(stopped.stderr), stopped

    rows = journal_rows(journal)
    states = collections.Counter(r["state"] for r in rows)
    assert states["sending"] == 0, states
    # The 10 rows in flight are unknown (unless some answer beat the second Ctrl-C on a
    # very slow machine: those are done); nothing else was claimed.
    assert states["unknown"] >= 1, states
    assert states["unknown"] + states["done"] == 10, states
    assert states["pending"] == 5, states
    for row in rows:
        if row["state"] == "unknown":
            assert row["code"] == "interrupted", row
            assert row["sends"] == 1, row

    # FakeAICC may still place those 10 calls (their requests had arrived); the next
    # run must not send them again.
    fake.wait_for(lambda s: s["in_flight"] == 0, deadline=10)
    resumed = aicc.run(*command, env=fake.env, timeout=60)
    assert resumed.returncode == 1, resumed
    calls = fake.calls()
    assert all(c == 1 for c in calls.values()), calls
    rows = journal_rows(journal)
    unknown = states["unknown"]
    assert collections.Counter(r["state"] for r in rows) == {
        "done": 15 - unknown,
        "unknown": unknown,
    }
    assert_consistent(rows, calls, 15)


def test_sigterm_while_a_resume_reads_the_input_sends_nothing(
    tmp_path, fake, aicc, write_contacts, journal_rows
):
    # A resume reads the whole input before it sends (rows removed from it must not be
    # sent): a signal that lands while it reads sends nothing. (A new campaign streams
    # its input instead: see the next test.)
    source = write_contacts(tmp_path / "contacts.csv", 300_000)
    journal = tmp_path / "campaign.db"
    wal = tmp_path / "campaign.db-wal"
    first = aicc.start("notify", source, "--journal", journal, env=fake.env)
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 50)
    first.signal(signal.SIGTERM)
    assert first.wait(30).returncode == 130
    sent = fake.stats()["received"]["createVoiceNotification"]
    assert not wal.exists() or wal.stat().st_size == 0  # closed cleanly

    running = aicc.start("notify", source, "--journal", journal, env=fake.env)
    end = time.monotonic() + 30
    # Opening the journal writes a few pages to the WAL; a batch of rows writes more.
    while not (wal.exists() and wal.stat().st_size > 128 * 1024):
        assert running.proc.poll() is None, running.wait()
        assert time.monotonic() < end, "the journal was never written"
        time.sleep(0.01)
    running.signal(signal.SIGTERM)
    stopped = running.wait(15)
    assert stopped.returncode == 130, stopped
    assert "Traceback" not in stopped.output, stopped
    assert "nothing was sent" in flat(stopped.stderr), stopped

    stats = fake.stats()
    assert stats["received"]["createVoiceNotification"] == sent
    rows = journal_rows(journal)
    assert 0 < len(rows) < 300_000
    # The first run's unsent rows (its load never completed) were dropped, and the
    # second run had loaded some of them again, or none yet, when the signal came.
    assert "done" in {r["state"] for r in rows}
    assert {r["state"] for r in rows} <= {"pending", "done"}


def test_sigterm_while_a_new_campaign_streams_its_input(
    tmp_path, fake, aicc, write_contacts, journal_rows
):
    # A new campaign sends its first rows while it reads the rest: a signal then stops
    # it like any other (the rows in flight finish), and the same command finishes it.
    source = write_contacts(tmp_path / "contacts.csv", 300_000)
    journal = tmp_path / "campaign.db"
    running = aicc.start("notify", source, "--journal", journal, env=fake.env)
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 20)
    running.signal(signal.SIGTERM)
    stopped = running.wait(30)
    assert stopped.returncode == 130, stopped
    assert "Traceback" not in stopped.output, stopped

    calls = fake.calls()
    rows = journal_rows(journal)
    assert 0 < len(rows) < 300_000  # it stopped before reading the whole input
    done = {r["called"] for r in rows if r["state"] == "done"}
    assert set(calls) == done  # every call placed is recorded, and only those
    assert {r["state"] for r in rows} == {"pending", "done"}
    assert all(c == 1 for c in calls.values())


def test_retry_failed_resends_refused_rows_only(tmp_path, start_fake, aicc, journal_rows):
    # HTTP 500 (JSON): AICC refused the row without processing it.
    fake = start_fake(0.0, "--chaos-probability", "0.1", "--chaos-faults", "http_500")
    source = tmp_path / "contacts.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "called", "text"])
        for i in range(200):
            writer.writerow([i, f"139{i:08d}", f"hello {i}"])
        writer.writerow(["bad-1", "12-34", "hello"])  # invalid: never sent
        writer.writerow(["bad-2", "13900009999", ""])  # no text: never sent
    journal = tmp_path / "campaign.db"

    first = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert first.returncode == 1, first
    rows = {r["key"]: r for r in journal_rows(journal)}
    refused = {k for k, r in rows.items() if r["state"] == "failed" and r["code"] == "HTTP 500"}
    invalid = {k for k, r in rows.items() if r["code"] == "invalid"}
    assert refused, rows
    assert invalid == {"bad-1", "bad-2"}
    calls = fake.calls()
    assert all(rows[k]["called"] not in calls for k in refused)
    assert all(c == 1 for c in calls.values())

    again = aicc.run("notify", source, "--journal", journal, "--retry-failed", env=fake.env)
    assert again.returncode == 1, again  # the invalid rows stay failed
    assert "Traceback" not in again.output
    after = fake.calls()
    assert all(c == 1 for c in after.values()), after
    rows_after = {r["key"]: r for r in journal_rows(journal)}
    for key, row in rows_after.items():
        if key in invalid:
            assert (row["state"], row["code"], row["sends"]) == ("failed", "invalid", 0), row
        elif key in refused:
            assert row["sends"] == 2, row
        else:
            assert (row["state"], row["sends"]) == ("done", 1), row
    assert sum(rows_after[k]["state"] == "done" for k in refused) > 0


def test_after_a_second_ctrl_c_the_live_line_agrees_with_the_report(
    tmp_path, start_fake, aicc, write_contacts, journal_rows
):
    fake = start_fake(1.5)  # the rows in flight are still in flight at the second Ctrl-C
    source = write_contacts(tmp_path / "contacts.csv", 15)
    journal = tmp_path / "campaign.db"
    running = aicc.start(
        "notify", source, "--journal", journal, "--concurrency", "10", env=fake.env
    )
    fake.wait_for(
        lambda s: s["received"]["createVoiceNotification"] >= 10 or running.proc.poll() is not None,
        deadline=30,
    )
    running.signal(signal.SIGINT)
    running.wait_for_stderr("Stopping", deadline=10)
    running.signal(signal.SIGINT)
    stopped = running.wait(10)
    assert stopped.returncode == 130, stopped

    unknown = collections.Counter(r["state"] for r in journal_rows(journal))["unknown"]
    assert unknown >= 1
    live = re.findall(r"unknown (\d+)", stopped.stderr)
    assert live, stopped
    assert int(live[-1]) == unknown, stopped  # the live line's last word
    reported = re.search(r"^unknown\s+(\d+)\s*$", stopped.stdout, re.MULTILINE)
    assert reported is not None, stopped
    assert int(reported.group(1)) == unknown
