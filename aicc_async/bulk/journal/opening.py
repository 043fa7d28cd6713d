"""Opening a journal: the backend its :class:`~.location.JournalLocation` names."""

from __future__ import annotations

import os
from types import ModuleType

from aicc_async.bulk.journal.location import DEFAULT_LEASE, JournalLocation
from aicc_async.bulk.journal.rules import Journal, Mode
from aicc_async.errors import CampaignError

__all__ = ["POSTGRES_EXTRA", "open_journal", "postgres_driver"]

#: What installs the PostgreSQL driver.
POSTGRES_EXTRA = "pip install 'aicc-async[postgres]'"


def postgres_driver(what: str = "journal") -> ModuleType:
    """The PostgreSQL backend module; ``CampaignError`` naming what installs the driver
    when it is missing (``what``: the store that needs it)."""
    try:
        from aicc_async.bulk.journal import postgres
    except ImportError as exc:
        raise CampaignError(
            f"a PostgreSQL {what} needs the PostgreSQL driver ({exc.name or exc} is "
            f"missing): {POSTGRES_EXTRA}"
        ) from None
    return postgres


async def open_journal(
    location: JournalLocation | str | os.PathLike[str],
    kind: str | None,
    *,
    mode: Mode = "run",
    campaign: str | None = None,
    lease: float = DEFAULT_LEASE,
) -> Journal:
    """Open the journal at ``location``: campaign ``location.campaign`` in the PostgreSQL
    database at ``location.dsn`` (worker lease ``location.lease``), or the SQLite file
    ``location.path``. A DSN or a file path is parsed with ``campaign`` and ``lease``
    first (:meth:`JournalLocation.parse`). ``kind`` and ``mode`` as the backends'
    ``open`` say.

    Raises ``AICCValidationError`` as :meth:`JournalLocation.parse`, ``CampaignError``
    / ``JournalError`` as the backend says (``CampaignError`` when the PostgreSQL
    driver is missing).
    """
    if not isinstance(location, JournalLocation):
        location = JournalLocation.parse(location, campaign, lease)
    if location.dsn is not None:
        assert location.campaign is not None
        backend = postgres_driver()
        journal: Journal = await backend.PostgresJournal.open(
            location.dsn, location.campaign, kind, mode=mode, lease=location.lease
        )
        return journal
    from aicc_async.bulk.journal.sqlite import SQLiteJournal

    assert location.path is not None
    return await SQLiteJournal.open(location.path, kind, mode=mode)
