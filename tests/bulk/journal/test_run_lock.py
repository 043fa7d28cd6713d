"""The lock beside a SQLite journal that lets one campaign run on it at a time: held by
one process, gone from the directory once it is released, and never held twice when
a release and an acquire race."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import filelock
import pytest

from aicc_async.bulk.campaign import Campaign
from aicc_async.bulk.journal import run_lock
from aicc_async.bulk.journal.run_lock import RunLock


def test_a_released_lock_leaves_no_file(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "j.db.lock")
    lock.acquire(timeout=0)
    assert (tmp_path / "j.db.lock").exists()
    lock.release()
    assert not (tmp_path / "j.db.lock").exists()


def test_a_held_lock_refuses_another_holder_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "j.db.lock"
    lock = RunLock(path)
    lock.acquire(timeout=0)
    try:
        code = (
            "import sys, filelock\n"
            "from aicc_async.bulk.journal.run_lock import RunLock\n"
            "try:\n"
            f"    RunLock({str(path)!r}).acquire(timeout=0)\n"
            "except filelock.Timeout:\n"
            "    sys.exit(7)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], check=False, timeout=30)
        assert done.returncode == 7
    finally:
        lock.release()
    again = RunLock(path)
    again.acquire(timeout=0)
    again.release()


def test_an_acquire_racing_a_release_never_holds_a_removed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B opens the lock file; before B locks it, A releases (removing the file) and C
    takes a new one. B must not then hold the removed file beside C: it finds the
    path is not its file and tries again, against C's lock."""
    path = tmp_path / "j.db.lock"
    a, b, c = RunLock(path), RunLock(path), RunLock(path)
    a.acquire(timeout=0)
    real_lock = run_lock._lock_fd
    raced = []

    def racing(fd: int) -> bool:
        if not raced:
            raced.append(True)
            a.release()
            c.acquire(timeout=0)
        return real_lock(fd)

    monkeypatch.setattr(run_lock, "_lock_fd", racing)
    with pytest.raises(filelock.Timeout):
        b.acquire(timeout=0)
    assert raced
    assert path.exists()
    c.release()
    assert not path.exists()


@pytest.mark.asyncio
async def test_a_campaign_closed_cleanly_leaves_only_its_journal(tmp_path: Path) -> None:
    async with Campaign(tmp_path / "c.db", "voice_notification") as campaign:
        assert campaign.path is not None
        assert (tmp_path / "c.db.lock").exists()  # held while it runs
    assert sorted(os.listdir(tmp_path)) == ["c.db"]
