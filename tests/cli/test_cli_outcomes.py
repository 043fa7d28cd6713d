"""Call outcomes through the ``aicc`` command (issue 8): ``notify --callback-url --listen``
records every release event FakeAICC sends (from its own process) exactly once,
``report`` counts them, ``--export-unanswered`` is the next campaign's input, and
``aicc listen`` picks up the events of a campaign that was killed."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import signal
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from aicc_async.callbacks import compute_signature

KEY = "cli-test-shared-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notify_listening(aicc: Any, source: Path, journal: Path, env: dict[str, str], wait: int) -> Any:
    """``aicc notify`` receiving its own release events on a free loopback port."""
    port = free_port()
    return aicc.run(
        "notify", source, "--journal", journal,
        "--callback-url", f"http://127.0.0.1:{port}/aicc/release",
        "--listen", f"127.0.0.1:{port}",
        "--wait-outcomes", str(wait),
        env=env, timeout=90,
    )  # fmt: skip


def report_json(aicc: Any, journal: Path, env: dict[str, str]) -> dict[str, Any]:
    done = aicc.run("report", journal, "--json", env=env)
    assert done.returncode == 0, done
    return dict(json.loads(done.stdout))


def test_every_release_event_is_recorded_once_and_unanswered_rows_are_followed_up(
    tmp_path, start_fake, aicc, write_contacts, read_journal
):
    n = 2000
    fake = start_fake(
        0.0,
        "--callback-key", KEY,
        "--release-delay", "0.05",
        "--answer-rate", "0.6",
        "--duplicate-rate", "0.1",
    )  # fmt: skip
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = write_contacts(tmp_path / "contacts.csv", n)
    journal = tmp_path / "campaign.db"
    done = notify_listening(aicc, source, journal, env, wait=60)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output
    events = fake.stats()["release_events"]
    assert events["scheduled"] == events["delivered"] == n, events
    assert events["duplicates"] > 0, events  # AICC-style redeliveries happened

    rows = read_journal(journal)
    assert collections.Counter(r["outcome"] for r in rows) == {
        "answered": events["answered"],
        "not_answered": events["not_answered"],
    }
    assert len({r["reference"] for r in rows}) == n  # one call, one row, one outcome
    report = report_json(aicc, journal, env)
    assert report["outcomes"] == {
        "answered": events["answered"],
        "not_answered": events["not_answered"],
        "awaiting": 0,
        "refused_events": 0,
        "unmatched_events": 0,
        "settled": 0,
    }
    assert sum(report["release_reasons"].values()) == n
    text = aicc.run("report", journal, env=env)
    assert f"not answered {events['not_answered']:,}" in text.stdout, text

    # The unanswered rows, exported in the input format, are the follow-up campaign.
    follow_up = tmp_path / "unanswered.csv"
    exported = aicc.run("report", journal, "--export-unanswered", follow_up, env=env)
    assert exported.returncode == 0, exported
    unanswered = {r["called"] for r in rows if r["outcome"] == "not_answered"}
    before = fake.calls()
    again = aicc.run("notify", follow_up, "--journal", tmp_path / "again.db", env=env)
    assert again.returncode == 0, again
    after = fake.calls()
    called_again = {number for number, count in after.items() if count > before.get(number, 0)}
    assert called_again == unanswered
    assert all(after[number] == 2 for number in unanswered)


def test_events_of_a_killed_campaign_are_recorded_by_aicc_listen(
    tmp_path, start_fake, aicc, write_contacts, read_journal
):
    fake = start_fake(0.02, "--callback-key", KEY, "--release-delay", "4")
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = write_contacts(tmp_path / "contacts.csv", 1000)
    journal = tmp_path / "campaign.db"
    port = free_port()
    address = f"127.0.0.1:{port}"
    url = f"http://{address}/aicc/release"

    running = aicc.start(
        "notify", source, "--journal", journal, "--concurrency", "5",
        "--callback-url", url, "--listen", address,
        env=env,
    )  # fmt: skip
    fake.wait_for(lambda s: s["processed"]["createVoiceNotification"] >= 100)
    running.signal(signal.SIGKILL)
    assert running.wait(15).returncode == -signal.SIGKILL

    listening = aicc.start("listen", "--journal", journal, "--listen", address, env=env)
    stats = fake.wait_for(
        lambda s: (
            s["release_events"]["pending"] == 0
            and s["release_events"]["scheduled"] == s["processed"]["createVoiceNotification"]
        ),
        deadline=30,
    )
    listening.signal(signal.SIGTERM)
    stopped = listening.wait(15)
    assert stopped.returncode == 0, stopped
    assert "Traceback" not in stopped.output

    events = stats["release_events"]
    assert events["failed"] == 0, events  # every event found a receiver
    rows = read_journal(journal)
    sent = [r for r in rows if r["reference"] is not None]
    assert sent, rows[:3]
    assert all(r["outcome"] in ("answered", "not_answered") for r in sent)
    # The rows in flight at the kill have no serial number: their events are kept
    # aside, the others are all on their rows.
    assert len(sent) >= events["delivered"] - 5

    # The campaign resumes on the same journal afterwards, and its report adds up.
    resumed = aicc.run("notify", source, "--journal", journal, env=env)
    assert resumed.returncode in (0, 1), resumed
    assert max(fake.calls().values()) == 1


def test_listen_whose_journal_went_away_says_so_when_stopped(tmp_path, fake, aicc, write_contacts):
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    journal = tmp_path / "campaign.db"
    finished = aicc.run(
        "notify", write_contacts(tmp_path / "c.csv", 3), "--journal", journal, env=env
    )
    assert finished.returncode == 0, finished
    listening = aicc.start("listen", "--journal", journal, "--listen", "127.0.0.1:0", env=env)
    listening.wait_for_stderr("Receiving release events")

    moved = tmp_path / "moved"  # the journal moved away (or its disk unmounted)
    moved.mkdir()
    for path in list(tmp_path.glob("campaign.db*")):
        path.rename(moved / path.name)
    listening.signal(signal.SIGTERM)
    stopped = listening.wait(15)

    assert stopped.returncode == 2, stopped
    assert "stopped; the outcomes cannot be read" in " ".join(stopped.stderr.split()), stopped
    assert "Traceback" not in stopped.output


def test_listen_refuses_bad_settings(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0

    no_key = aicc.run("listen", "--journal", journal, "--listen", "127.0.0.1:0", env=fake.env)
    assert no_key.returncode == 2, no_key
    assert "AICC_CALLBACK_KEY" in no_key.stderr

    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    for address in ("nowhere", "127.0.0.1:99999", ":80"):
        bad = aicc.run("listen", "--journal", journal, "--listen", address, env=env)
        assert bad.returncode == 2, (address, bad)
        assert "Traceback" not in bad.output

    nowhere = tmp_path / "missing-folder" / "no.db"
    missing = aicc.run("listen", "--journal", nowhere, "--listen", "127.0.0.1:0", env=env)
    assert missing.returncode == 2, missing
    assert "does not exist" in " ".join(missing.stderr.split())
    assert not nowhere.parent.exists()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        refused = aicc.run("listen", "--journal", journal, "--listen", busy, env=env)
    assert refused.returncode == 2, refused
    assert "cannot listen" in refused.stderr

    short = {**fake.env, "AICC_CALLBACK_KEY": "k3y-0f-12char"}
    weak = aicc.run("listen", "--journal", journal, "--listen", "127.0.0.1:0", env=short)
    assert weak.returncode == 2, weak
    assert "at least 16 characters" in weak.stderr
    assert "k3y-0f-12char" not in weak.output  # the key itself is never echoed

    listen_alone = aicc.run(
        "notify", source, "--journal", journal, "--listen", "127.0.0.1:0", env=env
    )
    assert listen_alone.returncode == 2, listen_alone
    assert "--callback-url" in listen_alone.stderr


def test_demo_shows_call_outcomes(plain_env, aicc, tmp_path):
    done = aicc.run("demo", env={**plain_env, "TMPDIR": str(tmp_path)}, timeout=90)
    assert done.returncode == 0, done
    assert "Call outcomes" in done.stdout, done
    assert "answered" in done.stdout
    assert "Release reasons" in done.stdout


def test_a_wrong_callback_key_is_said_at_once_and_exits_1(
    tmp_path, start_fake, aicc, write_contacts
):
    fake = start_fake(0.0, "--callback-key", KEY, "--release-delay", "0.05")
    env = {**fake.env, "AICC_CALLBACK_KEY": "another-key-of-the-right-length"}
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"
    done = notify_listening(aicc, source, journal, env, wait=120)
    assert done.returncode == 1, done
    assert "AICC_CALLBACK_KEY" in done.stderr
    assert "does not match" in done.stderr
    assert re.search(r"refused \d+ \(signature \d+\)", done.stderr), done  # the live line
    assert "Traceback" not in done.output
    report = report_json(aicc, journal, env)
    assert report["outcomes"]["refused_events"] >= 10
    assert report["refused_reasons"]["signature"] == report["outcomes"]["refused_events"]
    text = aicc.run("report", journal, env=env)
    assert "refused" in text.stdout
    assert "AICC_CALLBACK_KEY" in text.stdout


def test_aicc_listen_started_before_the_campaign_keeps_every_event(
    tmp_path, start_fake, aicc, write_contacts, read_journal
):
    fake = start_fake(0.0, "--callback-key", KEY, "--release-delay", "0.05")
    env = {**fake.env, "AICC_CALLBACK_KEY": KEY}
    source = write_contacts(tmp_path / "contacts.csv", 200)
    journal = tmp_path / "later.db"
    address = f"127.0.0.1:{free_port()}"

    listening = aicc.start("listen", "--journal", journal, "--listen", address, env=env)
    listening.wait_for_stderr("Receiving release events")
    with sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True) as db:
        kind = db.execute("SELECT kind FROM campaign").fetchone()
    assert kind == ("voice_notification",)  # a real journal, not an empty file
    done = aicc.run(
        "notify", source, "--journal", journal,
        "--callback-url", f"http://{address}/aicc/release",
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done
    stats = fake.wait_for(
        lambda s: s["release_events"]["pending"] == 0 and s["release_events"]["delivered"] == 200,
        deadline=30,
    )
    listening.signal(signal.SIGTERM)
    stopped = listening.wait(15)
    assert stopped.returncode == 0, stopped
    assert stats["release_events"]["failed"] == 0
    rows = read_journal(journal)
    assert all(r["outcome"] in ("answered", "not_answered") for r in rows)
    report = report_json(aicc, journal, env)
    assert report["outcomes"]["awaiting"] == 0
    assert report["outcomes"]["answered"] + report["outcomes"]["not_answered"] == 200


def test_the_demo_suggests_only_commands_that_work(plain_env, aicc, tmp_path):
    env = {**plain_env, "TMPDIR": str(tmp_path)}
    kept = tmp_path / "kept.db"
    for args, journal in (((), None), (("--journal", kept), kept)):
        done = aicc.run("demo", *args, env=env, timeout=90)
        assert done.returncode == 0, done
        text = " ".join(done.output.split())
        suggested = set(re.findall(r"`aicc (?:report|listen --journal) (\S+?)[ `]", text))
        if journal is not None:
            assert suggested == {str(journal)}, text
            # The connections that dropped after the call was placed left rows unknown:
            # their release events settled them.
            assert "were settled by their release event" in text, text
            report = report_json(aicc, journal, env)
            assert report["states"]["unknown"] == 0
            assert report["outcomes"]["settled"] > 0
        for named in suggested:  # the temporary journal is gone: none may name it
            again = aicc.run("report", named, env=env)
            assert again.returncode == 0, (named, again)
            assert "Call outcomes" in again.stdout


def test_aicc_listen_with_a_wrong_callback_key_stops_and_exits_1(tmp_path, plain_env, aicc):
    env = {**plain_env, "AICC_CALLBACK_KEY": "another-key-of-the-right-length"}
    address = f"127.0.0.1:{free_port()}"
    listening = aicc.start("listen", "--journal", tmp_path / "j.db", "--listen", address, env=env)
    listening.wait_for_stderr("Receiving release events")
    for i in range(10):
        fields = {"callSerialNo": str(1000 + i), "called": "88880000", "releaseReason": "0"}
        timestamp, nonce = str(int(time.time())), f"n{i}"
        body = {
            **fields,
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": compute_signature(fields, KEY, timestamp, nonce),  # AICC's key
        }
        request = urllib.request.Request(
            f"http://{address}/aicc/release", data=json.dumps(body).encode(), method="POST"
        )
        with (
            contextlib.suppress(urllib.error.HTTPError),
            urllib.request.urlopen(request, timeout=5),  # noqa: S310 - a loopback http URL
        ):
            pass
    stopped = listening.wait(15)
    assert stopped.returncode == 1, stopped
    assert "AICC_CALLBACK_KEY" in stopped.stderr
    report = report_json(aicc, tmp_path / "j.db", env)
    assert report["refused_reasons"] == {"signature": 10}
