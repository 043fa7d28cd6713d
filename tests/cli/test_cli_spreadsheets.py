"""CSV files as spreadsheets export them: European Excel separates columns with ``;``,
others with tabs, both with a byte-order mark and CRLF line ends; Excel writes long
numbers in scientific notation; an empty cell is named by its column.

Real ``aicc`` processes against FakeAICC in its own process, and ``CampaignFile``, the
Python API that reads the same files.
"""

from __future__ import annotations

import csv
import tracemalloc
from pathlib import Path

import pytest
from shown import flat

from aicc_async.bulk.campaign.csv_input import CampaignFile
from aicc_async.errors import AICCValidationError, CampaignError

NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


def excel_file(path: Path, separator: str, lines: list[list[str]]) -> Path:
    """``lines`` as Excel writes them: a UTF-8 BOM, ``separator``, CRLF (cells holding
    the separator quoted)."""
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f, delimiter=separator, lineterminator="\r\n").writerows(lines)
    return path


def contacts(n: int) -> list[list[str]]:
    # Texts holding the other separators: a wrong guess would split them.
    return [["id", "called", "text"]] + [
        [str(i), f"139{i:08d}", f"Hello {i}, your parcel; it arrives today"] for i in range(n)
    ]


@pytest.mark.parametrize("separator", [";", "\t"])
def test_an_excel_export_is_read_with_its_separator_and_says_so(
    tmp_path, fake, aicc, journal_rows, separator
):
    source = excel_file(tmp_path / "contacts.csv", separator, contacts(5))
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 0, done
    assert f"separated by {NAMES[separator]}" in flat(done.stderr), done
    rows = journal_rows(journal)
    assert [r["key"] for r in rows] == [str(i) for i in range(5)]
    assert {r["state"] for r in rows} == {"done"}
    assert fake.calls() == {f"139{i:08d}": 1 for i in range(5)}


def test_a_comma_file_is_read_without_a_word_about_separators(tmp_path, fake, aicc):
    source = excel_file(
        tmp_path / "contacts.csv", ",", [["id", "called", "text"], ["1", "139", "a"]]
    )
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=fake.env)
    assert "separated by" not in done.stderr, done


def test_delimiter_option_overrides_the_guess(tmp_path, fake, aicc, journal_rows):
    # Read with ';' this header has every column; the user says it is tab-separated.
    lines = [["id;x", "called", "text"], ["1;a", "13900000001", "hello; you"]]
    source = excel_file(tmp_path / "contacts.csv", "\t", lines)
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, "--delimiter", "tab", env=fake.env)
    assert done.returncode == 0, done
    assert "Ignoring column(s) id;x" in flat(done.stderr), done
    assert fake.calls() == {"13900000001": 1}


def test_a_wrong_delimiter_option_names_the_columns_it_found(tmp_path, fake, aicc):
    source = excel_file(tmp_path / "contacts.csv", ";", contacts(2))
    done = aicc.run(
        "notify", source, "--journal", tmp_path / "j.db", "--delimiter", ",", env=fake.env
    )
    assert done.returncode == 2, done
    message = flat(done.stderr)
    assert "no 'called' column" in message, done
    assert "separated by commas (--delimiter)" in message, done
    assert fake.calls() == {}


def test_scientific_notation_says_what_excel_did_and_how_to_export_text(
    tmp_path, fake, aicc, journal_rows
):
    lines = [["id", "called", "text"], ["1", "1.38E+10", "hi"], ["2", "13900000002", "hi"]]
    source = excel_file(tmp_path / "contacts.csv", ";", lines)
    journal = tmp_path / "campaign.db"
    done = aicc.run("notify", source, "--journal", journal, env=fake.env)
    assert done.returncode == 1, done
    rows = {r["key"]: r for r in journal_rows(journal)}
    assert rows["1"]["state"] == "failed"
    assert rows["2"]["state"] == "done"
    description = rows["1"]["description"]
    assert "called: 1.38E+10 is in scientific notation" in description
    assert "digits are lost" in description
    assert "Format Cells > Text" in description
    assert "1.38E+10" in flat(done.stdout), done  # the report shows it
    assert fake.calls() == {"13900000002": 1}


