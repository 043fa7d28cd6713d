"""Issue 9, friction: one message per error, naming what a CLI user can change; the
right line for a non-UTF-8 byte; CampaignError importable where the README says; a
header-only CSV refused; a too-long ``text`` cell described in the user's terms; a
progress line that fits 80 columns; ``aicc demo`` cleaning up after itself; and
``-v`` / ``-vv`` for the SDK's log.

Real ``aicc`` processes against FakeAICC in its own process, counting what FakeAICC
received.
"""

from __future__ import annotations

import difflib
import re
import socket

import pytest
from shown import flat, no_traceback, one_message

CREATE = "createVoiceNotification"


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# Errors printed once, in the CLI's terms


@pytest.mark.parametrize("failure", ["refused-credentials", "unreachable"])
def test_an_error_is_printed_once(tmp_path, fake, aicc, write_contacts, failure):
    if failure == "refused-credentials":
        env = {**fake.env, "AICC_APP_SECRET": "not-the-secret"}
    else:
        env = {**fake.env, "AICC_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    source = write_contacts(tmp_path / "contacts.csv", 5)
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", "--timeout", "1", env=env)
    assert done.returncode in (1, 2), done
    message = one_message(done)
    # Nothing before the message says the same thing again (a log line of the error).
    before = flat(done.stderr[: done.stderr.index("aicc:")])
    match = difflib.SequenceMatcher(None, message, before, autojunk=False).find_longest_match()
    repeated = message[match.a : match.a + match.size]
    assert match.size < 40, f"the error is printed twice: {repeated!r}\n{done}"


CONFIG_ERRORS = {
    # name: (environment changes, the variable the message must name)
    "missing credentials": ({}, "AICC_BASE_URL"),
    "not an http URL": (
        {"AICC_BASE_URL": "ftp://aicc.example", "AICC_APP_KEY": "k", "AICC_APP_SECRET": "s"},
        "AICC_BASE_URL",
    ),
    "credentials in the URL": (
        {
            "AICC_BASE_URL": "https://user:pw@aicc.example",
            "AICC_APP_KEY": "k",
            "AICC_APP_SECRET": "s",
        },
        "AICC_BASE_URL",
    ),
    "bad token URL": (
        {
            "AICC_BASE_URL": "https://aicc.example",
            "AICC_TOKEN_URL": "ftp://token.example",
            "AICC_APP_KEY": "k",
            "AICC_APP_SECRET": "s",
        },
        "AICC_TOKEN_URL",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors_name_the_environment_variable(
    tmp_path, plain_env, aicc, write_contacts, case
):
    changes, variable = CONFIG_ERRORS[case]
    source = write_contacts(tmp_path / "contacts.csv", 3)
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env={**plain_env, **changes})
    assert done.returncode == 2, done
    message = one_message(done)
    assert variable in message, done
    assert "AICCClient(" not in done.output, done


# ---------------------------------------------------------------------------------------
# Input


def test_a_non_utf8_byte_is_reported_on_its_line(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 500)  # lines 1 (header) to 501
    with source.open("ab") as f:
        f.write(b"500,13900000500,caf\xe9\n")  # line 502, Latin-1
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=fake.env)
    assert done.returncode == 2, done
    message = one_message(done)
    assert "not UTF-8" in message, done
    assert "line 502" in message, done
    assert fake.stats()["received"][CREATE] == 0


def test_a_header_only_csv_is_refused(tmp_path, fake, aicc):
    source = tmp_path / "contacts.csv"
    source.write_text("id,called,text\n")
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=fake.env)
    assert done.returncode == 2, done
    assert "no rows" in one_message(done), done
    assert fake.stats()["received"][CREATE] == 0


def test_a_too_long_text_is_described_in_the_users_terms(
    tmp_path, fake, aicc, write_csv, read_journal
):
    source = write_csv(
        tmp_path / "contacts.csv",
        ["id", "called", "text"],
        [["fits", "13900000001", "a" * 998], ["long", "13900000002", "b" * 999]],
    )
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=fake.env)
    assert done.returncode == 1, done
    no_traceback(done)
    assert fake.calls() == {"13900000001": 1}
    rows = {r["key"]: r for r in read_journal(tmp_path / "j.db")}
    assert rows["fits"]["state"] == "done"
    long = rows["long"]
    assert (long["state"], long["code"]) == ("failed", "invalid"), long
    description = long["description"]
    assert "text" in description, long
    assert "998" in description, long
    assert "voice_content" not in description, long
    assert "1001" not in description, long  # not the length with the SDK's two '$'


def test_campaign_error_is_importable_where_the_readme_shows_it():
    import aicc_async
    import aicc_async.bulk
    import aicc_async.errors

    assert getattr(aicc_async, "CampaignError", None) is aicc_async.errors.CampaignError
    assert getattr(aicc_async.bulk, "CampaignError", None) is aicc_async.errors.CampaignError


# ---------------------------------------------------------------------------------------
# Display


def test_the_progress_line_fits_80_columns(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 300)
    env = {**fake.env, "COLUMNS": "80"}
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=env)
    assert done.returncode == 0, done
    lines = done.stderr.splitlines()
    assert all(len(line) <= 80 for line in lines), done
    for label in ("done", "failed", "unknown"):
        # Each count on the same line as its label ("300 done" or "done 300"), not
        # wrapped away from it.
        pattern = rf"\d[\d,]* {label}\b|\b{label} \d"
        assert any(re.search(pattern, line) for line in lines), (label, done)


def test_demo_leaves_no_temporary_directory(tmp_path, plain_env, aicc):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**plain_env, "TMPDIR": str(scratch)}
    done = aicc.run("demo", env=env, timeout=90)
    assert done.returncode == 0, done
    no_traceback(done)
    assert "done" in done.stdout, done
    assert list(scratch.glob("aicc-demo-*")) == [], list(scratch.iterdir())


# ---------------------------------------------------------------------------------------
# -v / --verbose


def test_verbose_shows_the_sdks_log(tmp_path, start_fake, aicc, write_contacts):
    # 'busy' answers are retried; each retry is logged at INFO. Every run logs the
    # AccessToken it obtained at DEBUG.
    fake = start_fake(
        0.0, "--chaos-probability", "0.4", "--chaos-faults", "busy", "--chaos-seed", "1"
    )
    source = write_contacts(tmp_path / "contacts.csv", 20)
    started = {
        name: aicc.start(
            "notify", source, "--journal", tmp_path / f"{name}.db", *flags, env=fake.env
        )
        for name, flags in {"quiet": (), "verbose": ("--verbose",), "debug": ("-vv",)}.items()
    }
    runs = {name: running.wait(60) for name, running in started.items()}
    for run in runs.values():
        assert run.returncode in (0, 1), run
        no_traceback(run)

    assert "retrying" not in runs["quiet"].stderr, runs["quiet"]
    assert "AccessToken obtained" not in runs["quiet"].stderr, runs["quiet"]
    assert "retrying" in runs["verbose"].stderr, runs["verbose"]
    assert "AccessToken obtained" not in runs["verbose"].stderr, runs["verbose"]
    assert "AccessToken obtained" in runs["debug"].stderr, runs["debug"]
    for run in runs.values():
        assert "retrying" not in run.stdout, run  # the log goes to stderr only
