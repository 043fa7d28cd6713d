"""Do-not-call lists: numbers that must never be phoned, re-read when their files change.

A list file is either one number per line, or a CSV whose header has a ``called``
column (the first line that is not blank or a comment decides: a line with a
``called`` cell is a CSV header). Lines starting with ``#`` and blank lines are
ignored; a UTF-8 byte-order mark and CRLF line ends are fine. Numbers are stored
and compared through :func:`aicc_async._numbers.normalise_number`, so
``+86 138-1234-5678`` on the list stops a row with ``008613812345678``.

Nothing is ever skipped: a line whose number is not a phone number (after
normalising: 1 to 32 ASCII digits), a line longer than 64 KiB, a file that is not
UTF-8 or a CSV without a ``called`` column is refused, naming the file and line.
A typo must never let an opted-out person be phoned.

:meth:`DoNotCall.load` refuses a bad list with AICCValidationError (before anything
is sent). Mid-run, :meth:`DoNotCall.refresh` re-reads a file whose ``stat`` changed
(inode, size, modification time; and, for a file changed in the last 3 s, once
more, in case a second change kept all three). While a file is that fresh, a
re-read only adds numbers: one that was on the list leaves it once the file has
been still for 3 s (a half-written file never drops a number). A re-read that fails (the file is
gone, unreadable, or has a bad line) puts the lists in the *blocked* state: start
no new calls; :attr:`DoNotCall.blocked` says which file and line and what to do,
and :meth:`DoNotCall.contains` raises :class:`DoNotCallBlocked`. The old list is
never used meanwhile, nor an empty one. The next refresh that reads every file
cleanly ends the block.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Final

import attrs

from aicc_async._numbers import normalise_number
from aicc_async.errors import AICCValidationError, CampaignError

__all__ = ["MAX_LINE_BYTES", "Blocked", "DoNotCall", "DoNotCallBlocked", "read_list"]

MAX_LINE_BYTES: Final = 64 * 1024
"""Longest line of a list file (a CSV row included), in bytes."""

_FIELD: Final = "do_not_call"
_NUMBER: Final = re.compile(r"[0-9]{1,32}", re.ASCII)
_RACY_NS: Final = 3_000_000_000  # a file changed this recently may change unseen again
_BOM: Final = codecs.BOM_UTF8


class DoNotCallBlocked(CampaignError):
    """A do-not-call list could not be re-read: no new call may start until it is
    fixed. ``blocked`` says which file and line."""

    def __init__(self, blocked: Blocked) -> None:
        super().__init__(blocked.message)
        self.blocked = blocked


@attrs.frozen
class Blocked:
    """Why the lists are blocked: ``path`` (as given), ``line`` (1-based; None when
    the whole file is the problem), and ``message`` for the operator."""

    path: str
    line: int | None
    message: str


class _BadList(Exception):
    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _lines(handle: BinaryIO) -> Iterator[str]:
    """The file's lines, decoded, line ends dropped; refuses an over-long line
    without reading more of it than the cap."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 2)
        if not raw:
            return
        number += 1
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if len(raw) > MAX_LINE_BYTES and len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
            raise _BadList(number, f"is longer than {MAX_LINE_BYTES // 1024} KiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadList(number, "is not UTF-8 text") from None
        yield text.rstrip("\r\n")


def _number(cell: str, line: int) -> str:
    text = cell.strip()
    number = normalise_number(text)
    if not _NUMBER.fullmatch(number):
        shown = _shown(text) if text else "an empty value"
        raise _BadList(line, f"{shown} is not a phone number (expected digits, + and separators)")
    return number


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _parse(lines: Iterable[str]) -> set[str]:
    numbers: set[str] = set()
    iterator = iter(enumerate(lines, start=1))
    for index, line in iterator:
        if not _content(line):
            continue
        header = next(csv.reader([line]))
        columns = [cell.strip().lower() for cell in header]
        if "called" in columns:
            _parse_csv(iterator, columns.index("called"), numbers)
            return numbers
        if len(columns) > 1:
            raise _BadList(index, f"{_shown(line)} has several cells but no 'called' column header")
        numbers.add(_number(line, index))
        break
    for index, line in iterator:
        if _content(line):
            numbers.add(_number(line, index))
    return numbers


def _parse_csv(rows: Iterator[tuple[int, str]], column: int, numbers: set[str]) -> None:
    current = 0

    def texts() -> Iterator[str]:
        nonlocal current
        for index, line in rows:
            current = index
            yield line

    reader = csv.reader((line for line in texts() if _content(line)), strict=True)
    try:
        for row in reader:
            if column >= len(row):
                raise _BadList(current, f"has no 'called' cell (column {column + 1})")
            numbers.add(_number(row[column], current))
    except csv.Error as exc:
        raise _BadList(current, f"is not valid CSV ({exc})") from None


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


def read_list(path: Path, opener: Callable[[Path], BinaryIO] = _open) -> set[str]:
    """The normalised numbers of one list file.

    Raises AICCValidationError (field ``do_not_call``) naming the file, and the line
    when one is bad.
    """
    try:
        return _read(path, opener)
    except _BadList as bad:
        raise AICCValidationError(_message(str(path), bad), field=_FIELD) from None


def _read(path: Path, opener: Callable[[Path], BinaryIO]) -> set[str]:
    try:
        with opener(path) as handle:
            return _parse(_lines(handle))
    except (OSError, ValueError) as exc:
        raise _BadList(None, _gone(exc)) from None


def _message(path: str, bad: _BadList) -> str:
    where = f"{path!r} line {bad.line}" if bad.line is not None else f"{path!r}"
    return f"do-not-call list {where} {bad.problem}"


@attrs.define
class _File:
    path: Path
    given: str
    numbers: frozenset[str] = frozenset()
    signature: tuple[int, int, int] | None = None
    racy: bool = True


def _signature(status: os.stat_result) -> tuple[int, int, int]:
    return (status.st_ino, status.st_size, status.st_mtime_ns)


class DoNotCall:
    """One or more do-not-call lists (see the module doc), read at once. Built
    directly, a list that cannot be read starts :attr:`blocked`; :meth:`load`
    refuses it instead.

    ``contains`` is a set look-up per file. Call :meth:`refresh` at least once a
    second while rows start: a number added to a file is then honoured within 2 s.
    ``stat``, ``opener`` and ``clock_ns`` (wall time in ns, compared with the
    files' modification times) are for tests.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        stat: Callable[[Path], os.stat_result] = os.stat,
        opener: Callable[[Path], BinaryIO] = _open,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._files = [_File(Path(p), os.fspath(p)) for p in paths]
        self._stat = stat
        self._opener = opener
        self._clock_ns = clock_ns
        self._blocked: Blocked | None = None
        self._failure: str | None = None
        self.refresh()  # a list that cannot be read starts blocked, never empty

    @classmethod
    def load(
        cls,
        paths: Sequence[str | os.PathLike[str]],
        *,
        stat: Callable[[Path], os.stat_result] = os.stat,
        opener: Callable[[Path], BinaryIO] = _open,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> DoNotCall:
        """Read every list now. Raises AICCValidationError (field ``do_not_call``)
        naming the file (and line) of the first problem."""
        lists = cls(paths, stat=stat, opener=opener, clock_ns=clock_ns)
        if lists._failure is not None:
            raise AICCValidationError(f"{lists._failure}; correct it and start again", field=_FIELD)
        return lists

    @property
    def paths(self) -> tuple[str, ...]:
        """The files, as given."""
        return tuple(f.given for f in self._files)

    @property
    def blocked(self) -> Blocked | None:
        """Why no new call may start now, or None when the lists are in force."""
        return self._blocked

    def __len__(self) -> int:
        """Numbers on the lists (one counted once per file it is in)."""
        return sum(len(f.numbers) for f in self._files)

    def contains(self, number: str) -> bool:
        """Whether ``number`` (compared normalised) is on a list.

        Raises DoNotCallBlocked while the lists are blocked: the answer is not known.
        """
        if self._blocked is not None:
            raise DoNotCallBlocked(self._blocked)
        return self.held(number)

    def lists(self) -> list[tuple[str, frozenset[str]]]:
        """Each file as given and the (normalised) numbers last read in full from it."""
        return [(f.given, f.numbers) for f in self._files]

    def held(self, number: str) -> bool:
        """Whether ``number`` (compared normalised) is on the lists as last read in full,
        blocked or not: for a check already under way when a list turned unreadable
        (start nothing new while :attr:`blocked`)."""
        key = normalise_number(number)
        return any(key in f.numbers for f in self._files)

    def refresh(self) -> bool:
        """Re-read each file whose ``stat`` changed (or that may have changed unseen,
        or that failed last time). Returns True when a list was re-read. Never
        raises for a file's problem: it sets :attr:`blocked` instead (and clears it
        once every file reads cleanly)."""
        reread = False
        problem: Blocked | None = None
        self._failure = None
        for entry in self._files:
            try:
                status = self._stat(entry.path)
            except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
                problem = problem or self._block(entry, _BadList(None, _gone(exc)))
                entry.signature = None
                continue
            signature = _signature(status)
            if signature == entry.signature and not entry.racy:  # None after a failure
                continue
            started = self._clock_ns()
            try:
                numbers = _read(entry.path, self._opener)
            except _BadList as bad:
                problem = problem or self._block(entry, bad)
                entry.signature = None
                continue
            entry.racy = signature[2] >= started - _RACY_NS
            # A file changed in the last seconds may still be being written: what it
            # held before stays on the list until a read of the settled file.
            entry.numbers = entry.numbers | numbers if entry.racy else frozenset(numbers)
            entry.signature = signature
            reread = True
        self._blocked = problem
        return reread

    def _block(self, entry: _File, bad: _BadList) -> Blocked:
        self._failure = _message(entry.given, bad)
        return Blocked(
            path=entry.given,
            line=bad.line,
            message=(
                f"{_message(entry.given, bad)}: no new calls start until it is fixed "
                "(correct the line or restore the file; calls already started are "
                "not affected, and the campaign goes on by itself once it reads cleanly)"
            ),
        )


def _gone(exc: OSError | ValueError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "does not exist (was it deleted, moved or misspelt?)"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return f"cannot be read ({reason})"
