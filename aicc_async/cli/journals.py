"""Where an ``aicc`` command's journal is: a SQLite file, or a campaign in a PostgreSQL
database (``--journal postgresql://... --campaign NAME``)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import attrs

from aicc_async.bulk import Campaign, CampaignKind
from aicc_async.bulk.journal import (
    DEFAULT_LEASE,
    campaign_location,
    check_campaign_name,
    is_dsn,
    mask_dsn,
)
from aicc_async.cli.terminal import Terminal
from aicc_async.errors import AICCValidationError

__all__ = ["POSTGRES_EXTRA", "JournalAt", "journal_at"]

#: What installs the PostgreSQL driver.
POSTGRES_EXTRA = "pip install 'aicc-async[postgres]'"


@attrs.frozen
class JournalAt:
    """A command's journal: the SQLite file ``location`` (``campaign`` None), or the
    campaign ``campaign`` in the PostgreSQL database at the DSN ``location``, whose
    workers hold leases of ``lease`` seconds. The DSN is never shown: :attr:`shown`
    masks its password."""

    location: Path | str = attrs.field(repr=False)
    campaign: str | None = None
    lease: float = DEFAULT_LEASE
    temporary: bool = False
    """Removed when the command ends (the demo's): no hint names it."""

    @property
    def postgres(self) -> bool:
        """True for a campaign in PostgreSQL."""
        return self.campaign is not None

    @property
    def shown(self) -> str:
        """The journal as messages name it (a DSN's password masked)."""
        if isinstance(self.location, Path):
            return str(self.location)
        assert self.campaign is not None
        return campaign_location(self.location, self.campaign)

    @property
    def argument(self) -> str:
        """The journal as a command line in a hint gives it (a DSN's password masked:
        the user puts it back, or sets PGPASSWORD)."""
        if isinstance(self.location, Path):
            return str(self.location)
        assert self.campaign is not None
        return f"{shlex.quote(mask_dsn(self.location))} --campaign {shlex.quote(self.campaign)}"

    def open(self, kind: CampaignKind | None = None, **flags: Any) -> Campaign:
        """A :class:`Campaign` on this journal (``flags``: ``read_only``, ``outcomes_only``)."""
        if isinstance(self.location, Path):
            return Campaign(self.location, kind, **flags)
        return Campaign(self.location, kind, campaign=self.campaign, lease=self.lease, **flags)


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
    if not is_dsn(location):
        if campaign is not None:
            raise terminal.fail(
                f"--campaign names a campaign in a PostgreSQL journal (--journal "
                f"postgresql://...); {location} is a SQLite journal file, which holds one "
                "campaign: leave --campaign out"
            )
        if lease is not None:
            raise terminal.fail(
                "--lease is for the workers of a PostgreSQL journal (--journal "
                f"postgresql://... --campaign NAME); {location} is a SQLite journal file"
            )
        return JournalAt(Path(location))
    if campaign is None:
        raise terminal.fail(
            f"a PostgreSQL journal ({mask_dsn(location)}) holds campaigns by name: "
            "give the campaign's name with --campaign NAME"
        )
    try:
        check_campaign_name(campaign)
    except AICCValidationError as exc:
        raise terminal.fail(f"--{exc.message}") from None
    try:
        import aicc_async.bulk.postgres_journal  # noqa: F401 - is the driver there?
    except ImportError as exc:
        raise terminal.fail(
            f"a PostgreSQL journal needs the PostgreSQL driver ({exc.name or exc} is "
            f"missing): {POSTGRES_EXTRA}"
        ) from None
    return JournalAt(location, campaign, DEFAULT_LEASE if lease is None else lease)
