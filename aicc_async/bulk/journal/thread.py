"""A store (a journal, a contact history) whose database connection is used from one
thread of its own, so that the event loop never waits on the database."""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from aicc_async.errors import CampaignError, JournalError

__all__ = ["OneThread"]

T = TypeVar("T")


class OneThread(abc.ABC):
    """The thread and the calls onto it. :meth:`_run` turns the driver's exceptions
    (:attr:`_errors`) into the ``JournalError`` :meth:`_problem` says; once
    :meth:`_shutdown` ran, every call is a ``CampaignError`` ("closed")."""

    location: str
    """The store as messages name it."""
    _errors: ClassVar[tuple[type[Exception], ...]] = ()
    """The driver's exceptions: they become ``JournalError``."""
    _what: ClassVar[str] = "journal"
    """What messages call the store."""

    def __init__(self, thread_name: str) -> None:
        self._worker: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=thread_name)
        )

    @abc.abstractmethod
    def _problem(self, exc: Exception) -> JournalError:
        """The error for a driver exception ``exc``."""

    @abc.abstractmethod
    def _close_db(self) -> None:
        """Close the connection (on the store's thread)."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the store's thread."""
        if self._worker is None:
            raise CampaignError(f"the {self._what} {self.location} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
        except self._errors as exc:
            raise self._problem(exc) from None

    async def _shutdown(self) -> None:
        """Close the connection and stop the thread (safe to call more than once)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(worker, self._close_db)
        finally:
            worker.shutdown()
