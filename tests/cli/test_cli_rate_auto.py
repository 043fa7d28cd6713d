"""``aicc notify --rate auto --concurrency auto`` against a FakeAICC with a hidden limit."""

from __future__ import annotations

import json
import re


def test_rate_auto_finishes_every_row_once_and_reports_the_throttling(
    tmp_path, start_fake, aicc, write_contacts, journal_rows
):
    fake = start_fake(0.0, "--hidden-rate-limit", "40")
    source = write_contacts(tmp_path / "contacts.csv", 80)
    journal = tmp_path / "campaign.db"

    done = aicc.run(
        "notify", source, "--journal", journal, "--rate", "auto", "--rate", "400",
        "--concurrency", "auto", env=fake.env,
    )  # fmt: skip

    assert done.returncode == 0, done
    assert {r["state"] for r in journal_rows(journal)} == {"done"}
    calls = fake.calls()
    assert len(calls) == 80
    assert set(calls.values()) == {1}  # nobody phoned twice
    # The report says how many throttle answers the limiter heard: every 429 sent.
    found = re.search(r"([\d,]+) throttle answers", done.stdout)
    assert found is not None, done.stdout
    assert int(found.group(1).replace(",", "")) == fake.stats()["throttled"]

    # The journal keeps the rate over time: a report read from it later shows it too.
    report = aicc.run("report", journal, "--json", env=fake.env)
    assert report.returncode == 0, report
    read = json.loads(report.stdout)
    assert len(read["rate"]) >= 2
    assert all(0 < sample["rate"] <= 400 for sample in read["rate"])
    assert read["throttled"] == fake.stats()["throttled"] > 0
    text = aicc.run("report", journal, env=fake.env)
    assert f"{read['throttled']:,} throttle answers" in " ".join(text.stdout.split()), text


def test_rate_and_concurrency_refuse_what_they_cannot_read(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "contacts.csv", 1)
    for args in (
        ["--rate", "fast"],
        ["--rate", "0"],
        ["--rate", "5", "--rate", "6"],
        ["--concurrency", "lots"],
        ["--concurrency", "0"],
    ):
        done = aicc.run("notify", source, "--journal", tmp_path / "j.db", *args, env=fake.env)
        assert done.returncode == 2, (args, done)
        assert "auto" in done.stderr
    assert not (tmp_path / "j.db").exists()
