"""Bad input to ``aicc``: the documented exit status, one clear message on stderr
naming the problem, no traceback, and nothing sent that should not be."""

from __future__ import annotations

import csv
import os
import sqlite3
import stat

from shown import flat, no_traceback, one_message


def journal_count(path) -> int | None:
    """How many rows the journal at ``path`` holds (None: no file, or no rows table)."""
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
        if "rows" not in tables:
            return None
        return db.execute("SELECT count(*) FROM rows").fetchone()[0]
    finally:
        db.close()


def test_csv_without_called_column(tmp_path, fake, aicc):
    source = tmp_path / "contacts.csv"
    source.write_text("id,phone,text\n1,13900000001,hello\n")
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 2, done
    assert "'called'" in one_message(done), done
    assert fake.stats()["calls"] == {}
    assert journal_count(journal) in (None, 0)


def test_empty_file(tmp_path, plain_env, aicc):
    source = tmp_path / "contacts.csv"
    source.write_bytes(b"")
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert done.returncode == 2, done
    assert "is empty" in one_message(done), done
    assert journal_count(journal) in (None, 0)


INVALID = {
    # key: (called, text, voice_content, priority, extra cell, words the description names)
    "2": ("12-34", "hello", "", "", None, "called"),
    "4": ("13900000004", "hello", "", "high", None, "priority"),
    "5": ("13900000005", "hello", "$v$", "", None, "voice_content"),
    "7": ("13900000007", "hello", "", "", "surplus", "more cell"),
}


