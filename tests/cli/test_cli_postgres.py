"""``aicc`` on a PostgreSQL journal (``--journal postgresql://... --campaign NAME``):
real CLI processes against a real PostgreSQL (the ``postgresql_dsn`` fixture) and
FakeAICC in its own process.

* notify / write-back / report (``--json``, ``--export``, ``--export-unanswered``) /
  listen on a PostgreSQL campaign, and a DSN without a password (PGPASSWORD);
* refusals (exit 2): ``--campaign`` missing with a DSN or given with a file, ``--lease``
  with a file, a bad campaign name, a missing campaign, no PostgreSQL driver; an
  unreachable server or a wrong password (exit 3);
* the issue's acceptance test: three ``aicc notify`` workers on one campaign of 20,000
  rows, one SIGKILLed mid-run: nobody phoned twice, the others finish, the dead
  worker's rows in flight end ``unknown`` once its lease expired, the report accounts
  for every row; a re-run sends nothing.
* a PostgreSQL restart mid-campaign (3 workers): no worker stops, no row is unknown,
  nobody is phoned twice; PostgreSQL down for longer than the lease: exit 3, clearly;
* the worker loading a new campaign's input SIGKILLed mid-load: another takes the load
  over (the same input is never refused as another).

Throughout: the DSN's password never appears in any output.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import json
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psycopg
import pytest
from shown import flat

from aicc_async.testing import peak_per_second

KEY = "cli-test-shared-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def password_of(dsn: str) -> str:
    password = urllib.parse.urlsplit(dsn).password
    assert password
    return password


def clean(done: Any, dsn: str) -> Any:
    """``done`` (a finished ``aicc``), after checking its output shows no traceback and
    not the DSN's password."""
    assert "Traceback" not in done.output, done
    assert password_of(dsn) not in done.output, done
    return done


