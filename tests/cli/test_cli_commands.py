"""The ``aicc`` commands besides campaigns: help, version, report, sandbox, demo,
--sandbox runs, and the entry point without the cli extra installed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from shown import flat


def test_help_lists_the_commands(plain_env, aicc):
    done = aicc.run("--help", env=plain_env)
    assert done.returncode == 0, done
    for command in ("notify", "write-back", "report", "sandbox", "demo"):
        assert command in done.stdout, done
    assert "AICC_BASE_URL" in done.stdout


def test_notify_help(plain_env, aicc):
    done = aicc.run("notify", "--help", env=plain_env)
    assert done.returncode == 0, done
    for option in ("--journal", "--concurrency", "--rate", "--timeout", "--retry-unknown"):
        assert option in done.stdout, done


def test_version(plain_env, aicc):
    done = aicc.run("--version", env=plain_env)
    assert done.returncode == 0, done
    assert importlib.metadata.version("aicc-async") in done.stdout, done


def test_unknown_command(plain_env, aicc):
    done = aicc.run("phone-everyone", env=plain_env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.output
    assert "phone-everyone" in done.stderr


def test_report_json(tmp_path, plain_env, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 7)
    journal = tmp_path / "campaign.db"
    first = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert first.returncode == 0, first

    done = aicc.run("report", journal, "--json", env=plain_env)
    assert done.returncode == 0, done
    report = json.loads(done.stdout)
    assert set(report) >= {"journal", "kind", "rows", "states", "problems"}
    assert report["journal"] == str(journal)
    assert report["kind"] == "voice_notification"
    assert report["rows"] == 7
    assert report["states"] == {
        "pending": 0,
        "sending": 0,
        "done": 7,
        "failed": 0,
        "unknown": 0,
        "withdrawn": 0,
        "duplicate": 0,
        "suppressed": 0,
        "limited": 0,
    }
    assert report["attempts"] == {"1": 7}
    assert report["problems"] == []

    text = aicc.run("report", journal, env=plain_env)
    assert text.returncode == 0, text
    assert "done 7" in flat(text.stdout), text


def test_report_on_a_missing_journal(tmp_path, plain_env, aicc):
    missing = tmp_path / "nope.db"
    done = aicc.run("report", missing, env=plain_env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.output
    assert "no journal" in flat(done.stderr), done
    assert not missing.exists()  # report never creates a journal


def test_report_while_a_campaign_runs(tmp_path, start_fake, aicc, write_contacts, journal_rows):
    fake = start_fake(0.05)
    source = write_contacts(tmp_path / "contacts.csv", 2000)
    journal = tmp_path / "campaign.db"
    running = aicc.start("notify", source, "--journal", journal, "--concurrency", "5", env=fake.env)
    fake.wait_for(
        lambda s: s["processed"]["createVoiceNotification"] >= 1 or running.proc.poll() is not None,
        deadline=30,
    )
    assert running.proc.poll() is None, running.wait()

    # The report reads the journal while the campaign writes it (issue 9: it used to
    # refuse with "in use"), and shows the rows being sent as in flight.
    done = aicc.run("report", journal, env=fake.env)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output
    assert "in flight" in flat(done.stdout), done

    running.signal(signal.SIGTERM)
    stopped = running.wait(15)
    assert stopped.returncode == 130, stopped

    after = aicc.run("report", journal, "--json", env=fake.env)
    assert after.returncode == 0, after
    states = json.loads(after.stdout)["states"]
    assert states["sending"] == 0
    assert states["done"] == len(fake.calls())
    assert sum(states.values()) == 2000


def read_until(proc: subprocess.Popen[bytes], marker: str, deadline: float) -> list[str]:
    """Lines of ``proc``'s stdout up to the one containing ``marker`` (unbuffered reads:
    no line is left in a buffer that select() cannot see)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    received = b""
    end = time.monotonic() + deadline
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            lines = received.decode(errors="replace").splitlines(keepends=True)
            for i, line in enumerate(lines):
                if marker in line and line.endswith("\n"):
                    return lines[: i + 1]
            left = end - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no {marker!r} line within {deadline} s: {lines}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"stdout closed before {marker!r}: {lines}")
            received += chunk


