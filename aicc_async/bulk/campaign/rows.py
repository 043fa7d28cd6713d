"""A campaign's input rows (:class:`CampaignRow`) and what loading them did
(:class:`LoadSummary`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from aicc_async.bulk.dialer.hours import resolve_zone
from aicc_async.endpoints.outbound import WriteBackResultRequest
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.errors import AICCValidationError

__all__ = ["MAX_KEY", "CampaignRow", "LoadSummary"]

#: The longest row key.
MAX_KEY = 256


def _zone(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        resolve_zone(value)  # type: ignore[arg-type]  # not a str: it says so


def _key(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY:
        raise AICCValidationError(
            f"key: must be a non-blank string of at most {MAX_KEY} characters, got {value!r}",
            field="key",
        )


@attrs.frozen
class CampaignRow:
    """One row of campaign input: its ``key`` and either a ``request`` or, when the
    source row could not become one, ``invalid`` (why) and ``source`` (its values).

    The key names the row across runs: re-running with a different row for a key
    that was already sent raises ``CampaignError``. ``timezone``: the IANA zone the
    row's calling hours are in (default: the run's ``timezone``); raises
    ``AICCValidationError`` for a zone this machine does not know.
    """

    key: str = attrs.field(validator=_key)
    request: CreateVoiceNotificationRequest | WriteBackResultRequest | None = None
    invalid: str | None = None
    source: Mapping[str, str] = attrs.field(factory=dict)
    timezone: str | None = attrs.field(default=None, validator=_zone)

    def __attrs_post_init__(self) -> None:
        if (self.request is None) == (self.invalid is None):
            raise AICCValidationError(
                f"row {self.key!r}: give exactly one of request and invalid", field="request"
            )


@attrs.frozen
class LoadSummary:
    """What :meth:`Campaign.load` did with its input."""

    read: int
    added: int
    """Rows new to the journal."""
    replaced: int
    """Rows that changed but had never been sent (pending, or invalid before)."""
    withdrawn: int = 0
    """Unsent rows of earlier input that this input leaves out: they will not be sent."""
    known: int = 0
    """Rows whose key the journal already held (0 for a new campaign)."""

    @property
    def unchanged(self) -> int:
        """Rows the journal already held as given."""
        return self.read - self.added - self.replaced

    @property
    def resumed(self) -> bool:
        """True when the journal already held rows of this input (a resume)."""
        return self.known > 0
