"""Campaign guards an audit found missing: ``sending`` is on disk while the request is
at AICC, a client closed mid-run loses and repeats nothing, and a journal in a
directory the process cannot write is refused (checked without root's powers)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aicc_helpers import VOICE, number

from aicc_async import AICCClient, AICCConnectionError, CreateVoiceNotificationRequest, RetryPolicy
from aicc_async.bulk import Campaign, CampaignRow, StateCounts
from aicc_async.testing import FakeAICC, Fault

REPO_ROOT = Path(__file__).resolve().parents[2]


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01))
    return fake.client(**kwargs)


def voice_rows(n: int) -> list[CampaignRow]:
    return [
        CampaignRow(
            key=f"k{i}",
            request=CreateVoiceNotificationRequest(called=number(i), voice_content="$Parcel$"),
        )
        for i in range(n)
    ]


def states_on_disk(path: Path) -> dict[str, str]:
    """number -> state, read by a separate read-only connection while the journal is open."""
    uri = f"{path.as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        found = db.execute("SELECT json_extract(payload, '$.called'), state FROM rows")
        return dict(found.fetchall())


async def until(condition: Any) -> None:
    """Let the event loop run until ``condition()`` holds (at most 10,000 turns of 1 ms)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


@pytest.mark.asyncio
async def test_row_is_sending_on_disk_while_its_request_is_at_aicc(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    async with FakeAICC() as fake:
        fake.inject(Fault.HANG, endpoint=VOICE)  # the first request is held until close()
        async with Campaign(path, "voice_notification") as campaign:
            await campaign.load(voice_rows(3))
            async with client(fake) as aicc:
                run = asyncio.create_task(campaign.run(aicc, concurrency=1))
                await until(lambda: fake.in_flight == 1)
                (held,) = fake.received(VOICE)
                on_disk = states_on_disk(path)
                assert held.processed is False
                assert on_disk[held.body["called"]] == "sending"
                assert sorted(on_disk.values()) == ["pending", "pending", "sending"]
                run.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await run
    assert [r.body["called"] for r in fake.received(VOICE)] == [held.body["called"]]


@pytest.mark.asyncio
async def test_client_closed_mid_run_keeps_unsent_rows_pending_and_sends_none_twice(
    tmp_path: Path,
) -> None:
    n = 40
    async with FakeAICC(latency=0.01) as fake:
        async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
            await campaign.load(voice_rows(n))
            aicc = client(fake)
            closing: list[asyncio.Task[None]] = []

            def on_progress(counts: StateCounts) -> None:
                if counts.done >= 5 and not closing:
                    closing.append(asyncio.get_running_loop().create_task(aicc.close()))

            async with aicc:
                with pytest.raises(AICCConnectionError, match="closed"):
                    await campaign.run(aicc, concurrency=4, on_progress=on_progress)
                await closing[0]
            counts = (await campaign.report()).counts
            rows = {r["fields"]["called"]: r["state"] async for r in campaign.problem_rows()}

        received = [r.body["called"] for r in fake.received(VOICE)]
        calls = {number(i): fake.calls_to(number(i)) for i in range(n)}

    assert counts.total == n
    assert counts.sending == 0
    assert 5 <= counts.done < n
    assert counts.pending > 0  # the run stopped: rows were left for the next one
    assert counts.pending + counts.done + counts.unknown == n
    assert len(received) == len(set(received))  # nothing was sent twice
    assert all(c <= 1 for c in calls.values())
    assert sum(calls.values()) >= counts.done
    assert len(received) <= counts.done + counts.unknown  # no pending row was ever sent
    assert set(rows.values()) <= {"unknown"}


_OPEN_JOURNAL = textwrap.dedent(
    """
    import asyncio, sys
    from aicc_async.bulk import Campaign
    from aicc_async.errors import CampaignError

    async def main() -> None:
        try:
            await Campaign(sys.argv[1], "voice_notification").open()
        except CampaignError as exc:
            print("refused:", exc)
        else:
            print("opened")

    asyncio.run(main())
    """
)
_PR_CAPBSET_DROP = 24
_DAC_CAPABILITIES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _without_root_file_powers() -> None:
    """In the child, before exec: drop the capabilities that let root write anywhere, so
    it meets file modes like any user. (Switching to ``nobody`` would lock it out of the
    interpreter here: Python lives under /root.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPABILITIES:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def test_journal_in_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _OPEN_JOURNAL, str(locked / "c.db")],
            # Tests run as root, which writes anywhere: the check runs without that power.
            preexec_fn=_without_root_file_powers if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])},
            timeout=60,
            check=False,
        )
        written = list(locked.iterdir())
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:")
    assert "journal" in done.stdout
    assert written == []