def report_json(
    aicc: Any, dsn: str, name: str, env: dict[str, str], *, secret: str | None = None
) -> dict[str, Any]:
    """``aicc report DSN --campaign NAME --json``; ``secret``: the DSN with the password
    that must not show (default: ``dsn``)."""
    done = clean(aicc.run("report", dsn, "--campaign", name, "--json", env=env), secret or dsn)
    assert done.returncode == 0, done
    return dict(json.loads(done.stdout))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def query(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` from the journal's database (the test looks inside it)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return list(conn.execute(sql, args).fetchall())


# -- the commands on a PostgreSQL campaign -------------------------------------------------


def test_notify_listen_report_and_exports_on_postgresql(
    tmp_path, start_fake, aicc, write_contacts, number_of, postgresql_dsn, campaign_name
):
    n = 60
    fake = start_fake(
        0.0, "--callback-key", KEY, "--release-delay", "0.05", "--answer-rate", "0.5"
    )  # fmt: skip
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = write_contacts(tmp_path / "contacts.csv", n)
    with source.open("a", encoding="utf-8") as f:
        f.write(f"bad,12ab,Hi\nagain,{number_of(3)},Hi\n")  # invalid; a number used already
    port = free_port()
    journal = ("--journal", postgresql_dsn, "--campaign", campaign_name)

    done = clean(
        aicc.run(
            "notify", source, *journal,
            "--callback-url", f"http://127.0.0.1:{port}/aicc/release",
            "--listen", f"127.0.0.1:{port}",
            "--wait-outcomes", "60",
            env=env,
        ),
        postgresql_dsn,
    )  # fmt: skip
    assert done.returncode == 1, done  # one invalid row: failed
    out = flat(done.stdout)
    assert f"(campaign '{campaign_name}')" in out, done
    assert "postgresql://aicc:***@127.0.0.1" in out, done
    assert fake.calls() == {number_of(i): 1 for i in range(n)}
    events = fake.stats()["release_events"]
    assert events["delivered"] == n, events

    report = report_json(aicc, postgresql_dsn, campaign_name, env)
    assert report["rows"] == n + 2
    assert report["states"] == {
        "pending": 0, "sending": 0, "done": n, "failed": 1, "unknown": 0,
        "withdrawn": 0, "duplicate": 1, "suppressed": 0, "limited": 0,
    }  # fmt: skip
    assert report["outcomes"] == {
        "answered": events["answered"],
        "not_answered": events["not_answered"],
        "awaiting": 0,
        "refused_events": 0,
        "unmatched_events": 0,
        "settled": 0,
    }
    assert campaign_name in report["journal"]
    assert report["target"]["base_url"] == fake.url

    text = clean(
        aicc.run("report", postgresql_dsn, "--campaign", campaign_name, env=env), postgresql_dsn
    )
    assert text.returncode == 0, text
    # The hints give the command for this campaign, password masked.
    assert f"--campaign {campaign_name} --export FILE" in flat(text.stdout), text

    problems, unanswered = tmp_path / "problems.csv", tmp_path / "unanswered.csv"
    exported = clean(
        aicc.run(
            "report", postgresql_dsn, "--campaign", campaign_name,
            "--export", problems, "--export-unanswered", unanswered,
            env=env,
        ),
        postgresql_dsn,
    )  # fmt: skip
    assert exported.returncode == 0, exported
    assert {(r["id"], r["state"]) for r in read_csv(problems)} == {
        ("bad", "failed"),
        ("again", "duplicate"),
    }
    assert len(read_csv(unanswered)) == events["not_answered"]
    assert "--campaign NEW-NAME" in flat(exported.stderr), exported

    # The export never overwrites the campaign's input, on PostgreSQL too.
    refused = clean(
        aicc.run(
            "report", postgresql_dsn, "--campaign", campaign_name, "--export", source, env=env
        ),
        postgresql_dsn,
    )
    assert refused.returncode == 2, refused
    assert "will not write the export" in flat(refused.stderr)

    again = clean(aicc.run("notify", source, *journal, env=env), postgresql_dsn)
    assert again.returncode == 1, again
    assert "Nothing left to send" in flat(again.stderr), again
    assert fake.stats()["processed"]["createVoiceNotification"] == n


def test_listen_records_the_release_events_of_a_postgresql_campaign(
    tmp_path, start_fake, aicc, write_contacts, postgresql_dsn, campaign_name
):
    n = 20
    fake = start_fake(0.0, "--callback-key", KEY, "--release-delay", "4")
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = write_contacts(tmp_path / "contacts.csv", n)
    address = f"127.0.0.1:{free_port()}"
    journal = ("--journal", postgresql_dsn, "--campaign", campaign_name)

    sent = clean(
        aicc.run("notify", source, *journal, "--callback-url", f"http://{address}/r", env=env),
        postgresql_dsn,
    )
    assert sent.returncode == 0, sent
    listening = aicc.start("listen", *journal, "--listen", address, env=env)
    listening.wait_for_stderr("Receiving release events")
    stats = fake.wait_for(lambda s: s["release_events"]["pending"] == 0, deadline=30)
    listening.signal(signal.SIGTERM)
    stopped = clean(listening.wait(15), postgresql_dsn)
    assert stopped.returncode == 0, stopped
    assert f"(campaign '{campaign_name}')" in flat(stopped.stderr), stopped

    events = stats["release_events"]
    assert events["delivered"] == n, events
    assert events["failed"] == 0, events
    outcomes = report_json(aicc, postgresql_dsn, campaign_name, env)["outcomes"]
    assert outcomes == {
        "answered": events["answered"],
        "not_answered": events["not_answered"],
        "awaiting": 0,
        "refused_events": 0,
        "unmatched_events": 0,
        "settled": 0,
    }


def test_write_back_on_postgresql_with_pgpassword(
    tmp_path, fake, aicc, postgresql_dsn, campaign_name
):
    source = tmp_path / "results.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sub_cc_no", "vdn_id", "unique_id", "service_id"])
        for i in range(50):
            writer.writerow([1, 2, f"u-{i:04d}", "task-7"])
    # The README's way: the password in PGPASSWORD, not on the command line.
    parts = urllib.parse.urlsplit(postgresql_dsn)
    bare = parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()
    env = {**fake.env, "PGPASSWORD": password_of(postgresql_dsn)}

    done = clean(
        aicc.run("write-back", source, "--journal", bare, "--campaign", campaign_name, env=env),
        postgresql_dsn,
    )
    assert done.returncode == 0, done
    assert fake.stats()["write_backs"] == {f"u-{i:04d}": 1 for i in range(50)}
    report = report_json(aicc, bare, campaign_name, env, secret=postgresql_dsn)
    assert report["kind"] == "write_back"
    assert report["states"]["done"] == 50


def test_another_input_is_refused_and_ctrl_c_stops_one_worker_only(
    tmp_path, start_fake, aicc, write_contacts, number_of, postgresql_dsn, campaign_name
):
    n = 600
    fake = start_fake(0.02)
    source = write_contacts(tmp_path / "contacts.csv", n)
    other = write_contacts(tmp_path / "other.csv", n - 1)  # the same rows but the last
    journal = ("--journal", postgresql_dsn, "--campaign", campaign_name, "--concurrency", "2")

    first = aicc.start("notify", source, *journal, env=fake.env)
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 10)
    refused = clean(aicc.run("notify", other, *journal, env=fake.env), postgresql_dsn)
    assert refused.returncode == 2, refused
    message = flat(refused.stderr)
    assert "with another input: it leaves out 1 of the campaign's rows" in message, refused
    assert "Nothing was sent" in message, refused

    second = aicc.start("notify", source, *journal, env=fake.env)
    deadline = time.monotonic() + 30
    while not _progress(postgresql_dsn, campaign_name)[1].get(second.proc.pid, ("", 0))[1]:
        assert first.proc.poll() is None, first.wait(1)
        assert time.monotonic() < deadline, "the second worker sent nothing within 30 s"
        time.sleep(0.05)
    second.signal(signal.SIGINT)  # Ctrl-C: that worker stops, its rows in flight finish
    stopped = clean(second.wait(30), postgresql_dsn)
    assert stopped.returncode == 130, stopped
    left = query(
        postgresql_dsn,
        "SELECT count(*) FROM aicc_rows WHERE campaign = %s AND state = 'pending'",
        campaign_name,
    )[0][0]
    assert left, "nothing was left for the first worker to send after the second stopped"
    finished = clean(first.wait(60), postgresql_dsn)
    assert finished.returncode == 0, finished
    assert fake.calls() == {number_of(i): 1 for i in range(n)}
    assert report_json(aicc, postgresql_dsn, campaign_name, fake.env)["states"]["done"] == n


# -- workers sharing a tenant through Redis ------------------------------------------------


@pytest.mark.asyncio
async def test_workers_sharing_redis_hold_one_rate_cap_and_one_token(
    tmp_path, fake_aicc, aicc, plain_env, write_contacts, redis_url, postgresql_dsn, campaign_name
):
    rate, n = 15, 60
    source = write_contacts(tmp_path / "contacts.csv", n)
    env = {
        **plain_env,
        "AICC_BASE_URL": fake_aicc.url,
        "AICC_APP_KEY": fake_aicc.app_key,
        "AICC_APP_SECRET": fake_aicc.app_secret,
        "AICC_REDIS_URL": redis_url,
    }
    command = [
        *aicc.command, "notify", str(source), "--journal", postgresql_dsn,
        "--campaign", campaign_name, "--rate", str(rate),
    ]  # fmt: skip
    pipe = asyncio.subprocess.PIPE
    workers = [
        await asyncio.create_subprocess_exec(*command, stdout=pipe, stderr=pipe, env=env)
        for _ in range(2)
    ]
    for worker in workers:
        out, err = await asyncio.wait_for(worker.communicate(), 60)
        output = (out + err).decode()
        assert worker.returncode == 0, output
        assert password_of(postgresql_dsn) not in output
        # Each worker's progress bar ends with the whole campaign, the other's rows too.
        assert f"{n}/{n}" in err.decode(), output

    times = [r.time for r in fake_aicc.received("createVoiceNotification")]
    assert len(times) == n
    assert max(fake_aicc.stats()["calls"].values()) == 1
    # Each worker alone paces itself at --rate: two would send twice that without Redis.
    assert peak_per_second(times) <= rate + 2
    assert fake_aicc.token_requests == 1


# -- refusals ---------------------------------------------------------------------------------


def test_campaign_and_journal_must_fit_together(
    tmp_path, fake, aicc, write_contacts, postgresql_dsn
):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    file = tmp_path / "campaign.db"

    for args in (
        ("notify", source, "--journal", postgresql_dsn),
        ("write-back", source, "--journal", postgresql_dsn),
        ("report", postgresql_dsn),
        ("listen", "--journal", postgresql_dsn, "--listen", "127.0.0.1:0", "--allow-unsigned"),
    ):
        done = clean(aicc.run(*args, env=fake.env), postgresql_dsn)
        assert done.returncode == 2, done
        assert "give the campaign's name with --campaign NAME" in flat(done.stderr), done
        assert "postgresql://aicc:***@127.0.0.1" in flat(done.stderr), done

    for args in (
        ("notify", source, "--journal", file, "--campaign", "spring"),
        ("report", file, "--campaign", "spring"),
        ("listen", "--journal", file, "--campaign", "spring", "--listen", "127.0.0.1:0"),
    ):
        done = aicc.run(*args, env=fake.env)
        assert done.returncode == 2, done
        assert "--campaign names a campaign in a PostgreSQL journal" in flat(done.stderr), done
        assert "leave --campaign out" in flat(done.stderr), done

    lease = aicc.run("notify", source, "--journal", file, "--lease", "5", env=fake.env)
    assert lease.returncode == 2, lease
    assert "--lease is for the workers of a PostgreSQL journal" in flat(lease.stderr), lease
    short = aicc.run(
        "notify", source, "--journal", postgresql_dsn, "--campaign", "x", "--lease", "0.1",
        env=fake.env,
    )  # fmt: skip
    assert short.returncode == 2, short
    assert password_of(postgresql_dsn) not in short.output
    assert not file.exists()

    # A DSN where click does not expect it: its usage error masks the password too.
    stray = clean(
        aicc.run("notify", source, "--journal", file, postgresql_dsn, env=fake.env),
        postgresql_dsn,
    )
    assert stray.returncode == 2, stray
    assert "postgresql://aicc:***@127.0.0.1" in flat(stray.stderr), stray

    blank = clean(
        aicc.run("notify", source, "--journal", postgresql_dsn, "--campaign", " ", env=fake.env),
        postgresql_dsn,
    )
    assert blank.returncode == 2, blank
    assert "--campaign: must be a non-blank name" in flat(blank.stderr), blank

    missing = clean(
        aicc.run("report", postgresql_dsn, "--campaign", "never-ran", env=fake.env), postgresql_dsn
    )
    assert missing.returncode == 2, missing
    assert "no campaign 'never-ran'" in flat(missing.stderr), missing
    assert fake.stats()["processed"]["createVoiceNotification"] == 0


def test_without_the_postgresql_driver_the_extra_is_named(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    dsn = "postgresql://aicc:hidden-pw@127.0.0.1:5432/aicc"
    # psycopg made unimportable, as when aicc-async[postgres] is not installed.
    python, flag, script = aicc.command
    blocked = [python, flag, f"import sys; sys.modules['psycopg'] = None; {script}"]
    for args in (
        ("notify", str(source), "--journal", dsn, "--campaign", "c"),
        ("report", dsn, "--campaign", "c"),
    ):
        done = subprocess.run(
            [*blocked, *args],
            env=fake.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done
        message = flat(done.stderr)
        assert "pip install 'aicc-async[postgres]'" in message, done
        assert "psycopg is missing" in message, done
        assert "Traceback" not in done.stderr
        assert "hidden-pw" not in done.stderr + done.stdout


def test_an_unreachable_server_or_a_wrong_password_is_a_journal_error(
    tmp_path, fake, aicc, write_contacts, postgresql_dsn, campaign_name
):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    port = free_port()
    nowhere = f"postgresql://aicc:n0where-pw@127.0.0.1:{port}/aicc"
    done = aicc.run(
        "notify", source, "--journal", nowhere, "--campaign", campaign_name, env=fake.env
    )
    assert done.returncode == 3, done
    assert f"cannot reach the PostgreSQL journal at 127.0.0.1:{port}" in flat(done.stderr), done
    assert "n0where-pw" not in done.output
    assert "Traceback" not in done.output

    wrong = postgresql_dsn.replace(password_of(postgresql_dsn), "wr0ng-pw")
    for args in (
        ("notify", source, "--journal", wrong, "--campaign", campaign_name),
        ("report", wrong, "--campaign", campaign_name),
    ):
        refused = clean(aicc.run(*args, env=fake.env), postgresql_dsn)
        assert refused.returncode == 3, refused
        assert "password authentication failed" in flat(refused.stderr), refused
        assert "wr0ng-pw" not in refused.output
    assert fake.stats()["processed"]["createVoiceNotification"] == 0


# -- the acceptance test: three workers, one killed --------------------------------------------

ROWS = 20_000
WORKERS = 3
CONCURRENCY = 50
LEASE = 5.0
KILL_AFTER = ROWS // 10


def _progress(dsn: str, name: str) -> tuple[bool, dict[int, tuple[str, int, int]]]:
    """Whether the campaign's input is loaded in full, and per live worker's pid:
    (worker id, rows it has done, rows it has in flight)."""
    if not query(dsn, "SELECT to_regclass('aicc_workers') IS NOT NULL")[0][0]:
        return False, {}  # no worker has created the tables yet
    loaded = query(dsn, "SELECT current_load IS NOT NULL FROM aicc_campaigns WHERE name = %s", name)
    found = query(
        dsn,
        "SELECT w.pid, w.worker, "
        "count(*) FILTER (WHERE r.state = 'done'), count(*) FILTER (WHERE r.state = 'sending') "
        "FROM aicc_workers w LEFT JOIN aicc_rows r ON r.campaign = w.campaign "
        "AND r.worker = w.worker WHERE w.campaign = %s GROUP BY w.pid, w.worker",
        name,
    )
    return bool(loaded and loaded[0][0]), {pid: (w, d, s) for pid, w, d, s in found}


def kill(worker: Any, dsn: str, name: str, worker_id: str) -> set[str]:
    """SIGKILL ``worker``; the keys of the rows it had in flight (``sending``, or
    ``unknown`` if the others settled them already)."""
    worker.signal(signal.SIGKILL)
    assert worker.wait(10).returncode == -signal.SIGKILL
    return {
        key
        for (key,) in query(
            dsn,
            "SELECT key FROM aicc_rows WHERE campaign = %s AND worker = %s "
            "AND state IN ('sending', 'unknown')",
            name,
            worker_id,
        )
    }


def test_three_workers_one_killed_nobody_phoned_twice(
    tmp_path, start_fake, aicc, write_contacts, number_of, postgresql_dsn, campaign_name
):
    fake = start_fake(0.0)
    source = write_contacts(tmp_path / "contacts.csv", ROWS)
    command = (
        "notify", source, "--journal", postgresql_dsn, "--campaign", campaign_name,
        "--concurrency", str(CONCURRENCY), "--lease", str(LEASE),
    )  # fmt: skip
    workers = [aicc.start(*command, env=fake.env) for _ in range(WORKERS)]
    pids = {w.proc.pid: w for w in workers}

    # Kill a worker once the input is loaded, the campaign is under way and that worker
    # has sent some rows and has rows in flight.
    deadline = time.monotonic() + 60
    while True:
        loaded, progress = _progress(postgresql_dsn, campaign_name)
        total_done = sum(done for _, done, _ in progress.values())
        busy = [
            (done, pid)
            for pid, (_, done, sending) in progress.items()
            if pid in pids and done and sending
        ]
        if loaded and total_done >= KILL_AFTER and len(busy) >= 2:
            break
        assert all(w.proc.poll() is None for w in workers), [w.wait(1) for w in workers]
        assert time.monotonic() < deadline, f"no worker to kill within 60 s: {progress}"
        time.sleep(0.05)
    victim_pid = max(busy)[1]
    victim = pids[victim_pid]
    victim_id = progress[victim_pid][0]
    lease_query = (
        "SELECT extract(epoch FROM expires) FROM aicc_workers WHERE campaign = %s AND worker = %s"
    )
    # Read before the kill: on a slow machine the lease may expire, and the survivors
    # remove it, before the test reads it again after the kill.
    lease_seen = query(postgresql_dsn, lease_query, campaign_name, victim_id)
    # Right after the kill: the rows it had in flight, and when its lease expires.
    in_flight = kill(victim, postgresql_dsn, campaign_name, victim_id)
    # Its last renewal may have come after the first read; if the lease is still there,
    # this is when it ends.
    lease_end = query(postgresql_dsn, lease_query, campaign_name, victim_id) or lease_seen
    assert lease_end, "the killed worker held no lease"
    assert in_flight, "the killed worker had no row in flight"

    survivors = [clean(w.wait(90), postgresql_dsn) for w in workers if w is not victim]
    # Exit 1 as documented: the campaign has rows whose outcome is unknown (the dead
    # worker's); each survivor's report is the whole campaign's.
    for survivor in survivors:
        assert survivor.returncode == 1, survivor
        assert f"{ROWS:,} rows" in flat(survivor.stdout), survivor
        assert "unknown" in survivor.stdout, survivor

    calls = fake.calls()
    twice = {number: count for number, count in calls.items() if count != 1}
    assert not twice, f"numbers phoned more than once: {twice}"
    processed = fake.processed()
    assert processed == len(calls)

    rows = query(
        postgresql_dsn,
        "SELECT key, state, code, number, sends, updated FROM aicc_rows "
        "WHERE campaign = %s ORDER BY seq",
        campaign_name,
    )
    assert [key for key, *_ in rows] == [str(i) for i in range(ROWS)]
    states = collections.Counter(state for _, state, *_ in rows)
    assert states == {"done": ROWS - len(in_flight), "unknown": len(in_flight)}, states
    assert all(sends == 1 for *_, sends, _ in rows)
    unknown = {
        key: (code, updated) for key, state, code, _, _, updated in rows if state == "unknown"
    }
    assert set(unknown) == in_flight
    for code, updated in unknown.values():
        assert code == "interrupted"
        assert updated >= float(lease_end[0][0])  # settled only after the lease expired
    done_numbers = {number for _, state, _, number, _, _ in rows if state == "done"}
    assert done_numbers <= set(calls)  # every done row was phoned (once: see above)
    assert set(calls) - done_numbers <= {number_of(int(key)) for key in in_flight}

    report = report_json(aicc, postgresql_dsn, campaign_name, fake.env)
    assert report["rows"] == ROWS == sum(report["states"].values())
    assert report["states"]["done"] == ROWS - len(in_flight)
    assert report["states"]["unknown"] == len(in_flight)
    assert report["states"]["done"] <= processed <= report["states"]["done"] + len(in_flight)
    assert report["problems"] == [
        {
            "state": "unknown",
            "code": "interrupted",
            "count": len(in_flight),
            "example": report["problems"][0]["example"],
        }
    ]

    # Everything finished: a re-run has nothing left to send and sends nothing.
    again = clean(aicc.run(*command, env=fake.env), postgresql_dsn)
    assert again.returncode == 1, again  # the unknown rows are still there
    assert "Nothing left to send" in flat(again.stderr), again
    assert fake.processed() == processed


def notify(source: Path, dsn: str, name: str, concurrency: int, lease: float) -> tuple[Any, ...]:
    """The arguments of ``aicc notify`` as one worker of campaign ``name``."""
    return (
        "notify", source, "--journal", dsn, "--campaign", name,
        "--concurrency", str(concurrency), "--lease", str(lease),
    )  # fmt: skip


def test_a_postgresql_restart_mid_campaign_stops_no_worker_and_loses_no_row(
    tmp_path, start_fake, aicc, write_contacts, number_of, own_postgresql, campaign_name
):
    n = 3000
    dsn = own_postgresql.dsn
    fake = start_fake(0.05)  # each call takes a while: the campaign lasts a few seconds
    source = write_contacts(tmp_path / "contacts.csv", n)
    command = notify(source, dsn, campaign_name, 20, 30)
    workers = [aicc.start(*command, env=fake.env) for _ in range(WORKERS)]

    # Restart once the input is loaded, every worker is sending and some rows are done.
    deadline = time.monotonic() + 60
    while True:
        loaded, progress = _progress(dsn, campaign_name)
        done = sum(d for _, d, _ in progress.values())
        if loaded and len(progress) == WORKERS and done >= n // 5:
            break
        assert all(w.proc.poll() is None for w in workers), [w.wait(1) for w in workers]
        assert time.monotonic() < deadline, f"the campaign did not get under way: {progress}"
        time.sleep(0.05)
    own_postgresql.restart()  # pg_ctl restart -m fast: every connection is closed

    for worker in workers:
        finished = clean(worker.wait(90), dsn)
        assert finished.returncode == 0, finished
    assert fake.calls() == {number_of(i): 1 for i in range(n)}
    rows = query(
        dsn, "SELECT state, sends, count(*) FROM aicc_rows WHERE campaign = %s GROUP BY 1, 2",
        campaign_name,
    )  # fmt: skip
    assert rows == [("done", 1, n)]


def test_the_loading_worker_killed_another_takes_the_load_over(
    tmp_path, start_fake, aicc, write_contacts, number_of, postgresql_dsn, campaign_name
):
    n = ROWS // 2
    fake = start_fake(0.01)
    source = write_contacts(tmp_path / "contacts.csv", n)
    command = notify(source, postgresql_dsn, campaign_name, 50, 3)
    workers = [aicc.start(*command, env=fake.env) for _ in range(WORKERS)]
    pids = {w.proc.pid: w for w in workers}

    # A new campaign streams its input: one worker loads it and sends meanwhile, the
    # others wait to join. Kill the loader before its load is complete.
    deadline = time.monotonic() + 60
    with psycopg.connect(postgresql_dsn, autocommit=True) as conn:
        while True:
            found = None
            if conn.execute("SELECT to_regclass('aicc_workers') IS NOT NULL").fetchone()[0]:
                found = conn.execute(  # the first row sent, and the worker sending it
                    "SELECT c.accepted IS NOT NULL, w.pid, w.worker FROM aicc_campaigns c "
                    "JOIN aicc_rows r ON r.campaign = c.name JOIN aicc_workers w "
                    "ON w.campaign = c.name AND w.worker = r.worker WHERE c.name = %s LIMIT 1",
                    (campaign_name,),
                ).fetchone()
            if found is not None:
                break
            assert all(w.proc.poll() is None for w in workers), [w.wait(1) for w in workers]
            assert time.monotonic() < deadline, "no worker sent anything within 60 s"
            time.sleep(0.005)
    loaded, victim_pid, victim_id = found
    assert not loaded, "the input was loaded in full before the loader could be killed"
    victim = pids[victim_pid]
    in_flight = kill(victim, postgresql_dsn, campaign_name, victim_id)

    # The others take the load over (the same input is never blamed) and finish it.
    for survivor in (w for w in workers if w is not victim):
        finished = clean(survivor.wait(90), postgresql_dsn)
        assert "another input" not in flat(finished.output), finished
        assert finished.returncode == (1 if in_flight else 0), finished
        assert f"{n:,} rows" in flat(finished.stdout), finished
    calls = fake.calls()
    assert max(calls.values()) == 1  # nobody phoned twice
    rows = query(
        postgresql_dsn,
        "SELECT key, state, sends FROM aicc_rows WHERE campaign = %s",
        campaign_name,
    )
    assert sorted(int(key) for key, _, _ in rows) == list(range(n))
    assert {key for key, state, _ in rows if state != "done"} == in_flight
    states = collections.Counter(state for _, state, _ in rows)
    assert states == collections.Counter(done=n - len(in_flight), unknown=len(in_flight))
    assert all(sends == 1 for _, _, sends in rows)
    assert set(calls) >= {number_of(int(key)) for key, state, _ in rows if state == "done"}


def test_postgresql_down_for_longer_than_the_lease_stops_a_worker_cleanly(
    tmp_path, start_fake, aicc, write_contacts, own_postgresql, campaign_name
):
    dsn = own_postgresql.dsn
    fake = start_fake(0.05)
    source = write_contacts(tmp_path / "contacts.csv", 2000)
    command = notify(source, dsn, campaign_name, 10, 2)
    worker = aicc.start(*command, env=fake.env)
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 50)
    own_postgresql.stop()
    try:
        stopped = clean(worker.wait(60), dsn)
    finally:
        own_postgresql.start()
    assert stopped.returncode == 3, stopped
    message = flat(stopped.stderr)
    assert "was out of reach for longer than this worker's lease (2 s" in message, stopped
    assert "Run it again to rejoin the campaign once PostgreSQL answers" in message, stopped
