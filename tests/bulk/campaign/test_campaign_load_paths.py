"""The load path made cheaper per row (issue 11) records exactly what it recorded before:
journals written by earlier versions resume, and every kind of input loads alike."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest
from aicc_helpers import write_backs

from aicc_async import AICCValidationError, CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.bulk.campaign.loading import fingerprint as _fingerprint
from aicc_async.bulk.journal import Journal


def voice(n: int) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(
                called=f"8888{i:05d}",
                voice_content="$Grüße$",
                callback_url="https://cb.example/ev" if i % 2 else None,
                priority=i % 3 or None,
            ),
        )
        for i in range(n)
    ]


def recorded(path: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return {k: (p, f) for k, p, f in db.execute("SELECT key, payload, fingerprint FROM rows")}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "given"), [("voice_notification", voice(7)), ("write_back", write_backs(5))]
)
async def test_each_row_is_recorded_as_the_canonical_json_of_its_request(
    tmp_path: Path, kind: str, given: list[CampaignRow]
) -> None:
    """The payload and fingerprint are those earlier versions wrote (attrs.asdict as
    canonical JSON), so a journal they wrote resumes: the same input is not 'changed'."""
    path = tmp_path / "c.db"
    async with Campaign(path, kind) as campaign:  # type: ignore[arg-type]
        summary = await campaign.load(given)
    assert summary.added == len(given)
    found = recorded(path)
    for row in given:
        payload = Journal.dumps(attrs.asdict(row.request))
        assert found[row.key] == (payload, _fingerprint("request", payload))
    async with Campaign(path, kind) as campaign:  # type: ignore[arg-type]
        again = await campaign.load(given)
    assert (again.unchanged, again.added, again.replaced) == (len(given), 0, 0)


@pytest.mark.asyncio
async def test_a_list_a_generator_and_an_async_generator_load_alike(tmp_path: Path) -> None:
    given = voice(2500)  # more than one load batch

    def generator() -> Iterator[CampaignRow]:
        yield from given

    async def async_generator() -> AsyncIterator[CampaignRow]:
        for row in given:
            yield row

    contents = []
    for name, rows in (("list", given), ("gen", generator()), ("agen", async_generator())):
        path = tmp_path / f"{name}.db"
        async with Campaign(path, "voice_notification") as campaign:
            summary = await campaign.load(rows)
            counts = (await campaign.report()).counts
        assert (summary.read, summary.added) == (2500, 2500)
        assert counts == StateCounts(pending=2500)
        contents.append(recorded(path))
    assert contents[0] == contents[1] == contents[2]


@pytest.mark.asyncio
async def test_rows_that_are_not_an_iterable_of_rows_are_refused(tmp_path: Path) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        for bad in (42, "rows.csv", {"k": "v"}):
            with pytest.raises(AICCValidationError, match="iterable") as refused:
                await campaign.load(bad)  # type: ignore[arg-type]
            assert refused.value.field == "requests"
        with pytest.raises(AICCValidationError, match="CampaignRow"):
            await campaign.load([*voice(2), "k9"])  # type: ignore[list-item]
        assert (await campaign.report()).counts == StateCounts()
