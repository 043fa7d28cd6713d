"""A campaign journal bound to its target and its input (issue 9), through the library:
withdrawn rows are never phoned, a number is phoned once, a journal refuses another
target, readers never write, and a journal that lost its -wal is refused."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aicc_helpers import FAST, VOICE, number

from aicc_async import (
    AICCClient,
    CampaignError,
    CreateVoiceNotificationRequest,
    JournalError,
    Timeout,
)
from aicc_async.bulk import Campaign, CampaignRow, StateCounts, Target
from aicc_async.bulk.campaign.csv_input import CampaignFile, neutralise, restore
from aicc_async.bulk.campaign.exports import export_problems
from aicc_async.testing import FakeAICC

SANDBOX = Target("sandbox", "fake-app-key", sandbox=True)


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    kwargs.setdefault("timeout", Timeout(total=2, connect=1))
    kwargs.setdefault("retry", FAST)
    return fake.client(**kwargs)


def row(i: int, called: str | None = None, text: str = "Parcel") -> CampaignRow:
    return CampaignRow(
        key=f"k{i}",
        request=CreateVoiceNotificationRequest(
            called=number(i) if called is None else called, voice_content=f"${text}$"
        ),
    )


def rows(indices: Any) -> list[CampaignRow]:
    return [row(i) for i in indices]


def states(path: Path) -> dict[str, str]:
    """key -> state, read without writing (mode=ro)."""
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT key, state FROM rows").fetchall())


def digest(*paths: Path) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


# -- item 2: rows removed from the input are never phoned ------------------------------


@pytest.mark.asyncio
async def test_rows_removed_from_the_input_are_withdrawn_not_phoned(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with FakeAICC() as fake:
        async with Campaign(path, "voice_notification") as campaign:
            await campaign.load(rows(range(100)))
            async with client(fake) as aicc:
                stop_after = 25

                def on_progress(counts: StateCounts) -> None:
                    if counts.done >= stop_after:
                        campaign.stop()

                await campaign.run(aicc, concurrency=5, target=SANDBOX, on_progress=on_progress)
        sent_first = {r.body["called"] for r in fake.received(VOICE)}
        assert stop_after <= len(sent_first) < 50

        # An opt-out: rows 50..99 leave the input; then the run resumes.
        async with Campaign(path, "voice_notification") as campaign:
            summary = await campaign.load(rows(range(50)))
            assert summary.withdrawn == 50
            async with client(fake) as aicc:
                final = await campaign.run(aicc, target=SANDBOX)
        assert final == StateCounts(done=50, withdrawn=50)
        phoned = [r.body["called"] for r in fake.received(VOICE)]
    assert sorted(phoned) == sorted(number(i) for i in range(50))  # once each, none removed
    found = states(path)
    assert {found[f"k{i}"] for i in range(50, 100)} == {"withdrawn"}


@pytest.mark.asyncio
async def test_a_withdrawn_row_put_back_is_sent_and_added_rows_are_welcome(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    async with FakeAICC() as fake, Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(10)))
        await campaign.load(rows(range(5)))  # 5..9 withdrawn before anything was sent
        assert (await campaign.report()).counts == StateCounts(pending=5, withdrawn=5)
        summary = await campaign.load(rows(range(12)))  # back, plus two new rows
        assert (summary.added, summary.withdrawn, summary.resumed) == (2, 0, True)
        async with client(fake) as aicc:
            assert await campaign.run(aicc) == StateCounts(done=12)
        assert len(fake.received(VOICE)) == 12


@pytest.mark.asyncio
async def test_an_input_with_no_row_in_common_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(10)))
        with pytest.raises(CampaignError, match="no row in common"):
            await campaign.load(rows(range(100, 3100)))  # more than one batch of another file
        assert (await campaign.report()).counts == StateCounts(pending=10)
        async with FakeAICC() as fake, client(fake) as aicc:
            assert await campaign.run(aicc) == StateCounts(done=10)
            assert len(fake.received(VOICE)) == 10


@pytest.mark.asyncio
async def test_a_load_that_stopped_early_sends_nothing_until_a_full_load(tmp_path: Path) -> None:
    path = tmp_path / "c.db"

    def broken() -> Any:
        yield from rows(range(3000))
        raise OSError("the disk holding the CSV went away")

    async with FakeAICC() as fake, Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(10)))
        with pytest.raises(OSError, match="went away"):
            await campaign.load(broken())
        async with client(fake) as aicc:
            with pytest.raises(CampaignError, match="load the input again"):
                await campaign.run(aicc)
        assert fake.received(VOICE) == []


@pytest.mark.asyncio
async def test_retry_unknown_resends_only_rows_still_in_the_input(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with FakeAICC() as fake, Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(4)))
        with sqlite3.connect(path) as db:  # two rows whose outcome became unknown
            db.execute("UPDATE rows SET state = 'unknown' WHERE key IN ('k0', 'k1')")
        await campaign.load(rows(range(1, 4)))  # k0 leaves the input
        async with client(fake) as aicc:
            await campaign.run(aicc, retry_unknown=True)
        phoned = sorted(r.body["called"] for r in fake.received(VOICE))
    assert phoned == [number(1), number(2), number(3)]
    assert states(path)["k0"] == "unknown"  # left as it was, never re-sent


# -- item 3: a number is phoned once per campaign -------------------------------------


@pytest.mark.asyncio
async def test_a_number_is_phoned_once_per_campaign(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    same = number(7)
    given = [row(0), row(1, same), row(2), row(3, same), row(4, same, text="Again")]
    async with FakeAICC() as fake, Campaign(path, "voice_notification") as campaign:
        await campaign.load(given)
        async with client(fake) as aicc:
            counts = await campaign.run(aicc, concurrency=5)
        assert counts == StateCounts(done=3, duplicate=2)
        assert fake.calls_to(same) == 1
        problems = [p async for p in campaign.problem_rows()]
    assert {p["key"]: p["state"] for p in problems} == {"k3": "duplicate", "k4": "duplicate"}
    assert all("'k1'" in p["description"] for p in problems)
    assert all(same not in p["description"] for p in problems)  # no number in the text

    # Loaded again, the duplicates stay duplicates: nothing is left to send.
    async with Campaign(path) as campaign:
        await campaign.load(given)
        assert (await campaign.report()).counts == StateCounts(done=3, duplicate=2)

    # A later run, with the first row of that number gone, still does not phone it again.
    async with FakeAICC() as fake, Campaign(path) as campaign:
        await campaign.load([row(0), row(2), row(3, same)])
        async with client(fake) as aicc:
            await campaign.run(aicc, target=Target(*_bound(path)))
        assert fake.received(VOICE) == []


def _bound(path: Path) -> tuple[str, str]:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        target = json.loads(db.execute("SELECT target FROM campaign").fetchone()[0])
    return target["base_url"], target["app_key"]


@pytest.mark.asyncio
async def test_allow_repeat_numbers_phones_every_row(tmp_path: Path) -> None:
    same = number(7)
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load([row(1, same), row(2, same), row(3, same, text="Again")])
        async with client(fake) as aicc:
            counts = await campaign.run(aicc, allow_repeat_numbers=True)
        assert counts == StateCounts(done=3)
        assert fake.calls_to(same) == 3


@pytest.mark.asyncio
async def test_a_number_refused_by_aicc_is_not_tried_again_through_another_row(
    tmp_path: Path,
) -> None:
    same = number(7)
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        fake.trial_trustlist = {number(0)}  # `same` is refused: nobody was called
        await campaign.load([row(1, same), row(2, same)])
        async with client(fake) as aicc:
            counts = await campaign.run(aicc)
    assert counts == StateCounts(failed=1, duplicate=1)


# -- item 1: a journal belongs to one target ------------------------------------------


@pytest.mark.asyncio
async def test_a_journal_refuses_another_target_once_it_sent_something(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with FakeAICC() as sandbox, Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(3)))
        async with client(sandbox) as aicc:
            await campaign.run(aicc, target=SANDBOX)
    async with FakeAICC() as tenant, Campaign(path) as campaign:
        await campaign.load(rows(range(5)))
        async with client(tenant) as aicc:
            with pytest.raises(CampaignError) as refused:
                await campaign.run(aicc)
        assert tenant.received(VOICE) == []
        assert (await campaign.report()).target == SANDBOX
    message = refused.value.message
    assert "sandbox" in message
    assert "new --journal" in message
    assert "fake-app-secret" not in message


@pytest.mark.asyncio
async def test_a_journal_may_move_target_while_nothing_was_sent(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(3)))
        await campaign.bind(Target("https://typo.example", "key"))
        async with FakeAICC() as fake, client(fake) as aicc:
            assert await campaign.run(aicc) == StateCounts(done=3)
        report = await campaign.report()
    assert report.target is not None
    assert report.target.base_url.startswith("http://127.0.0.1")
    assert "app_secret" not in str(report.to_json())


@pytest.mark.asyncio
async def test_bind_refuses_what_is_not_a_target(tmp_path: Path) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        with pytest.raises(ValueError, match="target"):
            await campaign.bind("https://service.besclouds.com")  # type: ignore[arg-type]


# -- item 6: readers never write ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_read_only_campaign_changes_no_byte_and_settles_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    wal = tmp_path / "c.db-wal"
    writer = Campaign(path, "voice_notification")
    await writer.open()
    try:
        await writer.load(rows(range(20)))
        with sqlite3.connect(path) as db:  # as a killed run leaves them
            db.execute("UPDATE rows SET state = 'sending' WHERE key IN ('k0', 'k1')")
        before = digest(path, wal)
        async with Campaign(path, read_only=True) as reader:  # while the writer holds it
            report = await reader.report()
            with pytest.raises(CampaignError, match="read-only"):
                await reader.load(rows(range(20)))
        assert report.counts == StateCounts(pending=18, sending=2)
        assert digest(path, wal) == before
    finally:
        await writer.close()


@pytest.mark.asyncio
async def test_a_read_only_campaign_never_creates_a_journal(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match="no journal at"):
        await Campaign(tmp_path / "missing.db", read_only=True).open()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(CampaignError, match="not an aicc journal"):
        await Campaign(empty, read_only=True).open()
    assert sorted(os.listdir(tmp_path)) == ["empty.db"]
    assert empty.read_bytes() == b""


# -- item 10: the -wal file is part of the journal ------------------------------------


@pytest.mark.asyncio
async def test_a_journal_not_closed_cleanly_without_its_wal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    campaign = Campaign(path, "voice_notification")
    await campaign.open()
    await campaign.load(rows(range(50)))
    async with FakeAICC() as fake, client(fake) as aicc:
        await campaign.run(aicc)
    # The process dies here: the journal is never closed. A copy without the -wal:
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    assert (tmp_path / "c.db-wal").exists()
    with pytest.raises(CampaignError, match="-wal") as refused:
        await Campaign(copy).open()
    assert "Nothing was sent" in refused.value.message
    # A report refuses it too, and leaves no (empty) -wal behind that would hide the loss.
    with pytest.raises(CampaignError, match="-wal"):
        await Campaign(copy, read_only=True).open()
    assert not (tmp_path / "copy.db-wal").exists()
    with pytest.raises(CampaignError, match="-wal"):
        await Campaign(copy).open()
    await campaign.close()

    # Closed cleanly, the journal file alone is the whole journal.
    assert not (tmp_path / "c.db-wal").exists()
    shutil.copy(path, copy)
    async with Campaign(copy) as campaign:
        assert (await campaign.report()).counts == StateCounts(done=50)


@pytest.mark.asyncio
async def test_a_damaged_journal_raises_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(3000)))
    data = bytearray(path.read_bytes())
    end = len(data) * 3 // 4
    data[4096 * 3 : end] = b"\xa5" * (end - 4096 * 3)  # most pages overwritten
    path.write_bytes(bytes(data))
    for read_only in (True, False):
        with pytest.raises(JournalError, match="could not be read"):
            async with Campaign(path, read_only=read_only) as campaign:
                await campaign.report()


# -- items 7 and 8: exports -----------------------------------------------------------


@pytest.mark.asyncio
async def test_export_refuses_the_journal_its_files_and_the_input(tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    source.write_text("id,called,text\n1,88880001,Hi\n2,bad,Hi\n")
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        with CampaignFile(source, "voice_notification") as file:
            await campaign.load(file.rows(), source=source)
    (tmp_path / "link.csv").symlink_to(source)
    before = digest(path, source)
    async with Campaign(path, read_only=True) as campaign:
        for target in (
            path,
            tmp_path / "c.db-wal",
            tmp_path / "c.db-shm",
            tmp_path / "." / "contacts.csv",
            tmp_path / "link.csv",
        ):
            with pytest.raises(CampaignError, match="will not write the export"):
                await export_problems(campaign, target)
        assert await export_problems(campaign, tmp_path / "problems.csv") == 1
    assert digest(path, source) == before
    assert not (tmp_path / "c.db-wal").exists()  # a closed journal is read without one
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


@pytest.mark.asyncio
async def test_export_refuses_any_sqlite_file_and_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(2)))
    other = tmp_path / "other.db"
    kept = Campaign(other, "voice_notification")
    await kept.open()  # another campaign, running: its -wal is live
    try:
        await kept.load(rows(range(3)))
        copied_wal = tmp_path / "saved-wal"
        copied_wal.write_bytes((tmp_path / "other.db-wal").read_bytes())
        targets = [other, copied_wal]
        before = [t.read_bytes() for t in targets]
        async with Campaign(path, read_only=True) as campaign:
            for target, what in zip(targets, ["database", "write-ahead log"], strict=True):
                with pytest.raises(CampaignError, match=f"it is an SQLite {what}"):
                    await export_problems(campaign, target)
        assert [t.read_bytes() for t in targets] == before
        assert (await kept.report()).counts == StateCounts(pending=3)
    finally:
        await kept.close()


@pytest.mark.asyncio
async def test_exported_cells_cannot_run_as_formulas_and_read_back_unchanged(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.csv"
    hostile = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "'=already"]
    with source.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "called", "text"])
        out.writerow(['=HYPERLINK("http://x")', "+86139000000x1", "Hello"])
        for i, text in enumerate(hostile):
            out.writerow([f"r{i}", "not-a-number", text])
    path = tmp_path / "c.db"
    async with Campaign(path, "voice_notification") as campaign:
        with CampaignFile(source, "voice_notification") as file:
            first = {r.key: dict(r.source) for r in file.rows()}
        with CampaignFile(source, "voice_notification") as file:
            await campaign.load(file.rows(), source=source)
        exported = tmp_path / "out.csv"
        await export_problems(campaign, exported)
    with exported.open(newline="") as f:
        cells = [cell for line in csv.reader(f) for cell in line]
    assert len(cells) > 8 * 5
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert '\'=HYPERLINK("http://x")' in cells  # the key, neutralised too
    # Fed back, the export gives the values the input gave (the added ' is removed again).
    with CampaignFile(exported, "voice_notification") as file:
        again = {r.key: dict(r.source) for r in file.rows()}
    assert again == first
    assert first['=HYPERLINK("http://x")']["called"] == "+86139000000x1"


def test_neutralise_and_restore_are_inverse() -> None:
    for cell in ("=1", "+86", "-1", "@x", "\tx", "\rx", "plain", "", "'", "'plain", "'=x"):
        assert restore(neutralise(cell)) == cell
    assert neutralise("+8613900000001") == "'+8613900000001"
    assert neutralise("13900000001") == "13900000001"


# -- item 5 and item 11 ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrency_above_the_pool_is_refused_not_capped(tmp_path: Path) -> None:
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(rows(range(3)))
        async with client(fake, limits={"voice_notification": 300}, max_connections=100) as aicc:
            with pytest.raises(ValueError, match="max_connections"):
                await campaign.run(aicc, concurrency=300)
        assert fake.received(VOICE) == []


@pytest.mark.asyncio
async def test_the_pool_follows_a_concurrency_above_100(tmp_path: Path) -> None:
    n = 300
    async with FakeAICC(latency=1.0) as fake:
        async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
            await campaign.load(rows(range(n)))
            async with client(
                fake,
                limits={"voice_notification": 150},
                max_connections=150,
                timeout=Timeout(total=10, connect=5),
            ) as aicc:
                assert await campaign.run(aicc, concurrency=150) == StateCounts(done=n)
        assert fake.max_in_flight == 150


@pytest.mark.asyncio
async def test_an_unexpected_error_stops_the_run_instead_of_burning_every_row(
    tmp_path: Path,
) -> None:
    n = 50
    async with FakeAICC() as fake, Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        await campaign.load(rows(range(n)))
        async with client(fake) as aicc:
            original = aicc.voice_notification.send
            calls = 0

            async def broken(request: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls == 3:
                    raise KeyError("bug")
                await asyncio.sleep(0)
                return await original(request, **kwargs)

            aicc.voice_notification.send = broken  # type: ignore[method-assign]
            with pytest.raises(Exception, match="unexpected error") as stopped:
                await campaign.run(aicc, concurrency=2)
        counts = (await campaign.report()).counts
    assert "KeyError" in str(stopped.value)
    assert counts.unknown == 1  # the row that met the error may have left
    assert counts.pending >= n - 5  # the others were not burned


@pytest.mark.asyncio
async def test_another_file_is_refused_even_after_an_interrupted_load_of_it(
    tmp_path: Path,
) -> None:
    # The rows a load that never completed added are not the campaign's input: they
    # must not count as "rows in common" for the next load of the same wrong file.
    path = tmp_path / "c.db"
    other = [
        CampaignRow(
            key=f"b{i}",
            request=CreateVoiceNotificationRequest(called=number(5000 + i), voice_content="$X$"),
        )
        for i in range(3000)
    ]

    def broken() -> Any:
        yield from other[:2500]
        raise OSError("the disk holding the CSV went away")

    async with FakeAICC() as fake, Campaign(path, "voice_notification") as campaign:
        await campaign.load(rows(range(50)))
        async with client(fake) as aicc:
            await campaign.run(aicc)
        with pytest.raises(OSError, match="went away"):
            await campaign.load(broken())
        with pytest.raises(CampaignError, match="no row in common"):
            await campaign.load(other)
        async with client(fake) as aicc:
            with pytest.raises(CampaignError, match="load the input again"):
                await campaign.run(aicc)
        assert len(fake.received(VOICE)) == 50
        assert (await campaign.report()).counts == StateCounts(done=50)
