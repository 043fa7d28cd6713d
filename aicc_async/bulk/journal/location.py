"""Where a campaign journal is, parsed once at the edge: a SQLite file, or a campaign
by name in a PostgreSQL database (a ``postgresql://`` / ``postgres://`` DSN). The DSN
is never shown: messages name it with its password masked."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import attrs

from aicc_async.errors import AICCValidationError, check_positive

__all__ = [
    "DEFAULT_LEASE",
    "MAX_CAMPAIGN_NAME",
    "JournalLocation",
    "campaign_location",
    "check_campaign_name",
    "check_lease",
    "is_dsn",
    "mask_dsn",
]

#: Seconds a PostgreSQL worker's lease lasts unless renewed (renewed every third of it).
DEFAULT_LEASE = 30.0
#: The longest campaign name (a PostgreSQL journal holds many campaigns by name).
MAX_CAMPAIGN_NAME = 200


def is_dsn(location: str | os.PathLike[str]) -> bool:
    """True when ``location`` is a PostgreSQL DSN (``postgresql://`` or ``postgres://``)."""
    return isinstance(location, str) and location.lower().startswith(
        ("postgresql://", "postgres://")
    )


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password (in the user part or a ``password=`` parameter)
    replaced by ``***``: what messages, reprs and logs may show."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        query = "&".join(
            f"{name}=***" if name.lower() == "password" else f"{name}={value}"
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        )
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "postgresql://***"


def campaign_location(dsn: str, name: str) -> str:
    """How messages name the campaign ``name`` in the PostgreSQL journal at ``dsn``
    (its password masked)."""
    return f"{mask_dsn(dsn)} (campaign {name!r})"


def check_campaign_name(name: object) -> str:
    """``name`` if it can name a campaign in a PostgreSQL journal: a non-blank string
    of printable characters, at most :data:`MAX_CAMPAIGN_NAME` long. Raises
    ``AICCValidationError`` (``field="campaign"``) otherwise."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or not name.isprintable()
        or len(name) > MAX_CAMPAIGN_NAME
    ):
        raise AICCValidationError(
            "campaign: must be a non-blank name of printable characters, at most "
            f"{MAX_CAMPAIGN_NAME} long, got {name!r}",
            field="campaign",
        )
    return name


def check_lease(lease: object) -> float:
    """``lease`` as seconds if it is a finite number > 0; ``AICCValidationError``
    (``field="lease"``) otherwise."""
    return check_positive("lease", lease)


@attrs.frozen
class JournalLocation:
    """A journal's place: the SQLite file :attr:`path` (:attr:`campaign` None), or the
    campaign :attr:`campaign` in the PostgreSQL database at :attr:`dsn`, whose workers
    hold leases of :attr:`lease` seconds. Build with :meth:`parse`."""

    path: Path | None = None
    dsn: str | None = attrs.field(default=None, repr=False)
    campaign: str | None = None
    lease: float = DEFAULT_LEASE

    @classmethod
    def parse(
        cls,
        location: str | os.PathLike[str],
        campaign: str | None = None,
        lease: object = DEFAULT_LEASE,
    ) -> JournalLocation:
        """``location`` (a DSN or a file path) with ``campaign`` and ``lease``.

        Raises ``AICCValidationError`` for a location that is neither, a DSN without a
        valid ``campaign`` name, a ``campaign`` with a file path, or a bad ``lease``.
        """
        if not isinstance(location, (str, os.PathLike)) or not os.fspath(location):
            got = "an empty path" if location == "" else type(location).__name__  # no DSN shown
            raise AICCValidationError(
                f"path: must be a file path (str or os.PathLike) or a postgresql:// DSN, got {got}",
                field="path",
            )
        seconds = check_lease(lease)
        if is_dsn(location):
            assert isinstance(location, str)
            if campaign is None:
                raise AICCValidationError(
                    f"campaign: a PostgreSQL journal ({mask_dsn(location)}) holds campaigns "
                    "by name: give the campaign's name with --campaign NAME",
                    field="campaign",
                )
            return cls(None, location, check_campaign_name(campaign), seconds)
        if campaign is not None:
            raise AICCValidationError(
                "campaign names a campaign in a PostgreSQL journal (a postgresql:// DSN); "
                f"{os.fspath(location)!s} is a SQLite journal file, which holds one campaign: "
                "leave --campaign out",
                field="campaign",
            )
        return cls(Path(os.fspath(location)), None, None, seconds)

    @property
    def postgres(self) -> bool:
        """True for a campaign in PostgreSQL."""
        return self.dsn is not None

    @property
    def shown(self) -> str:
        """The journal as messages name it (a DSN's password masked)."""
        if self.dsn is None:
            return str(self.path)
        assert self.campaign is not None
        return campaign_location(self.dsn, self.campaign)
