"""Do-not-call lists: reading (plain and CSV), refusals naming file and line, and the
re-read while a campaign runs (changes honoured, failures block, recovery)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from aicc_async.bulk.dialer.do_not_call import (
    MAX_LINE_BYTES,
    DoNotCall,
    DoNotCallBlocked,
    read_list,
)
from aicc_async.errors import AICCValidationError, CampaignError

SECOND = 1_000_000_000
LONG_AGO = 1_700_000_000 * SECOND  # file times set by the tests
LATER = LONG_AGO + 3600 * SECOND  # the fake clock: an hour after the files changed


def write(path: Path, text: str | bytes, *, mtime_ns: int = LONG_AGO) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def clock(now: list[int]) -> object:
    return lambda: now[0]


def refused(path: Path) -> str:
    with pytest.raises(AICCValidationError) as caught:
        DoNotCall.load([path], clock_ns=lambda: LATER)
    assert caught.value.field == "do_not_call"
    return str(caught.value)


class CountingOpener:
    """Opens files for real, counting opens and the bytes handed out."""

    def __init__(self) -> None:
        self.opens = 0
        self.fail: OSError | None = None

    def __call__(self, path: Path) -> BinaryIO:
        if self.fail is not None:
            raise self.fail
        self.opens += 1
        return path.open("rb")


# --------------------------------------------------------------------- reading


def test_one_number_per_line_with_comments_blanks_bom_and_crlf(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dnc.txt",
        b"\xef\xbb\xbf# opted out\r\n+86 138-1234-5678\r\n\r\n   \r\n  # more\r\n"
        b"(010) 8888.0001\r\n88880002",
    )
    lists = DoNotCall.load([path], clock_ns=lambda: LATER)
    assert lists.contains("008613812345678")
    assert lists.contains("+8613812345678")
    assert lists.contains("010 88880001")
    assert lists.contains("88880002")
    assert not lists.contains("88880003")
    assert len(lists) == 3
    assert lists.blocked is None


def test_a_csv_with_a_called_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dnc.csv",
        '\ufeffid,Called,name\n# a comment row\n1,+86 138 1234 5678,"Li, Wei"\n\n2,88880001,x\n',
    )
    lists = DoNotCall.load([path], clock_ns=lambda: LATER)
    assert lists.contains("008613812345678")
    assert lists.contains("88880001")
    assert len(lists) == 2


def test_several_files_are_one_list(tmp_path: Path) -> None:
    first = write(tmp_path / "a.txt", "88880001\n")
    second = write(tmp_path / "b.csv", "called\n88880002\n")
    lists = DoNotCall.load([first, str(second)], clock_ns=lambda: LATER)
    assert lists.contains("88880001")
    assert lists.contains("88880002")
    assert lists.paths == (str(first), str(second))


def test_an_empty_file_is_an_empty_list(tmp_path: Path) -> None:
    lists = DoNotCall.load([write(tmp_path / "none.txt", "# nobody yet\n")])
    assert not lists.contains("88880001")


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("88880001\nabc\n", 2, "'abc' is not a phone number"),
        ("88880001\n8888O001\n", 2, "'8888O001' is not a phone number"),  # letter O
        ("\u0661\u0662\u0663\n", 1, "'\u0661\u0662\u0663' is not a phone number"),
        ("88880001\n+86+138\n", 2, "'+86+138' is not a phone number"),
        ("1" * 33 + "\n", 1, "is not a phone number"),
        ("# ok\n\n88880001 # Li\n", 3, "'88880001 # Li' is not a phone number"),
        ("88880001\n8888\x1b[2J0002\n", 2, r"'8888\x1b[2J0002' is not a phone number"),
        ("88880001,88880002\n", 1, "several cells but no 'called' column"),
        ("id,called\n1,88880001\n2,\n", 3, "an empty value is not a phone number"),
        ("id,called\n1,88880001\n2\n", 3, "has no 'called' cell"),
        ('called\n"88880001\n', 2, "is not valid CSV"),
    ],
)
def test_a_bad_line_is_refused_naming_file_and_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = write(tmp_path / "dnc.txt", text)
    message = refused(path)
    assert f"do-not-call list {str(path)!r} line {line} " in message
    assert says in message
    assert "\x1b" not in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    message = refused(write(tmp_path / "dnc.txt", b"88880001\n\xff\xfe8888\n"))
    assert "line 2 is not UTF-8 text" in message


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    message = refused(tmp_path / "nowhere.txt")
    assert "nowhere.txt" in message
    assert "does not exist" in message


def test_a_one_megabyte_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = write(tmp_path / "dnc.txt", "88880001\n" + "8" * 1_000_000 + "\n88880002\n")
    handed_out: list[int] = []

    class Watched(io.BufferedReader):
        def readline(self, size: int | None = -1) -> bytes:
            line = super().readline(size)
            handed_out.append(len(line))
            return line

    def opener(p: Path) -> BinaryIO:
        return Watched(io.FileIO(p, "rb"))

    with pytest.raises(AICCValidationError, match="line 2 is longer than 64 KiB"):
        read_list(path, opener)
    assert max(handed_out) <= MAX_LINE_BYTES + 2


def test_a_line_at_the_cap_is_read(tmp_path: Path) -> None:
    number = "8" * 32
    padded = " " * (MAX_LINE_BYTES - len(number) - 1) + number + "\n"
    assert len(padded) == MAX_LINE_BYTES
    assert read_list(write(tmp_path / "dnc.txt", padded)) == {number}


def test_a_hundred_thousand_numbers_are_read(tmp_path: Path) -> None:
    text = "".join(f"+86 138{i:08d}\n" for i in range(100_000))
    lists = DoNotCall.load([write(tmp_path / "big.txt", text)])
    assert len(lists) == 100_000
    assert lists.contains("0086 138 0009 9999")


# --------------------------------------------------------------------- while running


def test_a_number_added_is_honoured_at_the_next_refresh(tmp_path: Path) -> None:
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], clock_ns=lambda: LATER)
    assert not lists.contains("88880002")
    write(path, "88880001\n88880002\n", mtime_ns=LONG_AGO + SECOND)
    assert lists.refresh() is True
    assert lists.contains("88880002")


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    opener = CountingOpener()
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], opener=opener, clock_ns=lambda: LATER)
    assert [lists.refresh() for _ in range(5)] == [False] * 5
    assert opener.opens == 1


def test_a_file_replaced_by_rename_is_read_even_with_the_same_size_and_time(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], clock_ns=lambda: LATER)
    new = write(tmp_path / "dnc.new", "88880002\n")  # same size, same time, new inode
    os.replace(new, path)
    assert lists.refresh() is True
    assert lists.contains("88880002")
    assert not lists.contains("88880001")


def test_a_change_within_the_same_timestamp_is_caught_while_the_file_is_fresh(
    tmp_path: Path,
) -> None:
    now = [LONG_AGO + SECOND // 2]  # the file was written half a second ago
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], clock_ns=lambda: now[0])
    with path.open("r+b") as handle:  # same inode, size; time put back as it was
        handle.write(b"88880002\n")
    os.utime(path, ns=(LONG_AGO, LONG_AGO))
    now[0] += SECOND
    assert lists.refresh() is True
    assert lists.contains("88880002")
    now[0] += 10 * SECOND  # read when the file was old: no more re-reads
    assert lists.refresh() is True
    assert lists.refresh() is False


def test_a_bad_line_added_mid_run_blocks_new_calls_until_fixed(tmp_path: Path) -> None:
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], clock_ns=lambda: LATER)
    write(path, "88880001\n8888000l\n", mtime_ns=LONG_AGO + SECOND)  # a typo: l for 1
    lists.refresh()
    blocked = lists.blocked
    assert blocked is not None
    assert (blocked.path, blocked.line) == (str(path), 2)
    assert "'8888000l' is not a phone number" in blocked.message
    assert "no new calls start until it is fixed" in blocked.message
    with pytest.raises(DoNotCallBlocked) as caught:
        lists.contains("88880001")  # not the old list's answer
    assert isinstance(caught.value, CampaignError)
    with pytest.raises(DoNotCallBlocked):
        lists.contains("99990000")  # nor an empty list's
    lists.refresh()
    assert lists.blocked is not None  # still bad: still blocked
    write(path, "88880001\n88880002\n", mtime_ns=LONG_AGO + 2 * SECOND)
    assert lists.refresh() is True
    assert lists.blocked is None
    assert lists.contains("88880002")


def test_a_list_deleted_mid_run_blocks_until_it_is_back(tmp_path: Path) -> None:
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], clock_ns=lambda: LATER)
    path.unlink()
    lists.refresh()
    assert lists.blocked is not None
    assert "does not exist" in lists.blocked.message
    assert lists.blocked.line is None
    with pytest.raises(DoNotCallBlocked):
        lists.contains("88880002")
    write(path, "88880001\n")
    lists.refresh()
    assert lists.blocked is None
    assert lists.contains("88880001")


def test_an_unreadable_list_blocks_and_recovers_without_a_change_of_stat(
    tmp_path: Path,
) -> None:
    opener = CountingOpener()
    path = write(tmp_path / "dnc.txt", "88880001\n")
    lists = DoNotCall.load([path], opener=opener, clock_ns=lambda: LATER)
    write(path, "88880002\n", mtime_ns=LONG_AGO + SECOND)
    opener.fail = PermissionError(13, "Permission denied")
    lists.refresh()
    assert lists.blocked is not None
    assert "cannot be read (Permission denied)" in lists.blocked.message
    opener.fail = None  # permissions fixed: mtime, size and inode unchanged
    lists.refresh()
    assert lists.blocked is None
    assert lists.contains("88880002")


def test_one_bad_file_blocks_the_whole_list(tmp_path: Path) -> None:
    good = write(tmp_path / "a.txt", "88880001\n")
    bad = write(tmp_path / "b.txt", "88880002\n")
    lists = DoNotCall.load([good, bad], clock_ns=lambda: LATER)
    write(bad, "oops\n", mtime_ns=LONG_AGO + SECOND)
    lists.refresh()
    assert lists.blocked is not None
    assert lists.blocked.path == str(bad)
    with pytest.raises(DoNotCallBlocked):
        lists.contains("88880001")


def test_load_refuses_what_a_refresh_would_block(tmp_path: Path) -> None:
    message = refused(write(tmp_path / "dnc.txt", "x\n"))
    assert "correct it and start again" in message
    assert "no new calls start" not in message


def test_built_directly_a_bad_list_starts_blocked_never_empty(tmp_path: Path) -> None:
    lists = DoNotCall([write(tmp_path / "dnc.txt", "88880001\nx\n")])
    assert lists.blocked is not None
    assert lists.blocked.line == 2
    with pytest.raises(DoNotCallBlocked):
        lists.contains("99990000")


def test_a_number_leaves_the_list_only_once_the_file_has_settled(tmp_path: Path) -> None:
    now = [LATER]
    path = write(tmp_path / "dnc.txt", "88880001\n88880002\n")
    lists = DoNotCall.load([path], clock_ns=lambda: now[0])
    write(path, "88880002\n", mtime_ns=LATER)  # 88880001 removed (or half written)
    now[0] += SECOND
    lists.refresh()
    assert lists.contains("88880001")  # the file may still be being written
    now[0] += 3 * SECOND
    lists.refresh()
    assert not lists.contains("88880001")
    assert lists.contains("88880002")


def test_a_half_written_file_never_drops_a_number(tmp_path: Path) -> None:
    now = [LATER]
    full = "".join(f"8888{i:04d}\n" for i in range(100))
    path = write(tmp_path / "dnc.txt", full)
    lists = DoNotCall.load([path], clock_ns=lambda: now[0])
    write(path, full[:333], mtime_ns=LATER + SECOND)  # the editor is mid-write
    now[0] += 2 * SECOND
    lists.refresh()
    assert all(lists.contains(f"8888{i:04d}") for i in range(100))
    write(path, full + "99990000\n", mtime_ns=LATER + 2 * SECOND)  # done, one added
    now[0] += SECOND
    lists.refresh()
    assert lists.contains("99990000")
    assert all(lists.contains(f"8888{i:04d}") for i in range(100))


def test_a_path_with_a_nul_byte_is_refused_not_crashed_on(tmp_path: Path) -> None:
    with pytest.raises(AICCValidationError, match="cannot be read"):
        DoNotCall.load([str(tmp_path / "a\x00b.txt")])


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AICCValidationError, match="cannot be read"):
        DoNotCall.load([tmp_path])


@pytest.mark.parametrize("end", ["\n", "\r\n", ""])
def test_a_line_one_byte_over_the_cap_is_refused(tmp_path: Path, end: str) -> None:
    line = " " * (MAX_LINE_BYTES - 8) + "888800012" + end
    with pytest.raises(AICCValidationError, match="line 1 is longer than 64 KiB"):
        read_list(write(tmp_path / "dnc.txt", line))
