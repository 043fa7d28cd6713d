"""Campaign CSV input: reading input rows (:mod:`.exports` writes them back out).

Voice notification input (``aicc notify``): ``called`` and either ``voice_content``
or ``text`` (read aloud: sent as ``$text$``), optional ``caller_present``,
``callback_url``, ``priority`` and ``id``. Write-back input (``aicc write-back``):
the ``WriteBackResultRequest`` field names (``sub_cc_no``, ``vdn_id``,
``unique_id``, ``service_id`` required) and optional ``id``. A row's key is its
``id``, or else the line it starts on. Cells are stripped; an empty cell is absent.

Columns are separated by commas, semicolons (Excel in much of Europe) or tabs: the
separator is read off the header line unless the caller names it. A number Excel
wrote in scientific notation (``1.38E+10``: its last digits are lost) is refused
with a message saying how to export the column as text.

Every CSV written here is safe to open in a spreadsheet: a cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a leading
``'`` (OWASP's advice against CSV injection), and the reader removes that ``'``
again, so an export can be fed back as input unchanged.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import attrs

from aicc_async.bulk.campaign.kinds import KINDS
from aicc_async.bulk.campaign.rows import CampaignRow
from aicc_async.bulk.dialer.hours import resolve_zone
from aicc_async.bulk.journal.rules import KeyChanged
from aicc_async.endpoints.voice_notification import (
    MAX_VOICE_CONTENT,
    CreateVoiceNotificationRequest,
    VoiceContent,
)
from aicc_async.errors import AICCValidationError, CampaignError

__all__ = ["DELIMITERS", "FORMATS", "ID", "CampaignFile", "neutralise", "restore"]

ID = "id"
#: The optional column naming a row's time zone (its calling hours are in it).
TIMEZONE = "timezone"
#: The column separators a CSV may use, with their names in messages.
DELIMITERS: Mapping[str, str] = {",": "commas", ";": "semicolons", "\t": "tabs"}
#: A number as Excel shows one too long for its column (decimal point or comma).
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """``cell`` as written to a CSV: with a leading ``'`` if a spreadsheet would read it
    as a formula (or it already starts with ``'`` before such a character)."""
    return "'" + cell if cell.lstrip("'").startswith(_FORMULA_STARTS) else cell


def restore(cell: str) -> str:
    """A cell read from a CSV, without the ``'`` that :func:`neutralise` added."""
    if cell.startswith("'") and cell.lstrip("'").startswith(_FORMULA_STARTS):
        return cell[1:]
    return cell


#: The longest ``text`` cell: it is sent as ``$text$`` within voice content's limit.
MAX_TEXT = MAX_VOICE_CONTENT - 2


def _integer(field: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise AICCValidationError(
            f"{field}: must be a whole number, got {value!r}", field=field
        ) from None


def _voice(cells: Mapping[str, str]) -> CreateVoiceNotificationRequest:
    content, text = cells.get("voice_content"), cells.get("text")
    if content is not None and text is not None:
        raise AICCValidationError("fill in voice_content or text, not both", field="text")
    if text is not None:
        if len(text) > MAX_TEXT:
            raise AICCValidationError(
                f"text: is {len(text)} characters; at most {MAX_TEXT} allowed", field="text"
            )
        content = str(VoiceContent().text(text))
    if content is None:
        raise AICCValidationError("voice_content or text: one must be filled in", field="text")
    return CreateVoiceNotificationRequest(
        called=cells.get("called", ""),
        voice_content=content,
        caller_present=cells.get("caller_present"),
        callback_url=cells.get("callback_url"),
        priority=_integer("priority", cells.get("priority")),
    )


@attrs.frozen
class _Format:
    columns: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]
    """Each entry: at least one of these columns must be present."""
    build: Callable[[Mapping[str, str]], Any]
    numbers: frozenset[str]
    """Columns of digits (numbers, ids, counts): Excel may have mangled them."""


def _fields_format(request_type: type[Any]) -> _Format:
    """The CSV format of a request class: one column per field (whole numbers read as
    such), its required fields required."""
    fields = attrs.fields(request_type)
    hints = typing.get_type_hints(request_type)
    ints = frozenset(
        f.name for f in fields if int in (hints[f.name], *typing.get_args(hints[f.name]))
    )

    def build(cells: Mapping[str, str]) -> Any:
        values: dict[str, Any] = {}
        for f in fields:
            value = cells.get(f.name)
            if f.name in ints:
                values[f.name] = _integer(f.name, value)
            elif value is not None or f.default is attrs.NOTHING:
                values[f.name] = value
        return request_type(**values)

    return _Format(
        columns=(ID, *(f.name for f in fields)),
        required=tuple((f.name,) for f in fields if f.default is attrs.NOTHING),
        build=build,
        numbers=ints | {ID} | (_NUMBERS & {f.name for f in fields}),
    )


#: Columns of request classes that hold digits although they are strings.
_NUMBERS = frozenset({"called", "caller_present", "phone_number", "unique_id", "service_id"})


#: The input format of each kind of campaign: its request's fields, except where a
#: kind reads its CSV its own way (voice: ``text`` is read aloud as ``$text$``).
FORMATS: Mapping[str, _Format] = {
    name: _fields_format(kind.request_type) for name, kind in KINDS.items()
} | {
    "voice_notification": _Format(
        columns=(
            ID,
            "called",
            "voice_content",
            "text",
            "caller_present",
            "callback_url",
            "priority",
            TIMEZONE,
        ),
        required=(("called",), ("voice_content", "text")),
        build=_voice,
        numbers=frozenset({ID, "called", "caller_present", "priority"}),
    ),
}


def _scientific(column: str, value: str) -> str:
    return (
        f"{column}: {value} is in scientific notation: the spreadsheet showed a long "
        "number in short form and saved it so; its last digits are lost. In the "
        f"spreadsheet, give the {column} column the Text format (select it, Format "
        "Cells > Text), enter or paste the full numbers again, then save as CSV UTF-8; "
        "or import the file with that column set to Text."
    )


def _check_delimiter(delimiter: object) -> str | None:
    if delimiter is None or (
        isinstance(delimiter, str) and len(delimiter) == 1 and delimiter not in "\"'\r\n"
    ):
        return delimiter
    raise AICCValidationError(
        f"delimiter: must be one character (such as {', '.join(map(repr, DELIMITERS))}), "
        f"not a quote or a line break; got {delimiter!r}",
        field="delimiter",
    )


def _delimiter_name(delimiter: str) -> str:
    return DELIMITERS.get(delimiter, repr(delimiter) + "s")


def _encoding(path: Path) -> str:
    """``"utf-16"`` for a file that starts with a UTF-16 byte-order mark (Excel's
    "Unicode Text"), else ``"utf-8"``. ``OSError`` if it cannot be read."""
    with path.open("rb") as f:
        start = f.read(2)
    return "utf-16" if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8"


def _first_undecodable_line(path: Path, encoding: str = "utf-8") -> int | None:
    """The number of the first line of ``path`` that is not text in ``encoding``
    (``None``: all is).

    Reads the file once in large chunks (tens of MB a second), so a bad byte deep in
    a large file is found before any row of it is sent. In UTF-16 the line is the
    first of the 1 MiB chunk holding the bad bytes.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return lines + (chunk.count(b"\n", 0, exc.start) if encoding == "utf-8" else 0)
            lines += chunk.count(b"\n") if encoding == "utf-8" else text.count("\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return lines
    return None


class CampaignFile:
    """An input CSV for a ``kind`` of campaign (UTF-8, or UTF-16 with its byte-order
    mark as Excel's "Unicode Text"; a header line first).

    Use as a context manager; iterate :meth:`rows`. ``delimiter``: the column
    separator; by default the one of ``,`` ``;`` and tab that gives the header its
    required columns (see :attr:`delimiter` and :attr:`guessed`). Raises
    ``CampaignError`` when the file cannot be read, is empty, is not UTF-8, is not
    valid CSV or lacks a required column; ``AICCValidationError`` for a bad
    ``delimiter``. A row that cannot become a request is yielded as an invalid
    ``CampaignRow`` (recorded as ``failed``), and reading goes on.
    """

    def __init__(
        self, path: str | os.PathLike[str], kind: str, *, delimiter: str | None = None
    ) -> None:
        self.path = Path(os.fspath(path))
        self._format = FORMATS[kind]
        given = _check_delimiter(delimiter)
        #: Whether :attr:`delimiter` was read off the header (not given).
        self.guessed = given is None
        try:
            self._encoding = _encoding(self.path)
            self._file: IO[str] = self.path.open(
                encoding="utf-16" if self._encoding == "utf-16" else "utf-8-sig", newline=""
            )
        except OSError as exc:
            raise CampaignError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            bad = _first_undecodable_line(self.path, self._encoding)
            if bad is not None:
                raise self._not_utf8(bad)
            #: The column separator used.
            self.delimiter = self._guess() if given is None else given
            self._reader = csv.reader(self._file, delimiter=self.delimiter)
            self.header = self._read_header()
        except BaseException:
            self._file.close()
            raise
        #: Header columns this kind of campaign does not use (they are ignored).
        self.ignored = tuple(c for c in self.header if c not in self._format.columns)

    def _not_utf8(self, line: int | None) -> CampaignError:
        name = "UTF-16" if self._encoding == "utf-16" else "UTF-8"
        return CampaignError(
            f"{self.path} is not {name} text (line {line}): save it as UTF-8 "
            "(in Excel: 'CSV UTF-8'). Nothing was sent."
        )

    def _guess(self) -> str:
        """The separator that gives the header line every required column (the most
        columns if several do; else the most frequent one, a comma if none occurs).
        Reads only the first line, then rewinds."""
        line = self._file.readline(1 << 20)  # a header longer than 1 MiB is read in part
        self._file.seek(0)
        fits: list[tuple[int, str]] = []
        for delimiter in DELIMITERS:
            names = {c.strip() for c in next(csv.reader([line], delimiter=delimiter), [])}
            if all(any(o in names for o in options) for options in self._format.required):
                fits.append((len(names), delimiter))
        if fits:
            return max(fits, key=lambda fit: fit[0])[1]
        return max(DELIMITERS, key=line.count) if line else ","

    def _read_header(self) -> tuple[str, ...]:
        header = next(self._guard(iter(self._reader)), None)
        if header is None or not any(cell.strip() for cell in header):
            raise CampaignError(
                f"{self.path} is empty: the first line must name the columns "
                f"({', '.join(self._format.columns)})"
            )
        names = tuple(cell.strip() for cell in header)
        seen = {n for n in names if names.count(n) > 1}
        if seen:
            raise CampaignError(f"{self.path}: column {sorted(seen)[0]!r} appears twice")
        for options in self._format.required:
            if not any(o in names for o in options):
                want = " or ".join(repr(o) for o in options)
                how = "" if self.guessed else " (--delimiter)"
                raise CampaignError(
                    f"{self.path} has no {want} column (its columns, separated by "
                    f"{_delimiter_name(self.delimiter)}{how}: {', '.join(names)})"
                )
        return names

    def _guard(self, records: Iterator[list[str]]) -> Iterator[list[str]]:
        try:
            yield from records
        except UnicodeDecodeError:  # the file changed since it was checked
            raise self._not_utf8(_first_undecodable_line(self.path, self._encoding)) from None
        except csv.Error as exc:
            raise CampaignError(f"{self.path} line {self._reader.line_num}: {exc}") from None

    def rows(self) -> Iterator[CampaignRow]:
        """The data rows as ``CampaignRow``s, read lazily; blank lines are skipped."""
        width = len(self.header)
        # The cells this kind reads, by position (the others are ignored).
        used = [(i, name) for i, name in enumerate(self.header) if name in self._format.columns]
        line = self._reader.line_num + 1
        for record in self._guard(iter(self._reader)):
            start, line = line, self._reader.line_num + 1
            if not "".join(record).strip():
                continue  # a blank line
            cells = {}
            given = len(record)
            for i, name in used:
                if i < given and (value := record[i].strip()):
                    cells[name] = restore(value) if value[0] == "'" else value
            yield self._row(start, cells, given - width)

    def _row(self, line: int, cells: dict[str, str], extra: int) -> CampaignRow:
        key = cells.pop(ID, None)
        if key is None:
            if ID in self.header:
                return CampaignRow(
                    key=f"line {line}",
                    invalid="id: is empty (this file keys rows by id)",
                    source=cells,
                )
            key = str(line)
        if extra > 0:
            return CampaignRow(
                key=key,
                invalid=f"has {extra} more cell(s) than the header names columns",
                source=cells,
            )
        zone = cells.pop(TIMEZONE, None)
        if zone is not None:
            try:
                resolve_zone(zone)
            except AICCValidationError as exc:  # never guess a row's calling hours
                raise CampaignError(
                    f"{self.path} line {line}: {exc.message}; correct the cell, or leave it "
                    "empty for the run's --timezone"
                ) from None
        problem = self._excel_problem(cells)
        if problem is not None:
            return CampaignRow(key=key, invalid=problem, source=cells)
        try:
            return CampaignRow(key=key, request=self._format.build(cells), timezone=zone)
        except AICCValidationError as exc:
            return CampaignRow(key=key, invalid=exc.message, source=cells)

    @property
    def keys_are_lines(self) -> bool:
        """True when the file has no ``id`` column: each row's key is its line number."""
        return ID not in self.header

    def key_changed(self, exc: KeyChanged) -> str:
        """What to tell the user when the journal refused a row of this file as ``exc``
        (its key names another row than the one already sent)."""
        if not self.keys_are_lines:
            return exc.message
        return (
            f"{self.path} has no id column, so each row's key is its line number, and "
            f"line {exc.key} now holds another row than the one already sent from it "
            f"(state {exc.state}): a line was inserted or removed above it (or the id "
            "column taken out), which moves every row below it. Nothing was sent. To go "
            "on safely, put the lines back where they were (add new rows at the end of "
            "the file), or add an id column giving each row the line number it had when "
            "it was sent (new rows get new ids); rows may then move freely. Starting over "
            "with a new journal would phone every row already sent again."
        )

    def _excel_problem(self, cells: Mapping[str, str]) -> str | None:
        """What a spreadsheet did to this row: a required cell left empty, or a number
        column in scientific notation (``None``: neither)."""
        for options in self._format.required:
            if len(options) == 1 and options[0] not in cells:
                return f"{options[0]}: the cell is empty; every row needs one"
        for column in self._format.numbers:
            value = cells.get(column)
            if value is not None and _SCIENTIFIC.fullmatch(value):
                return _scientific(column, value)
        return None

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> CampaignFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
