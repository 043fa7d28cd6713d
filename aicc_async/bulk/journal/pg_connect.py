"""Connecting to PostgreSQL at a DSN, for the journal and the contact history: the
DSN checked first, the failure said with host:port and the DSN masked, never the
password (psycopg's own text may quote it)."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.conninfo

from aicc_async.bulk.journal.location import mask_dsn
from aicc_async.errors import CampaignError, JournalError

__all__ = ["LOCKS", "connect", "said", "secret", "unreadable_dsn", "where"]

#: The advisory-lock class of this library ("AICC"); each store takes its own offsets.
LOCKS = 1_095_320_387
#: Seconds a connection attempt may take.
CONNECT_TIMEOUT = 10


def where(dsn: str) -> str:
    """``host:port`` of ``dsn`` (what an unreachable server's message names)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the server of the DSN"
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


def secret(dsn: str) -> str | None:
    """The password ``dsn`` holds, if any (to keep it out of messages)."""
    try:
        found = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return None if found is None else str(found)


def said(exc: BaseException, secret: str | None) -> str:
    """What ``exc`` says, without the password ``secret`` should a message hold it."""
    text = str(exc).strip()
    return text.replace(secret, "***") if secret else text


def unreadable_dsn(dsn: str, exc: psycopg.Error) -> CampaignError:
    """The refusal of a DSN psycopg cannot parse; psycopg's own text may quote all of it
    (password included), so the DSN is shown masked only."""
    text = said(exc, None).replace(dsn, mask_dsn(dsn))
    return CampaignError(
        f"{mask_dsn(dsn)} is not a PostgreSQL DSN psycopg can read ({text}): "
        "give postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )


def connect(dsn: str, what: str, application_name: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``dsn`` for ``what`` (``"the PostgreSQL journal"``,
    messages name it). Raises ``CampaignError`` for a DSN psycopg cannot read,
    ``JournalError`` when the server cannot be reached."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise unreadable_dsn(dsn, exc) from None
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=application_name,
        )
    except psycopg.Error as exc:
        raise JournalError(
            f"cannot reach {what} at {where(dsn)} ({mask_dsn(dsn)}): {said(exc, secret(dsn))}"
        ) from None
