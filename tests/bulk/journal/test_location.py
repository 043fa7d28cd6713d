"""Where a journal is, parsed once (``JournalLocation``) and handed on as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicc_async import AICCValidationError
from aicc_async.bulk import Campaign
from aicc_async.bulk.journal import JournalLocation, open_journal


def test_a_dsn_is_parsed_with_its_campaign_and_shown_masked() -> None:
    at = JournalLocation.parse("postgresql://u:secret@db:5432/aicc", "spring", 12.5)
    assert (at.postgres, at.campaign, at.lease, at.path) == (True, "spring", 12.5, None)
    assert "secret" not in at.shown
    assert "secret" not in repr(at)
    assert at.shown == "postgresql://u:***@db:5432/aicc (campaign 'spring')"


@pytest.mark.parametrize(
    ("location", "campaign", "field"),
    [
        ("postgresql://u:secret@db/aicc", None, "campaign"),
        ("postgresql://u:secret@db/aicc", " ", "campaign"),
        ("campaign.db", "spring", "campaign"),
        ("", None, "path"),
    ],
)
def test_a_location_that_does_not_fit_is_refused_naming_the_field(
    location: str, campaign: str | None, field: str
) -> None:
    with pytest.raises(AICCValidationError) as caught:
        JournalLocation.parse(location, campaign)
    assert caught.value.field == field
    assert "secret" not in str(caught.value)


def test_a_bad_lease_is_refused() -> None:
    with pytest.raises(AICCValidationError) as caught:
        JournalLocation.parse("campaign.db", None, 0)
    assert caught.value.field == "lease"


@pytest.mark.asyncio
async def test_a_parsed_location_opens_the_same_journal_as_its_path(tmp_path: Path) -> None:
    at = JournalLocation.parse(tmp_path / "c.db")
    async with Campaign(at, "voice_notification") as campaign:
        assert campaign.path == tmp_path / "c.db"
        assert campaign.campaign is None
    journal = await open_journal(at, None, mode="read")
    try:
        assert journal.kind == "voice_notification"
    finally:
        await journal.close()
