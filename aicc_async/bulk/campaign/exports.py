"""Campaign CSV exports: failed, unknown and duplicate rows for follow-up, unanswered
rows as the input of a new campaign. Every file is written beside its target and
renamed over it when complete, never over the campaign's own files or an SQLite file,
and its cells are neutralised against formula injection (:func:`.csv_input.neutralise`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aicc_async.bulk.campaign.csv_input import FORMATS, ID, neutralise
from aicc_async.bulk.campaign.run import Campaign
from aicc_async.bulk.journal.sqlite import sqlite_file
from aicc_async.errors import CampaignError

__all__ = ["check_target", "export_problems", "export_unanswered_rows", "write_csv"]


def check_target(path: Path, protected: Sequence[Path], what: str = "the export") -> Path:
    """``path`` resolved, for writing ``what`` to it; ``CampaignError`` if it is one of
    the ``protected`` files or an SQLite file (another campaign's journal, say)."""
    target = path.resolve()
    for kept in protected:
        same = kept.resolve() == target
        if not same and kept.exists() and target.exists():
            same = os.path.samefile(kept, target)
        if same:
            raise CampaignError(
                f"will not write {what} over {path}: it is {kept}, part of the campaign "
                "(its journal or its input). Choose another file."
            )
    found = sqlite_file(target)
    if found is not None:
        raise CampaignError(
            f"will not write {what} over {path}: it is an SQLite {found} (another "
            f"campaign's journal, or another application's data), which {what} would "
            "replace. Choose another file; nothing was written."
        )
    return target


async def write_csv(
    path: str | os.PathLike[str],
    header: Sequence[str],
    rows: AsyncIterator[Sequence[object]],
    *,
    protected: Sequence[Path] = (),
) -> int:
    """Write ``header`` and ``rows`` as a CSV at ``path``; returns how many rows.

    Cells are neutralised against formula injection (``None`` is empty). The file is
    written beside ``path`` under a temporary name and renamed over it when complete.
    Raises ``CampaignError`` if ``path`` is one of ``protected`` or cannot be written.
    """
    given = Path(os.fspath(path))
    target = check_target(given, protected)
    count = 0
    try:
        handle, temporary = await asyncio.to_thread(
            tempfile.mkstemp, prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise CampaignError(f"cannot write {given}: {exc.strerror or exc}") from None
    try:
        out = await asyncio.to_thread(os.fdopen, handle, "w", encoding="utf-8", newline="")
        with out:
            writer = csv.writer(out)
            writer.writerow(header)
            async for row in rows:
                writer.writerow(["" if c is None else neutralise(str(c)) for c in row])
                count += 1
        await asyncio.to_thread(os.replace, temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CampaignError(f"cannot write {given}: {exc.strerror or exc}") from None
        raise
    return count


async def _campaign_files(campaign: Campaign) -> tuple[Path, ...]:
    """What an export must never write over: the journal, its files and its input."""
    source = await campaign.source()
    return (*campaign.files, *(() if source is None else (source,)))


async def export_problems(campaign: Campaign, path: str | os.PathLike[str]) -> int:
    """Write the campaign's failed, unknown and duplicate rows to the CSV at ``path``;
    returns how many.

    Columns: ``id``, ``state``, ``code``, ``description``, ``reference``, then the
    input columns, so the file can be corrected and fed to a new campaign. Raises
    ``CampaignError`` if ``path`` is the journal, a file beside it or the campaign's
    input, or cannot be written; an existing file is replaced only once the export
    is complete.
    """
    columns: Sequence[str] = FORMATS[campaign.kind].columns[1:]

    async def rows() -> AsyncIterator[Sequence[object]]:
        async for row in campaign.problem_rows():
            fields = row["fields"]
            yield [row["key"], row["state"], row["code"], row["description"], row["reference"]] + [
                fields.get(c) for c in columns
            ]

    return await write_csv(
        path,
        [ID, "state", "code", "description", "reference", *columns],
        rows(),
        protected=await _campaign_files(campaign),
    )


async def export_unanswered_rows(campaign: Campaign, path: str | os.PathLike[str]) -> int:
    """Write the rows whose call was not answered (their release event said so) to the
    CSV at ``path``, in the campaign's input format, so it is the input of a follow-up
    campaign; returns how many. Raises ``CampaignError`` as :func:`export_problems`."""
    columns: Sequence[str] = FORMATS[campaign.kind].columns

    async def rows() -> AsyncIterator[Sequence[object]]:
        async for row in campaign.unanswered_rows():
            fields = row["fields"]
            yield [row["key"], *(fields.get(c) for c in columns[1:])]

    return await write_csv(
        path,
        columns,
        rows(),
        protected=await _campaign_files(campaign),
    )
