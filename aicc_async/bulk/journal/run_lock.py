"""The lock beside a SQLite journal (``JOURNAL.lock``) that lets one campaign run on
it at a time, removed from the directory when released.

``filelock`` keeps its file after a release, on purpose: a process that opened the
file just before it was removed would otherwise lock a file nobody else sees. This
lock removes the file while still holding it, and an acquire checks that the file it
locked is still the one at the path (else it opens the path again), which closes
that race. The kernel drops the lock when its process dies, so a crash never leaves
the journal locked (the file then stays, empty and unlocked, until the next run).
Where ``flock`` does not exist (Windows) it is ``filelock.FileLock``, file kept.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import filelock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["REMOVED_ON_RELEASE", "RunLock"]

#: Whether a released lock leaves no file behind on this platform.
REMOVED_ON_RELEASE = fcntl is not None

#: How often an acquire opens the path again after it was replaced under it.
_TRIES = 10


def _lock_fd(fd: int) -> bool:
    """Lock ``fd`` at once; False if another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """A non-blocking, process-wide lock on ``path`` (``acquire(timeout=0)`` and
    ``release()`` as ``filelock``'s: ``filelock.Timeout`` when another process holds
    it, ``OSError`` when the file cannot be made)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        self._fd: int | None = None
        self._fallback = None
        if fcntl is None:  # pragma: no cover - Windows
            self._fallback = filelock.FileLock(self.path, is_singleton=False, thread_local=False)

    def acquire(self, timeout: float = 0) -> None:
        """Take the lock now (``timeout`` must be 0: nobody waits for a campaign)."""
        assert timeout == 0
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.acquire(timeout=0)
            return
        for _ in range(_TRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if not _lock_fd(fd):
                    raise filelock.Timeout(str(self.path))
                held = os.fstat(fd)
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    continue  # released and removed after we opened it: open it again
                if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                    self._fd, fd = fd, -1
                    return
            finally:
                if fd != -1:
                    os.close(fd)
        raise filelock.Timeout(str(self.path))

    def release(self) -> None:
        """Remove the file, then let go of it (safe to call when not held)."""
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            held = os.fstat(fd)
            with contextlib.suppress(FileNotFoundError):
                current = os.stat(self.path)
                if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                    os.unlink(self.path)  # only our own file (someone may have replaced it)
        finally:
            os.close(fd)  # closing the descriptor drops the lock
