"""Ctrl-C and SIGTERM while an ``aicc`` command runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

__all__ = ["Signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Signals:
    """Ctrl-C (SIGINT) and SIGTERM while a command runs: the first calls ``soft`` if it
    is set, otherwise it cancels the command's task, as every later one does.

    Use as a context manager inside the command's task.
    """

    def __init__(self) -> None:
        self.count = 0
        self.soft: Callable[[], None] | None = None
        task = asyncio.current_task()
        assert task is not None
        self._task = task

    def _handle(self) -> None:
        self.count += 1
        if self.count == 1 and self.soft is not None:
            self.soft()
        else:
            self._task.cancel()

    def __enter__(self) -> Signals:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt
                loop.add_signal_handler(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
