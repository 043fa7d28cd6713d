"""Small frictions a user hit: messages in the CLI's terms (options, not Python
keywords), every ``aicc`` message with its prefix, no lock file left after a clean run.

Real ``aicc`` processes against FakeAICC in its own process.
"""

from __future__ import annotations

import os

import pytest
from shown import flat


@pytest.mark.parametrize("variable", ["AICC_BASE_URL", "AICC_TOKEN_URL"])
def test_an_http_url_names_the_cli_option(tmp_path, fake, aicc, write_contacts, variable):
    env = {**fake.env, variable: "http://aicc.example.com"}
    source = write_contacts(tmp_path / "c.csv", 2)
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=env)
    assert done.returncode == 2, done
    message = flat(done.stderr)
    assert f"aicc: {variable}:" in message, done
    assert "--allow-insecure-http" in message, done
    assert "allow_insecure_http" not in message, done
    assert fake.calls() == {}


def test_ignored_columns_are_an_aicc_message(tmp_path, fake, aicc, write_csv):
    source = write_csv(
        tmp_path / "c.csv", ["id", "called", "text", "extra_col"], [["1", "13900000001", "hi", "x"]]
    )
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=fake.env)
    assert done.returncode == 0, done
    lines = [line for line in done.stderr.splitlines() if "Ignoring column(s)" in line]
    assert len(lines) == 1, done
    assert lines[0].startswith("aicc: Ignoring column(s) extra_col"), done


def test_a_clean_run_leaves_no_lock_file(tmp_path, fake, aicc, write_contacts):
    source = write_contacts(tmp_path / "c.csv", 3)
    done = aicc.run("notify", source, "--journal", tmp_path / "campaign.db", env=fake.env)
    assert done.returncode == 0, done
    assert sorted(os.listdir(tmp_path)) == ["c.csv", "campaign.db"]
    again = aicc.run("report", tmp_path / "campaign.db", env=fake.env)
    assert again.returncode == 0, again
    assert sorted(os.listdir(tmp_path)) == ["c.csv", "campaign.db"]
