"""Loading a campaign's rows into its journal: each :class:`CampaignRow` as the
journal records it (:func:`loader`), from any iterable (:func:`rows_of`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from aicc_async.bulk.campaign.rows import CampaignRow
from aicc_async.bulk.engine import Kind
from aicc_async.bulk.journal.rules import INVALID, Journal, LoadedRow
from aicc_async.errors import AICCValidationError

__all__ = ["fingerprint", "loader", "rows_of"]


def rows_of(rows: object) -> Iterable[Any]:
    """``rows`` if it is an iterable of rows (``AICCValidationError`` else)."""
    if isinstance(rows, Iterable) and not isinstance(rows, (str, bytes, dict)):
        return rows
    raise AICCValidationError(
        f"requests: must be an iterable or async iterable of request objects, "
        f"got {type(rows).__name__}",
        field="requests",
        endpoint="campaign",
    )


def fingerprint(tag: str, payload: str) -> str:
    """What tells a row's content from another's (``tag``: what the payload is)."""
    return hashlib.sha256(f"{tag}:{payload}".encode()).hexdigest()[:32]


def loader(kind: Kind) -> Callable[[object], LoadedRow]:
    """``loaded(row)``: a ``CampaignRow`` of a ``kind`` campaign as the journal
    records it (its payload the request's fields as canonical JSON, :meth:`Kind.payload`)."""
    request_type, number, dumps, payload_of = (
        kind.request_type,
        kind.number,
        Journal.dumps,
        kind.payload,
    )

    def loaded(row: object) -> LoadedRow:
        if not isinstance(row, CampaignRow):
            raise AICCValidationError(
                f"rows: must hold CampaignRow objects, got {type(row).__name__}", field="rows"
            )
        request = row.request
        if request is None:
            payload = dumps(dict(row.source))
            return LoadedRow(
                row.key,
                fingerprint("invalid", f"{payload}:{row.invalid}"),
                "failed",
                payload,
                code=INVALID,
                description=row.invalid,
            )
        if type(request) is not request_type and not isinstance(request, request_type):
            raise AICCValidationError(
                f"row {row.key!r}: a {kind.name} campaign takes "
                f"{request_type.__name__}, got {type(request).__name__}",
                field="request",
            )
        payload = payload_of(request)
        zone = None if row.timezone is None else row.timezone.strip()
        return LoadedRow(
            row.key,
            fingerprint("request", payload if zone is None else f"{payload}@{zone}"),
            "pending",
            payload,
            number=number(request),
            zone=zone,
        )

    return loaded