def test_sandbox_serves_until_ctrl_c(tmp_path, plain_env, aicc, write_contacts, journal_rows):
    proc = subprocess.Popen(
        [*aicc.command, "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=plain_env,
        start_new_session=True,
    )
    try:
        lines = read_until(proc, "export AICC_APP_SECRET=", 30)
        env = dict(plain_env)
        for line in lines:
            line = line.strip()
            if line.startswith("export AICC_"):
                name, _, value = line[len("export ") :].partition("=")
                env[name] = value
        assert env["AICC_BASE_URL"].startswith("http://127.0.0.1:"), lines

        source = write_contacts(tmp_path / "contacts.csv", 5)
        journal = tmp_path / "campaign.db"
        done = aicc.run("notify", source, "--journal", journal, env=env)
        assert done.returncode == 0, done
        assert {r["state"] for r in journal_rows(journal)} == {"done"}
        url = f"{env['AICC_BASE_URL']}/_fake/stats"
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - 127.0.0.1
            calls = json.loads(answer.read())["calls"]
        assert calls == {f"139{i:08d}": 1 for i in range(5)}

        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        assert "Traceback" not in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_demo(tmp_path, plain_env, aicc):
    env = {**plain_env, "TMPDIR": str(tmp_path)}
    done = aicc.run("demo", env=env, timeout=60)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output
    assert "done" in done.stdout, done
    assert "nobody is called" in flat(done.stderr), done
    assert list(tmp_path.iterdir()) == []  # its temporary journal is gone

    journal = tmp_path / "kept.db"
    done = aicc.run("demo", "--journal", journal, env=env, timeout=60)
    assert done.returncode == 0, done
    report = aicc.run("report", journal, "--json", env=env)
    assert report.returncode == 0, report
    states = json.loads(report.stdout)["states"]
    assert states["pending"] == states["sending"] == 0
    assert states["done"] > 0


def test_the_demo_shows_the_dialer_loop(tmp_path, plain_env, aicc):
    """A do-not-call list, a second call for the unanswered, and calling hours said."""
    env = {**plain_env, "TMPDIR": str(tmp_path)}
    journal = tmp_path / "kept.db"
    started = time.monotonic()
    done = aicc.run("demo", "--journal", journal, env=env, timeout=90)
    took = time.monotonic() - started
    assert done.returncode == 0, done
    assert "Traceback" not in done.output
    assert took < 60, took
    intro = flat(done.stderr)
    assert "calling hours are" in intro.lower(), intro
    listed = re.search(r"do-not-call list of (\d+) of its numbers", intro)
    assert listed is not None, intro
    report = json.loads(aicc.run("report", journal, "--json", env=env).stdout)
    # Every row on the list was suppressed (never phoned), and only those.
    assert report["states"]["suppressed"] == int(listed.group(1)) > 0, report
    assert report["states"]["pending"] == report["states"]["sending"] == 0
    # The unanswered were called a second time; some answered then.
    assert report["attempts"]["2"] > 0, report
    assert set(report["attempts"]) == {"1", "2"}, report
    text = flat(done.stdout)
    assert "suppressed" in text, text
    assert re.search(r"Calls per row: 1 call [\d,]+ 2 calls [\d,]+", text), text
    assert list(tmp_path.iterdir()) == [journal]  # the list went with the scratch directory


def test_sandbox_option_runs_a_campaign(tmp_path, plain_env, aicc, write_contacts, journal_rows):
    source = write_contacts(tmp_path / "contacts.csv", 20)
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert done.returncode == 0, done
    assert "Traceback" not in done.output
    assert "20" in done.stdout
    rows = journal_rows(journal)
    assert len(rows) == 20
    assert {r["state"] for r in rows} == {"done"}


@pytest.mark.parametrize("missing", ["click", "rich"])
def test_without_the_cli_extra(plain_env, missing):
    code = (
        f"import sys; sys.modules[{missing!r}] = None; "
        "from aicc_async.cli import main; sys.exit(main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        capture_output=True,
        text=True,
        env=plain_env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr, done
    assert "pip install 'aicc-async[cli]'" in done.stderr, done
    assert missing in done.stderr, done


def test_a_campaign_tunes_the_garbage_collector_only_while_it_runs() -> None:
    import gc

    from aicc_async.cli.campaigns import collecting_less

    before = gc.get_threshold()
    seen: list[tuple[tuple[int, ...], int]] = []

    def campaign() -> None:
        with collecting_less():
            seen.append((gc.get_threshold(), gc.get_freeze_count()))
            raise KeyboardInterrupt  # however the campaign ends

    with pytest.raises(KeyboardInterrupt):
        campaign()
    ((during, frozen),) = seen
    assert during[0] > before[0]  # young collections wait longer
    assert frozen > 0  # what existed before is not scanned again
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