def test_invalid_rows_fail_and_valid_rows_are_sent(tmp_path, fake, aicc, journal_rows):
    source = tmp_path / "contacts.csv"
    valid = {str(i): f"139{i:08d}" for i in (1, 3, 6, 8)}
    with source.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "called", "text", "voice_content", "priority"])
        for i in range(1, 9):
            key = str(i)
            if key in valid:
                writer.writerow([key, valid[key], f"hello {i}", "", "3"])
            else:
                called, text, content, priority, extra, _ = INVALID[key]
                row = [key, called, text, content, priority]
                writer.writerow(row if extra is None else [*row, extra])
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 1, done
    no_traceback(done)
    assert fake.calls() == dict.fromkeys(valid.values(), 1)

    rows = {r["key"]: r for r in journal_rows(journal)}
    assert len(rows) == 8
    for key in valid:
        assert rows[key]["state"] == "done", rows[key]
    for key, (*_, names) in INVALID.items():
        row = rows[key]
        assert row["state"] == "failed", row
        assert row["code"] == "invalid", row
        assert row["sends"] == 0, row
        assert names in row["description"], row
    out = flat(done.stdout)
    assert "failed 4" in out, done
    assert "invalid" in out, done

    report = aicc.run("report", journal, env=fake.env)
    assert report.returncode == 0, report
    assert "failed 4" in flat(report.stdout), report
    assert "invalid" in report.stdout

    export = tmp_path / "problems.csv"
    exported = aicc.run("report", journal, "--export", export, env=fake.env)
    assert exported.returncode == 0, exported
    assert "Wrote 4 failed, unknown and duplicate rows" in flat(exported.stderr), exported
    with export.open(newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert [r["id"] for r in written] == list(INVALID)
    for r in written:
        called, text, content, priority, _, names = INVALID[r["id"]]
        assert r["state"] == "failed"
        assert r["code"] == "invalid"
        assert names in r["description"]
        assert (r["called"], r["text"], r["voice_content"], r["priority"]) == (
            called,
            text,
            content,
            priority,
        )


def test_export_to_an_unwritable_path(tmp_path, plain_env, aicc, write_contacts):
    source = tmp_path / "contacts.csv"
    source.write_text("id,called,text\n1,12-34,hello\n")
    journal = tmp_path / "campaign.db"
    first = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert first.returncode == 1, first

    done = aicc.run("report", journal, "--export", "/proc/aicc-export.csv", env=plain_env)
    assert done.returncode == 2, done
    assert "cannot write /proc/aicc-export.csv" in one_message(done), done


def test_non_utf8_file(tmp_path, plain_env, aicc):
    source = tmp_path / "contacts.csv"
    source.write_bytes(b"id,called,text\n1,13900000001,caf\xff\xfe\n")
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert done.returncode == 2, done
    assert "not UTF-8" in one_message(done), done
    assert journal_count(journal) in (None, 0)


def test_non_utf8_far_into_a_large_file_sends_nothing(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 5000)
    with source.open("ab") as f:
        f.write(b"5000,13900005000,caf\xe9\n")  # Latin-1, after several load batches
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 2, done
    assert "not UTF-8" in one_message(done), done
    stats = fake.stats()
    assert stats["calls"] == {}
    assert stats["received"]["createVoiceNotification"] == 0
    assert not journal.exists()  # the whole file is checked before the journal is made


def unwritable_journals(tmp_path):
    """Journal paths that cannot be created: procfs refuses new files even to root;
    a read-only directory refuses them to anyone else."""
    paths = ["/proc/aicc-journal.db"]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        paths.append(str(locked / "journal.db"))
    return paths


def test_journal_cannot_be_created(tmp_path, plain_env, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 5)
    for journal in unwritable_journals(tmp_path):
        done = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
        assert done.returncode == 2, done
        stderr = one_message(done)
        assert "journal" in stderr, done
        assert "cannot open" in stderr or "cannot write" in stderr, done
        assert journal in stderr, done


def test_journal_is_not_a_journal(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 5)
    before = source.read_bytes()

    done = aicc.run("notify", source, "--journal", source, env=fake.env)
    assert done.returncode == 2, done
    assert "not an aicc journal" in one_message(done), done
    assert source.read_bytes() == before  # the input is left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.csv"]

    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (name TEXT)")
    db.execute("INSERT INTO users VALUES ('alice')")
    db.commit()
    db.close()
    done = aicc.run("notify", source, "--journal", other, env=fake.env)
    assert done.returncode == 2, done
    assert "not an aicc journal" in one_message(done), done
    db = sqlite3.connect(other)
    tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master")]
    db.close()
    assert tables == ["users"]  # another application's database is not touched
    assert fake.stats()["calls"] == {}


def test_journal_of_another_kind(tmp_path, plain_env, aicc, write_contacts, journal_rows):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    journal = tmp_path / "campaign.db"
    first = aicc.run("notify", source, "--journal", journal, "--sandbox", env=plain_env)
    assert first.returncode == 0, first

    results = tmp_path / "results.csv"
    results.write_text("sub_cc_no,vdn_id,unique_id,service_id\n1,2,u-1,task\n")
    done = aicc.run("write-back", results, "--journal", journal, "--sandbox", env=plain_env)
    assert done.returncode == 2, done
    stderr = one_message(done)
    assert "voice_notification" in stderr, done
    assert "write_back" in stderr, done
    assert [r["key"] for r in journal_rows(journal)] == ["0", "1", "2"]


def test_changed_input_is_refused(tmp_path, fake, aicc, write_contacts, journal_rows):
    source = write_contacts(tmp_path / "contacts.csv", 10)
    journal = tmp_path / "campaign.db"
    assert aicc.run("notify", source, "--journal", journal, env=fake.env).returncode == 0
    before = fake.stats()

    text = source.read_text()
    changed = text.replace("Hello contact 3,", "Goodbye contact 3,")
    assert changed != text
    source.write_text(changed)
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 2, done
    stderr = one_message(done)
    assert "key '3'" in stderr, done
    assert "Nothing was sent" in stderr, done
    after = fake.stats()
    assert after["calls"] == before["calls"]
    assert (
        after["received"]["createVoiceNotification"]
        == before["received"]["createVoiceNotification"]
    )
    assert {r["state"] for r in journal_rows(journal)} == {"done"}


def test_missing_credentials(tmp_path, plain_env, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, env=plain_env)
    assert done.returncode == 2, done
    stderr = one_message(done)
    assert "AICC_BASE_URL" in stderr, done
    assert "--sandbox" in stderr, done
    assert not journal.exists()


BAD_OPTIONS = {
    "--concurrency 0": (["--concurrency", "0"], "--concurrency"),
    "--rate -1": (["--rate", "-1"], "--rate"),
    "--timeout 0": (["--timeout", "0"], "--timeout"),
    "no --journal": ([], "--journal"),
}


def test_bad_options(tmp_path, plain_env, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 3)
    journal = ["--journal", str(tmp_path / "campaign.db")]
    running = {
        name: aicc.start(
            "notify", source, *(journal if options else []), *options, "--sandbox", env=plain_env
        )
        for name, (options, _) in BAD_OPTIONS.items()
    }  # at once: each only parses its options
    for name, (_, words) in BAD_OPTIONS.items():
        done = running[name].wait(30)
        assert done.returncode == 2, (name, done)
        no_traceback(done)
        assert "Usage:" in done.stderr, (name, done)
        assert words in done.stderr, (name, done)
    assert not (tmp_path / "campaign.db").exists()


def test_missing_source_file(tmp_path, plain_env, aicc):
    done = aicc.run(
        "notify", tmp_path / "nope.csv", "--journal", tmp_path / "j.db", "--sandbox", env=plain_env
    )
    assert done.returncode == 2, done
    no_traceback(done)
    assert "nope.csv" in done.stderr, done


def test_bom_and_windows_line_endings(tmp_path, fake, aicc, journal_rows):
    source = tmp_path / "contacts.csv"
    lines = ["id,called,text"] + [f"{i},139{i:08d},hello {i}" for i in range(5)]
    source.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 0, done
    no_traceback(done)
    assert "Ignoring" not in done.stderr  # the BOM is not part of the first column's name
    rows = journal_rows(journal)
    assert [r["key"] for r in rows] == [str(i) for i in range(5)]
    assert {r["state"] for r in rows} == {"done"}
    assert fake.calls() == {f"139{i:08d}": 1 for i in range(5)}


def test_duplicate_id_does_not_silently_drop_a_row(tmp_path, fake, aicc, journal_rows):
    # Two different people under the same id: the file is refused before anything is
    # sent, instead of one of them vanishing from an "every row done" campaign.
    source = tmp_path / "contacts.csv"
    source.write_text(
        "id,called,text\n"
        "1,13900000001,hello one\n"
        "2,13900000002,hello two\n"
        "2,13900000022,hello other two\n"
        "3,13900000003,hello three\n"
    )
    journal = tmp_path / "campaign.db"

    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    no_traceback(done)
    assert done.returncode == 2, done
    assert "key '2' to two different rows" in flat(done.stderr), done
    assert fake.calls() == {}
