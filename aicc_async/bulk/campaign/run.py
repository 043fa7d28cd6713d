"""Journaled bulk campaigns: every row recorded before and after its send, resumable.

```python
async with Campaign("campaign.db", "voice_notification") as campaign:
    await campaign.load(CampaignRow(key=str(i), request=r) for i, r in enumerate(requests))
    counts = await campaign.run(aicc)          # pending -> sending -> done|failed|unknown
```

States: ``done`` (AICC processed it), ``failed`` (AICC refused it or the input was
invalid; nobody was called), ``unknown`` (it may have been processed: a timeout,
a reset or a gateway error after sending, or a run stopped while it was in
flight), ``withdrawn`` (left out of the latest input before it was sent) and
``duplicate`` (not sent: another row of the campaign already used its number).
``unknown`` rows of a voice campaign are never sent again unless a run asks for
exactly that (``retry_unknown=True``); a write-back campaign (idempotent) re-sends
them on its next run.

A journal belongs to the target of its first run and refuses another; a run sends
only rows of the input last loaded in full.

The journal is a SQLite file by default (one process at a time). Given a
``postgresql://`` DSN and a campaign name (``aicc-async[postgres]``), it lives in
PostgreSQL and several workers, on several machines, run the campaign together::

    async with Campaign("postgresql://aicc:PASSWORD@db:5432/aicc", "voice_notification",
                        campaign="spring-reminders") as campaign:
        await campaign.run(aicc, rows=rows)    # every worker gives the same input

Each row is sent by one worker once; a worker that dies leaves its rows in flight
``unknown`` once its lease expires (see :mod:`aicc_async.bulk.journal.postgres`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, get_args

from aicc_async._fanout import async_items
from aicc_async._numbers import normalise_number
from aicc_async.adaptive import AdaptiveRate, AutoRate
from aicc_async.bulk.campaign.dialing import (
    Dialer,
    DialerSettings,
    SystemClock,
    Waiting,
    WallClock,
)
from aicc_async.bulk.campaign.kinds import KINDS, CampaignKind
from aicc_async.bulk.campaign.loading import loader, rows_of
from aicc_async.bulk.campaign.report import CampaignReport, rate_over_time
from aicc_async.bulk.campaign.rows import CampaignRow, LoadSummary
from aicc_async.bulk.campaign.settings import RunSettings, check_callback, check_source
from aicc_async.bulk.engine import DEFAULT_MAX_THROTTLED, Engine, Feed, Kind
from aicc_async.bulk.journal.location import DEFAULT_LEASE, JournalLocation
from aicc_async.bulk.journal.opening import open_journal
from aicc_async.bulk.journal.rules import (
    Activity,
    Journal,
    KeyChanged,
    LoadedRow,
    Mode,
    Outcome,
    Outcomes,
    StateCounts,
    Target,
    warn_settled,
)
from aicc_async.callbacks import CallbackReceiver, ReleaseEvent
from aicc_async.errors import (
    AICCConnectionError,
    AICCValidationError,
    CampaignError,
    JournalError,
    check_flag,
)

if TYPE_CHECKING:
    from aicc_async.client import AICCClient

__all__ = ["Campaign"]

logger = logging.getLogger(__name__)

_LOAD_BATCH = 2000
_FIRST_BATCH = 200  # a streamed campaign's first batch: the first request leaves sooner
_OTHERS_POLL = 0.25  # seconds between looks at the rows other workers have in flight


class Campaign:
    """A bulk campaign recorded in a journal: the SQLite file at ``location``, or, when
    ``location`` is a ``postgresql://`` (or ``postgres://``) DSN, the campaign named
    ``campaign`` in that PostgreSQL database, which several workers (processes on
    several machines) may run together.

    Use it as ``async with Campaign(location, kind) as campaign:`` (or ``await
    campaign.open()`` ... ``await campaign.close()``). The journal is created for
    ``kind`` (``"voice_notification"`` or ``"write_back"``) if missing; with
    ``kind=None`` it must exist, whatever its kind. ``read_only=True`` opens an
    existing journal without writing a byte to it (reports and exports; it may be in
    use by a running campaign). ``outcomes_only=True`` opens an existing journal to
    record call outcomes (:meth:`record_outcome`), beside a campaign running on it or
    after it. ``lease``: seconds a PostgreSQL worker's lease lasts unless renewed
    (renewed every third of it); rows a worker left ``sending`` are settled by the
    others once its lease expired. ``location`` may also be a
    :class:`~aicc_async.bulk.journal.JournalLocation` parsed before (``campaign`` and
    ``lease`` then come from it). Raises ``AICCValidationError`` for an unknown
    ``kind``, both flags, a DSN without a valid ``campaign`` name, or a ``campaign``
    name with a file path.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | JournalLocation,
        kind: CampaignKind | None = None,
        *,
        campaign: str | None = None,
        read_only: bool = False,
        outcomes_only: bool = False,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if kind is not None and kind not in KINDS:
            raise AICCValidationError(
                f"kind: must be one of {', '.join(get_args(CampaignKind))}, got {kind!r}",
                field="kind",
            )
        if not isinstance(location, JournalLocation):
            location = JournalLocation.parse(location, campaign, lease)
        check_flag("read_only", read_only)
        check_flag("outcomes_only", outcomes_only)
        if read_only and outcomes_only:
            raise AICCValidationError(
                "read_only and outcomes_only: choose one", field="outcomes_only"
            )
        self._at = location
        self._location = location.shown
        self._wanted = kind
        self._mode: Mode = "read" if read_only else "record" if outcomes_only else "run"
        self._opened: tuple[Journal, Kind] | None = None
        self._engine: Engine | None = None
        self._running = self._stopped = False
        self._feed: Feed | None = None
        self.interrupted = 0
        """Rows a stopped run had left in flight, settled when the journal was opened."""
        self.loaded: LoadSummary | None = None
        """What the latest complete load did (:meth:`load`, or :meth:`run` with rows)."""
        self.rate_limiter: AdaptiveRate | None = None
        """The adaptive limiter of the latest ``run(rate="auto")``: its ``rate`` now,
        ``throttled`` answers and ``samples`` (the rate over time)."""
        self._requeued = 0  # by the runs that ended
        self.waiting: Waiting | None = None
        """What the rows of the latest run still wait for (calling hours, redial times,
        release events, a do-not-call list that cannot be read), or ``None``."""
        self._wake = asyncio.Event()  # set by stop(): a waiting run stops at once
        self._clock: WallClock = SystemClock()  # the latest run's: stamps release events

    def __repr__(self) -> str:
        return f"Campaign({self._location!r}, {self._wanted!r}, mode={self._mode!r})"

    async def open(self) -> None:
        """Open (or create) the journal.

        Rows a stopped run left ``sending`` are settled: ``unknown`` for a voice
        campaign, ``pending`` for a write-back one (not when read-only; on PostgreSQL,
        only the rows of workers whose lease expired). Raises ``CampaignError`` if the
        journal cannot be created or opened, holds another kind of campaign, is in use
        by another campaign process, or was not closed cleanly and lost its ``-wal``
        file (or, on PostgreSQL, the campaign is missing); ``JournalError`` if SQLite
        cannot read it or the PostgreSQL server cannot be reached (host:port named,
        never the password).
        """
        if self._opened is not None:
            return
        journal = await open_journal(self._at, self._wanted, mode=self._mode)
        kind = KINDS[journal.kind]
        if self._mode == "run":
            try:
                self.interrupted = await journal.recover(idempotent=kind.idempotent)
            except BaseException:
                await journal.close()
                raise
        if self.interrupted:
            warn_settled(
                self.interrupted,
                f"were in flight when the last run of {self._location} stopped",
                idempotent=kind.idempotent,
            )
        self._opened = journal, kind

    def _open_state(self) -> tuple[Journal, Kind]:
        if self._opened is None:
            raise CampaignError(
                f"{self._location}: open the campaign first (async with Campaign(...))"
            )
        return self._opened

    def _sender(self) -> Journal:
        """The journal, if this campaign was opened to send (not read-only or outcomes-only)."""
        journal = self._journal
        if self._mode != "run":
            what = "read-only" if self._mode == "read" else "open to record call outcomes only"
            raise CampaignError(f"{self._location} is {what}: it cannot load or send rows")
        return journal

    @property
    def _journal(self) -> Journal:
        return self._open_state()[0]

    @property
    def _kind(self) -> Kind:
        return self._open_state()[1]

    @property
    def kind(self) -> str:
        """``"voice_notification"`` or ``"write_back"``."""
        return self._kind.name

    @property
    def path(self) -> Path | None:
        """The journal file (``None`` for a PostgreSQL journal: see :attr:`location`)."""
        return self._at.path

    @property
    def location(self) -> str:
        """The journal as messages name it: the SQLite file's path, or the PostgreSQL
        DSN (password masked) and the campaign's name."""
        return self._location

    @property
    def campaign(self) -> str | None:
        """The campaign's name in a PostgreSQL journal (``None`` for a SQLite file)."""
        return self._at.campaign

    @property
    def files(self) -> tuple[Path, ...]:
        """The journal file and the files beside it that belong to it (``-wal``,
        ``-shm``, ``.lock``): copy the first two together, never write over any. None
        for a PostgreSQL journal."""
        return self._journal.files

    async def source(self) -> Path | None:
        """The input file the latest complete load named (``load(..., source=...)``)."""
        found = await self._journal.source()
        return None if found is None else Path(found)

    async def bind(self, target: Target) -> None:
        """Bind the journal to ``target`` (done by :meth:`run` too). Raises
        ``CampaignError`` if it belongs to another target; nothing is sent."""
        if not isinstance(target, Target):
            raise AICCValidationError(
                f"target: must be a Target, got {type(target).__name__}", field="target"
            )
        await self._sender().bind(target)

    async def load(
        self,
        rows: Iterable[CampaignRow] | AsyncIterable[CampaignRow],
        *,
        source: str | os.PathLike[str] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> LoadSummary:
        """Record ``rows``, the campaign's whole input, in the journal as ``pending``
        (invalid ones as ``failed``), streaming: memory does not grow with the input.

        Rows the journal already holds unchanged are kept, so loading the same input
        again is how a campaign resumes. Unsent rows the input leaves out become
        ``withdrawn``: a run sends only rows of the input last loaded in full.
        ``source`` names the file the rows come from (exports refuse to overwrite it).
        ``on_progress(rows_read)`` is called after each batch.

        Raises ``CampaignError`` (nothing is sent) when a key's row differs from the one
        already sent for it, the input gives a key to two different rows, or it has no
        key in common with the rows the journal holds (another file: the rows it added
        are removed again). If loading stops early, no row is sent until a load completes
        (but rows a new campaign streamed before it stopped are its input already).
        """
        check_callback("on_progress", on_progress)
        check_source(source)
        return await self._load(rows, source, on_progress, None)

    async def _load(
        self,
        rows: Iterable[CampaignRow] | AsyncIterable[CampaignRow],
        source: str | os.PathLike[str] | None,
        on_progress: Callable[[int], None] | None,
        feed: Feed | None,
    ) -> LoadSummary:
        """:meth:`load`; with a ``feed``, a new campaign's rows can be sent as they are
        loaded (the feed tells the run about each batch)."""
        journal = self._sender()
        read = added = replaced = known = 0
        batch: list[LoadedRow] = []
        named = None
        if source is not None:
            named = str(await asyncio.to_thread(Path(os.fspath(source)).resolve))
        load, streams = await journal.begin_load(named, stream=feed is not None)

        async def flush() -> None:
            nonlocal read, added, replaced, known
            try:
                new, more_replaced, more_known = await journal.load(batch, load)
            except CampaignError as exc:  # a key's row: streamed rows may be out already
                if streams:
                    raise
                if isinstance(exc, KeyChanged):
                    raise KeyChanged(
                        f"{exc.message} Nothing was sent.", key=exc.key, state=exc.state
                    ) from None
                raise CampaignError(f"{exc.message} Nothing was sent.") from None
            read += len(batch)
            added, replaced, known = added + len(new), replaced + more_replaced, known + more_known
            if feed is not None and streams:
                feed.added(new)
            batch.clear()
            if on_progress is not None:
                on_progress(read)

        if feed is not None:
            feed.streams = streams
            feed.added()  # the run now knows whether it may send before the load ends
        if not streams:  # nothing is sent meanwhile: commits need not wait for the disk
            await journal.set_durable(False)
        loaded = loader(self._kind)
        try:
            if isinstance(rows, AsyncIterable):
                async for row in async_items(rows, "campaign"):
                    batch.append(loaded(row))
                    if len(batch) >= (_FIRST_BATCH if read == 0 and streams else _LOAD_BATCH):
                        await flush()
            else:  # a plain iterable: no await per row (the loop runs between batches)
                for row in rows_of(rows):
                    batch.append(loaded(row))
                    if len(batch) >= (_FIRST_BATCH if read == 0 and streams else _LOAD_BATCH):
                        await flush()
            if batch:
                await flush()
        finally:
            await journal.set_durable(True)
        withdrawn = await journal.end_load(load, known, named)
        self.loaded = LoadSummary(read, added, replaced, withdrawn, known)
        return self.loaded

    async def run(
        self,
        aicc: AICCClient,
        *,
        concurrency: int | Literal["auto"] | None = None,
        rate: float | Literal["auto"] | AutoRate | None = None,
        retry_unknown: bool = False,
        retry_failed: bool = False,
        allow_repeat_numbers: bool = False,
        target: Target | None = None,
        callback_url: str | None = None,
        rows: Iterable[CampaignRow] | AsyncIterable[CampaignRow] | None = None,
        source: str | os.PathLike[str] | None = None,
        on_load: Callable[[int], None] | None = None,
        on_progress: Callable[[StateCounts], None] | None = None,
        max_throttled: float = DEFAULT_MAX_THROTTLED,
        calling_hours: str | None = None,
        timezone: str | None = None,
        no_wait: bool = False,
        do_not_call: Sequence[str | os.PathLike[str]] = (),
        attempts: int = 1,
        redial_after: str | int = "30m",
        contact_history: str | os.PathLike[str] | None = None,
        max_calls_per_number: str | None = None,
        wait_outcomes: float = 120.0,
        clock: WallClock | None = None,
    ) -> StateCounts:
        """Send every ``pending`` row of the latest input through ``aicc``; returns the
        counts afterwards.

        Args:
            concurrency: rows in flight at once; default and maximum: the client's
                limit for the endpoint group (``limits=``) and its ``max_connections``.
                ``"auto"``: the rate times the latency observed (Little's law), within
                that maximum.
            rate: at most this many rows started per second; ``"auto"`` (or an
                ``AutoRate``, with a ceiling): find the tenant's limit from AICC's
                answers (see :attr:`rate_limiter`).
            max_throttled: rows answered "throttled" (HTTP 429, a busy code: not
                processed) go back to the queue and are sent later; the run stops
                (``AICCRateLimitError`` or ``AICCBusinessError``, rows pending) only
                after this many seconds of throttle answers without one success.
            retry_unknown: send ``unknown`` rows again. For a voice campaign this
                phones anyone whose call went through a second time.
            retry_failed: send rows that AICC refused again (not invalid input).
            allow_repeat_numbers: phone a number once per row that has it. By default
                a voice campaign phones a number once: later rows with a number already
                used are recorded ``duplicate`` and not sent.
            target: where ``aicc`` sends, as the journal records it; default: its
                base URL and app key.
            callback_url: where AICC posts each call's release event, for the rows
                that name no ``callback_url`` of their own (voice campaigns).
            rows, source, on_load: the campaign's whole input, loaded first (as by
                :meth:`load`; :attr:`loaded` tells what it did). A new campaign does
                not wait: its rows are sent as they are loaded, so the first request
                leaves at once however long the input. A load that fails stops the run
                (the rows in flight finish) and its ``CampaignError`` is raised.
            on_progress: called with the counts after each journal commit (and while
                the run waits: :attr:`waiting` says for what).
            calling_hours: ``"mon-fri 09:00-20:00, sat 10:00-16:00"``: a row starts only
                inside one of these windows in its zone (its ``timezone``, else
                ``timezone``, else the machine's). The run sleeps until the next window.
            no_wait: when every row left waits (calling hours, a redial), return at once
                instead of sleeping (:attr:`waiting` says until when); release events of
                calls placed are still waited for (``wait_outcomes``): their redials are
                scheduled from them.
            do_not_call: files of numbers never to phone (one per line, or a CSV with a
                ``called`` column): such rows become ``suppressed``. Re-read when they
                change; one that cannot be read pauses the run.
            attempts, redial_after: a row whose release event says not answered is
                called again ``redial_after`` (``"90s"``, ``"30m"``, ``"2h"`` or seconds)
                after it, within the rules above, until ``attempts`` calls in all. Rows
                whose outcome is unknown or whose event did not come within
                ``wait_outcomes`` seconds of their call are never redialed.
            contact_history, max_calls_per_number: record every call in this SQLite
                file or PostgreSQL database (shared by campaigns and workers); with
                ``"N/PERIOD"`` (``"3/7d"``) a row whose number had N calls within PERIOD
                is ``limited``: not phoned now, checked again by a later run.
            clock: the time of day the run goes by (tests).

        A stop (:meth:`stop`) lets the rows in flight finish. Cancelling the run
        records the rows in flight as ``unknown`` (write-back: ``pending``). Raises
        ``CampaignError`` (nothing sent) if the journal belongs to another target or
        no input was loaded in full; ``AICCAuthError`` (bad credentials) or
        ``AICCConnectionError`` (AICC unreachable, or a failure before a request left)
        after stopping early, the affected rows still ``pending``; ``JournalError`` if
        the journal cannot be written; ``AICCValidationError`` for bad arguments.
        """
        settings = RunSettings.check(
            self._kind,
            aicc,
            concurrency=concurrency,
            rate=rate,
            retry_unknown=retry_unknown,
            retry_failed=retry_failed,
            allow_repeat_numbers=allow_repeat_numbers,
            callback_url=callback_url,
            on_progress=on_progress,
            max_throttled=max_throttled,
        )
        check_callback("on_load", on_load)
        check_source(source)
        dialing = DialerSettings.check(
            calling_hours=calling_hours,
            timezone=timezone,
            no_wait=no_wait,
            do_not_call=do_not_call,
            attempts=attempts,
            redial_after=redial_after,
            contact_history=contact_history,
            max_calls_per_number=max_calls_per_number,
            wait_outcomes=wait_outcomes,
            clock=clock,
            callbacks=self._kind.with_callback is not None,
        )
        if self._running:
            raise CampaignError(f"{self._location}: this campaign is already running")
        if aicc.closed:
            raise AICCConnectionError(
                "this AICCClient is closed; create a new one. Nothing was sent.",
                endpoint="campaign",
            )
        self.rate_limiter = settings.rate_limiter
        self._running, self._stopped = True, False
        self.waiting = None
        self._wake.clear()
        self._clock = dialing.clock
        try:
            if target is None:
                target = Target(aicc.config.base_url, aicc.config.app_key)
            await self.bind(target)
            # The campaign as the contact history names it: one name per journal.
            named = self._location if self.path is None else str(self.path.resolve())
            journal = self._journal
            share = journal.share_do_not_call if journal.shared else None
            async with Dialer(dialing, named, share) as dialer:
                await self._restore_history(dialer)
                if rows is not None and dialing.hours is not None:
                    # Every row's zone is checked before the first call: no streaming.
                    await self._load(rows, source, on_load, None)
                    rows = None
                if rows is not None:
                    return await self._stream(
                        settings.sender, rows, source, on_load, settings, dialer
                    )
                return await self._send(settings.sender, settings, dialer)
        finally:
            self._running = False

    async def _stream(
        self,
        aicc: AICCClient,
        rows: Iterable[CampaignRow] | AsyncIterable[CampaignRow],
        source: str | os.PathLike[str] | None,
        on_load: Callable[[int], None] | None,
        settings: RunSettings,
        dialer: Dialer,
    ) -> StateCounts:
        """Load ``rows`` and send them: at once for a new campaign, after the load else."""
        feed = self._feed = Feed()
        decided = asyncio.ensure_future(feed.changed().wait())  # streams or not
        loading = asyncio.ensure_future(self._load(rows, source, on_load, feed))
        try:
            await asyncio.wait({loading, decided}, return_when=asyncio.FIRST_COMPLETED)
            if not feed.streams:
                await loading  # a resume: the whole input first (raises if it failed)
                return await self._send(aicc, settings, dialer)
            loading.add_done_callback(
                lambda task: feed.close(None if task.cancelled() else task.exception())
            )
            counts = await self._send(aicc, settings, dialer, feed)
            if self._stopped and not loading.done():  # the rest of the input can wait
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
                return counts
            try:
                await loading  # raises the load's error, after the rows in flight finished
            except CampaignError as exc:
                sent = counts.total - counts.pending
                raise CampaignError(
                    f"{exc.message} Reading stopped there; {sent:,} rows before it were "
                    f"already sent or recorded in {self._location}. Fix the input and run it "
                    "again with the same journal: what was sent is never sent again."
                ) from None
            return counts
        finally:
            self._feed = None
            decided.cancel()
            if not loading.done():
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)

    async def _send(
        self, aicc: AICCClient, settings: RunSettings, dialer: Dialer, feed: Feed | None = None
    ) -> StateCounts:
        kind = self._kind
        if feed is None and await self._journal.current_load() is None:
            raise CampaignError(
                f"{self._location}: no input was loaded in full (the last load stopped early); "
                "load the input again. Nothing was sent."
            )
        if settings.retry_unknown and not kind.idempotent:
            unknown = (await self._journal.counts()).unknown
            if unknown:
                logger.warning("sending %d rows whose outcome was unknown again", unknown)
        if feed is None:
            counts = await self._journal.requeue(
                unknown=settings.retry_unknown or kind.idempotent,
                failed=settings.retry_failed,
                duplicate=settings.allow_repeat_numbers,
            )
        else:  # a new campaign: nothing to requeue, every row arrives through the feed
            counts = StateCounts()
        rules = dialer.settings
        if rules.hours is not None:  # the zones the rows name, open or not from the start
            dialer.know_zones(
                await self._journal.backlog(rules.attempts, rules.wait_outcomes, rules.clock.time())
            )
        try:
            counts = await self._pass(aicc, settings, counts, feed, dialer)
            if self._journal.shared:
                counts = await self._finish_with_others(aicc, settings, dialer)
            if dialer.settings.active:
                counts = await self._dial_on(aicc, settings, dialer, counts)
            return counts
        finally:
            try:
                await self._journal.checkpoint()
            except (CampaignError, JournalError):  # the run's own error (if any) says more
                logger.warning("could not checkpoint the journal %s", self._location)

    async def _restore_history(self, dialer: Dialer) -> None:
        """Record this campaign's calls in the contact history again (those it holds
        already are left as they are): a history file can lose its last entries to a
        power cut, and a call must count against its number's limit all the same."""
        if dialer.history is None:
            return
        after, page = 0, _LOAD_BATCH
        while calls := await self._journal.calls(after, page):
            if len(calls) == page and calls[0][0] != calls[-1][0]:
                calls = [c for c in calls if c[0] != calls[-1][0]]  # its last row whole next
            after = calls[-1][0]
            await dialer.restore(
                [(key, number, attempt, at) for _, key, number, attempt, at in calls]
            )

    async def _dial_on(
        self, aicc: AICCClient, settings: RunSettings, dialer: Dialer, counts: StateCounts
    ) -> StateCounts:
        """After a pass: schedule the redials, then send what may start, or wait (say
        for what in :attr:`waiting`) until something may, until nothing is left to wait
        for (``no_wait``: return instead of waiting). A stop returns at once."""
        rules = dialer.settings
        journal = self._journal
        while not self._stopped:
            backlog = await journal.backlog(rules.attempts, rules.wait_outcomes, rules.clock.time())
            # After the backlog: an event heard in between is scheduled now (its row no
            # longer awaits it), and the backlog is read again.
            if rules.attempts > 1 and await journal.redial(
                rules.attempts, rules.redial_after, rules.wait_outcomes
            ):
                continue
            dialer.know_zones(backlog)
            if dialer.startable(backlog):
                self.waiting = None
                before = counts
                counts = await self._pass(aicc, settings, await journal.counts(), None, dialer)
                if journal.shared:
                    counts = await self._finish_with_others(aicc, settings, dialer)
                if counts == before:  # another worker holds them: look again shortly
                    await dialer.nap(None)
                continue
            self.waiting = dialer.waiting(backlog)
            if backlog.beyond:
                logger.warning(
                    "%d rows were scheduled for a redial that attempts=%d does not allow: "
                    "they stay pending (a run with more attempts calls them)",
                    backlog.beyond,
                    rules.attempts,
                )
            # no_wait still waits for the release events of calls placed (their redials
            # are scheduled from them); it returns when only hours or redial times are left.
            if self.waiting is None or (rules.no_wait and not backlog.awaiting):
                break
            if settings.on_progress is not None:
                settings.on_progress(counts)  # shows what the run waits for
            nap = asyncio.ensure_future(dialer.nap(self.waiting.until))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({nap, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (nap, woken):
                    task.cancel()
                await asyncio.gather(nap, woken, return_exceptions=True)
            counts = await journal.counts()
        return await journal.counts()

    async def _pass(
        self,
        aicc: AICCClient,
        settings: RunSettings,
        counts: StateCounts,
        feed: Feed | None,
        dialer: Dialer,
    ) -> StateCounts:
        """One engine run over the pending rows (and those ``feed`` brings)."""
        self._engine = Engine(
            self._journal,
            self._kind,
            aicc,
            concurrency=settings.concurrency,
            pacer=settings.pacer,
            counts=counts,
            once_per_number=not settings.allow_repeat_numbers,
            callback_url=settings.callback_url,
            on_progress=settings.on_progress,
            feed=feed,
            max_throttled=settings.max_throttled,
            auto_concurrency=settings.auto_concurrency,
            limiter=self.rate_limiter,
            gate=dialer.gate if dialer.gates else None,
            admit=dialer.admit if dialer.history is not None else None,
        )
        self._engine.stopping = self._stopped
        try:
            return await self._engine.run()
        finally:
            self._requeued += self._engine.requeued
            self._engine = None

    async def _finish_with_others(
        self, aicc: AICCClient, settings: RunSettings, dialer: Dialer
    ) -> StateCounts:
        """A journal other workers share: once this worker ran out of rows, wait until no
        row is in flight on any worker (a dead worker's are settled once its lease
        expired), sending the rows that come back ``pending`` meanwhile; returns the
        whole campaign's counts. A stop returns at once."""
        told = False
        while not self._stopped:
            counts = await self._journal.counts()
            if counts.pending:
                await self._pass(aicc, settings, counts, None, dialer)
                after = await self._journal.counts()
                if after.pending < counts.pending:
                    continue  # it sent some: look again at once
                counts = after
            if not counts.sending:
                return counts
            if not told:
                logger.info(
                    "waiting for %d rows in flight on other workers of %s",
                    counts.sending,
                    self._location,
                )
                told = True
            await self._journal.recover(idempotent=self._kind.idempotent)
            await asyncio.sleep(_OTHERS_POLL)
        return await self._journal.counts()

    @property
    def requeued(self) -> int:
        """Rows answered "throttled" (HTTP 429, busy: not processed) that went back to
        the queue to be sent later, in this object's runs (the current one included)."""
        engine = self._engine
        return self._requeued + (0 if engine is None else engine.requeued)

    def stop(self) -> None:
        """Stop the current run: no new row is sent, the rows in flight finish."""
        self._stopped = True
        self._wake.set()
        if self._engine is not None:
            self._engine.stopping = True
        if self._feed is not None:
            self._feed.added()  # wakes a run waiting for more input

    async def report(self) -> CampaignReport:
        """The row counts, problems, target and call outcomes of this campaign, and what
        throttling did: this process's run's, or the journal's record of every run."""
        if self.rate_limiter is not None or self.requeued:
            samples = () if self.rate_limiter is None else self.rate_limiter.samples
            requeued = self.requeued
            throttled = 0 if self.rate_limiter is None else self.rate_limiter.throttled
        else:
            samples, requeued, throttled = rate_over_time(await self._journal.rate_history())
        return CampaignReport(
            self._location,
            self.kind,
            await self._journal.counts(),
            tuple(await self._journal.problems()),
            await self._journal.target(),
            await self._journal.outcomes(),
            samples,
            requeued,
            throttled,
            await self._journal.attempts(),
        )

    async def outcomes(self) -> Outcomes:
        """The call outcomes recorded so far (what :meth:`report` holds, read alone)."""
        return await self._journal.outcomes()

    async def activity(self) -> Activity:
        """Rows sent per minute and answered calls by talk duration (the HTML report's
        timeline and histogram), counted in the journal."""
        return await self._journal.activity()

    async def record_outcome(self, event: ReleaseEvent) -> bool:
        """Record a release event on the row whose call it reports (answered or not,
        release reason, talk duration, release time). An event whose serial number is
        on no row settles the one ``unknown`` row of its called number sent before it
        (``done``: AICC placed that call; never sent again). Returns False, and logs,
        when no row took it: the event is kept and recorded on the row when its send
        is. Recording an event again changes nothing."""
        outcome = Outcome(
            answered=event.answered,
            release_reason=event.release_reason,
            talk_duration=event.talk_duration,
            release_time=None if event.release_time is None else event.release_time.isoformat(),
        )
        found = await self._journal.record_outcome(
            event.call_serial_no,
            outcome,
            number=normalise_number(event.called),
            now=self._clock.time(),
        )
        if not found:
            logger.warning(
                "the release event of call %s matches no row of %s (yet): kept, and "
                "recorded if a row with that call is",
                event.call_serial_no,
                self._location,
            )
        return found

    async def call_attempts(self, key: str) -> list[dict[str, Any]]:
        """Every call of the row ``key``, first to last (redials included): ``attempt``,
        ``number``, ``reference`` (the call serial number), ``outcome``
        (``"answered"``, ``"not_answered"`` or ``None``), ``release_reason``,
        ``talk_duration``, ``release_time``, ``sent`` and ``heard`` (UNIX times: when it
        was sent, when its release event came)."""
        return await self._journal.call_attempts(key)

    async def has_outcome(self, call_serial_no: str) -> bool:
        """True when the outcome of that call is recorded already."""
        return await self._journal.has_outcome(call_serial_no)

    def callback_receiver(
        self, shared_key: str | None, *, allow_unsigned: bool = False, **options: Any
    ) -> CallbackReceiver:
        """A :class:`~aicc_async.callbacks.CallbackReceiver` that records each release
        event in this campaign's journal, once (the journal also answers whether an
        event was recorded before), and counts the events it refuses there, by reason
        (:attr:`Outcomes.refused`). ``options`` go to the receiver (an ``on_refused``
        of theirs is awaited after the journal counted the event)."""

        async def record(event: ReleaseEvent) -> None:
            await self.record_outcome(event)

        also = options.pop("on_refused", None)

        async def refused(reason: str) -> None:
            await self._journal.record_refused(reason)
            if also is not None:
                await also(reason)

        return CallbackReceiver(
            shared_key,
            on_event=record,
            allow_unsigned=allow_unsigned,
            seen=self.has_outcome,
            on_refused=refused,
            **options,
        )

    async def unanswered_rows(self) -> AsyncIterator[dict[str, Any]]:
        """Rows whose call was not answered, in input order: ``key`` and ``fields``."""
        after = 0
        while rows := await self._journal.unanswered_rows(after, 1000):
            for seq, key, payload in rows:
                after = seq
                yield {"key": key, "fields": Journal.loads(payload)}

    async def problem_rows(self) -> AsyncIterator[dict[str, Any]]:
        """Failed, unknown and duplicate rows in input order, each as a dict: ``key``,
        ``state``, ``code``, ``description``, ``reference`` and the row's ``fields``."""
        after = 0
        while rows := await self._journal.problem_rows(after, 1000):
            for row in rows:
                after = row.seq
                yield {
                    "key": row.key,
                    "state": row.state,
                    "code": row.code,
                    "description": row.description,
                    "reference": row.reference,
                    "fields": Journal.loads(row.payload),
                }

    async def close(self) -> None:
        """Close the journal. Safe to call more than once."""
        opened, self._opened = self._opened, None
        if opened is not None:
            await opened[0].close()

    async def __aenter__(self) -> Campaign:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