def test_an_empty_required_cell_is_named_by_its_column(tmp_path, fake, aicc, journal_rows):
    header = ["id", "sub_cc_no", "vdn_id", "unique_id", "service_id"]
    source = excel_file(tmp_path / "results.csv", ";", [header, ["1", "1", "88", "", "svc"]])
    journal = tmp_path / "wb.db"
    done = aicc.run("write-back", source, "--journal", journal, env=fake.env)
    assert done.returncode == 1, done
    (row,) = journal_rows(journal)
    assert row["state"] == "failed"
    assert row["description"] == "unique_id: the cell is empty; every row needs one"
    assert "None" not in done.output


# --- the Python API -----------------------------------------------------------------


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_campaign_file_guesses_the_separator(tmp_path, separator):
    source = excel_file(tmp_path / "c.csv", separator, contacts(3))
    with CampaignFile(source, "voice_notification") as rows:
        assert rows.delimiter == separator
        assert rows.ignored == ()
        read = list(rows.rows())
    assert [r.key for r in read] == ["0", "1", "2"]
    assert all(r.invalid is None for r in read)
    assert read[1].request.voice_content == "$Hello 1, your parcel; it arrives today$"


def test_campaign_file_messages_for_excel_numbers_and_empty_cells(tmp_path):
    lines = [
        ["id", "called", "text"],
        ["1", "8.61381E+12", "hi"],
        ["2", "", "hi"],
        ["3", "1,38E+10", "hi"],  # a decimal comma, as European Excel writes it
    ]
    source = excel_file(tmp_path / "c.csv", ";", lines)
    with CampaignFile(source, "voice_notification") as rows:
        invalid = {r.key: r.invalid for r in rows.rows()}
    assert invalid["1"].startswith("called: 8.61381E+12 is in scientific notation")
    assert invalid["2"] == "called: the cell is empty; every row needs one"
    assert invalid["3"].startswith("called: 1,38E+10 is in scientific notation")


def test_campaign_file_takes_a_delimiter_and_refuses_a_bad_one(tmp_path):
    source = excel_file(tmp_path / "c.csv", "\t", contacts(1))
    with CampaignFile(source, "voice_notification", delimiter="\t") as rows:
        assert [r.key for r in rows.rows()] == ["0"]
    with pytest.raises(AICCValidationError, match="delimiter"):
        CampaignFile(source, "voice_notification", delimiter='"')


def _peak_while_reading(source: Path) -> tuple[int, int]:
    """(rows read, peak bytes allocated) reading ``source`` with ``CampaignFile``."""
    tracemalloc.start()
    try:
        with CampaignFile(source, "voice_notification") as rows:
            count = sum(1 for _ in rows.rows())
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_semicolon_file_keeps_memory_flat(tmp_path):
    peaks = {}
    for n in (30_000, 120_000):
        source = excel_file(
            tmp_path / f"{n}.csv",
            ";",
            [["id", "called", "text"]]
            + [[str(i), f"139{i:08d}", f"Hello {i}, parcel; today"] for i in range(n)],
        )
        count, peaks[n] = _peak_while_reading(source)
        assert count == n
    # Four times the rows, not more memory (the fixed part is the encoding check's buffer).
    assert peaks[120_000] < peaks[30_000] + 500_000, peaks


def test_excel_unicode_text_is_read(tmp_path):
    """Excel's "Unicode Text" export: UTF-16 (little-endian, with its BOM), tabs, CRLF."""
    lines = contacts(3)
    text = "\r\n".join("\t".join(cells) for cells in lines) + "\r\n"
    source = tmp_path / "c.txt"
    source.write_bytes(text.encode("utf-16"))  # BOM + little-endian here
    with CampaignFile(source, "voice_notification") as rows:
        assert rows.delimiter == "\t"
        read = list(rows.rows())
    assert [r.key for r in read] == ["0", "1", "2"]
    assert read[2].request.called == "13900000002"


def test_a_broken_utf16_file_is_refused_before_any_row(tmp_path):
    source = tmp_path / "c.txt"
    good = "id\tcalled\ttext\r\n1\t13900000001\thi\r\n".encode("utf-16-le")
    source.write_bytes(b"\xff\xfe" + good + b"\x00\xd8" + "x".encode("utf-16-le"))  # lone surrogate
    with pytest.raises(CampaignError, match="not UTF-16 text"):
        CampaignFile(source, "voice_notification")
