"""Where an ``aicc`` command's journal is: a SQLite file, or a campaign in a PostgreSQL
database (``--journal postgresql://... --campaign NAME``), parsed once into a
:class:`~aicc_async.bulk.journal.JournalLocation`."""

from __future__ import annotations

import os
import shlex
from typing import Any

import attrs

from aicc_async.bulk import Campaign, CampaignKind
from aicc_async.bulk.journal import (
    DEFAULT_LEASE,
    JournalLocation,
    is_dsn,
    mask_dsn,
    postgres_driver,
)
from aicc_async.cli.terminal import Terminal
from aicc_async.errors import AICCValidationError, CampaignError

__all__ = ["JournalAt", "journal_at"]


@attrs.frozen
class JournalAt:
    """A command's journal (:attr:`at`); ``temporary`` when the command removes it as
    it ends (the demo's: no hint names it). The DSN is never shown: :attr:`shown`
    masks its password."""

    at: JournalLocation
    temporary: bool = False

    @property
    def postgres(self) -> bool:
        """True for a campaign in PostgreSQL."""
        return self.at.postgres

    @property
    def shown(self) -> str:
        """The journal as messages name it (a DSN's password masked)."""
        return self.at.shown

    @property
    def argument(self) -> str:
        """The journal as a command line in a hint gives it (a DSN's password masked:
        the user puts it back, or sets PGPASSWORD)."""
        if self.at.dsn is None:
            return str(self.at.path)
        assert self.at.campaign is not None
        return f"{shlex.quote(mask_dsn(self.at.dsn))} --campaign {shlex.quote(self.at.campaign)}"

    def open(self, kind: CampaignKind | None = None, **flags: Any) -> Campaign:
        """A :class:`Campaign` on this journal (``flags``: ``read_only``, ``outcomes_only``)."""
        return Campaign(self.at, kind, **flags)


def journal_at(
    terminal: Terminal,
    journal: str | os.PathLike[str],
    campaign: str | None,
    lease: float | None = None,
) -> JournalAt:
    """The journal that ``--journal`` (or ``report``'s argument), ``--campaign`` and
    ``--lease`` name; a ``Stop`` (exit 2, with the message) when they do not fit
    together or the PostgreSQL driver is missing."""
    location = os.fspath(journal)
    if lease is not None and not is_dsn(location):
        raise terminal.fail(
            "--lease is for the workers of a PostgreSQL journal (--journal "
            f"postgresql://... --campaign NAME); {location} is a SQLite journal file"
        )
    try:
        at = JournalLocation.parse(location, campaign, DEFAULT_LEASE if lease is None else lease)
        if at.postgres:
            postgres_driver()
    except AICCValidationError as exc:
        raise terminal.fail(f"--{exc.message}") from None
    except CampaignError as exc:
        raise terminal.fail(str(exc)) from None
    return JournalAt(at)
