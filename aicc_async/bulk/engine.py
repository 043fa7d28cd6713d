"""The send loop of a campaign run: claim rows, send them, commit their outcomes.

Each turn commits the outcomes that came in and claims as many ``pending`` rows as
slots just freed, in one transaction, then starts them. So the journal never holds
more ``sending`` rows than the concurrency, and a row is ``sending`` on disk before
its request leaves.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from aicc_async._log import ROW
from aicc_async._transport import Endpoint
from aicc_async.adaptive import AdaptiveRate, is_throttle_signal
from aicc_async.bulk.journal.rules import (
    INTERRUPTED,
    INVALID,
    Claimed,
    Finished,
    Gate,
    Journal,
    RatePoint,
    State,
    StateCounts,
)
from aicc_async.errors import AICCBusinessError, AICCError, AICCValidationError, Sent
from aicc_async.throttle import RateCap

if TYPE_CHECKING:
    from aicc_async.client import AICCClient

__all__ = ["DEFAULT_MAX_THROTTLED", "Engine", "Feed", "Kind", "little"]

_FEED_POLL = 0.02  # seconds between looks for newly loaded rows while rows are in flight
_LINGER = 0.002  # seconds an outcome may wait for others to share its journal commit
_SHARED_COUNTS_EVERY = 1.0  # seconds between reads of a shared campaign's counts
#: Seconds of throttle answers without one success after which a run gives up.
DEFAULT_MAX_THROTTLED = 600.0

logger = logging.getLogger(__name__)


@attrs.frozen
class Kind:
    """What a campaign sends: the endpoint (its descriptor gives the request class, the
    throttle group and whether a resend is harmless) and how to send one."""

    name: str
    endpoint: Endpoint[Any]
    send: Callable[[AICCClient, Any], Awaitable[Any]]
    """``send(client, request)``: the endpoint's ``send`` method."""
    reference: Callable[[Any], str | None]
    """What to keep of a result (the voice call's serial number)."""
    number: Callable[[Any], str | None]
    """The number a request phones (``None``: it phones nobody)."""
    with_callback: Callable[[Any, str], Any] | None = None
    """``with_callback(request, url)``: the request with ``url`` as its release-event
    callback unless it has one (``None``: this kind has no callbacks)."""
    _fields: tuple[str, ...] = attrs.field(
        init=False,
        repr=False,
        # The request classes' fields are plain values: attrs.asdict without its
        # per-call walk over the class (the row's hottest step while loading).
        default=attrs.Factory(
            lambda kind: tuple(f.name for f in attrs.fields(kind.request_type)), takes_self=True
        ),
    )

    @property
    def request_type(self) -> type[Any]:
        """The endpoint's request class."""
        assert self.endpoint.request_type is not None
        return self.endpoint.request_type

    def payload(self, request: Any) -> str:
        """``request`` as the journal keeps it: its fields as canonical JSON (the one way
        a row goes in; :meth:`request` is the one way back)."""
        return Journal.dumps({name: getattr(request, name) for name in self._fields})

    def request(self, payload: str) -> Any:
        """The request a :meth:`payload` holds (checked again by its class: ``TypeError``
        or ``AICCValidationError`` for a payload that no longer fits it)."""
        return self.request_type(**Journal.loads(payload))

    @property
    def group(self) -> str:
        """The endpoint's throttle group."""
        return self.endpoint.group or ""

    @property
    def idempotent(self) -> bool:
        """Whether sending a row twice is harmless."""
        return self.endpoint.idempotent


class Feed:
    """Rows being loaded while a run sends them (a new campaign streams its input).

    The loader calls :meth:`added` after each batch and :meth:`close` at the end (with
    the error that stopped it, if any); the engine claims what has been loaded so far
    and waits for more while :attr:`loading`.
    """

    def __init__(self) -> None:
        self.loading = True
        self.streams = False
        """Set by the loader: True when rows can be sent before the load is complete."""
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._new: list[State] = []

    def take_new(self) -> list[State]:
        """The states of the rows recorded since the last call (for the run's counts)."""
        new, self._new = self._new, []
        return new

    def changed(self) -> asyncio.Event:
        """An event set by the next batch (take it before looking for rows)."""
        return self._changed

    def added(self, states: Sequence[State] = ()) -> None:
        """A batch of rows was recorded, in these ``states`` (pending, or failed)."""
        self._new.extend(states)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self, error: BaseException | None = None) -> None:
        """Loading is over (``error``: it failed)."""
        self.loading = False
        self.error = error
        self.added()


def little(rate: float, latency: float | None, most: int) -> int:
    """Requests in flight that ``rate`` per second needs when each takes ``latency``
    seconds (Little's law), with a margin for jitter; at least 1, at most ``most``
    (all of them until a latency was seen)."""
    if latency is None:
        return most
    return max(1, min(most, math.ceil(rate * latency * 1.25) + 2))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _code(status: int | None, fallback: str) -> str:
    return fallback if status is None else f"HTTP {status}"


class Engine:
    """One run of a campaign; :meth:`run` once."""

    def __init__(
        self,
        journal: Journal,
        kind: Kind,
        client: AICCClient,
        *,
        concurrency: int,
        pacer: RateCap | AdaptiveRate | None,
        counts: StateCounts,
        once_per_number: bool,
        callback_url: str | None,
        on_progress: Callable[[StateCounts], None] | None,
        feed: Feed | None = None,
        max_throttled: float = DEFAULT_MAX_THROTTLED,
        auto_concurrency: bool = False,
        limiter: AdaptiveRate | None = None,
        gate: Callable[[], Gate | None] | None = None,
        admit: Callable[[Sequence[Claimed]], Awaitable[list[Finished]]] | None = None,
    ) -> None:
        self._journal = journal
        self._kind = kind
        self._client = client
        self._concurrency = concurrency
        self._pacer = pacer
        self.counts = counts
        self._once_per_number = once_per_number
        self._callback_url = callback_url
        self._feed = feed
        self._on_progress = on_progress
        self.stopping = False
        self.halt: AICCError | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._finished: list[Finished] = []
        """Outcomes not yet committed (their slots are free)."""
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0  # the waiter is woken once this many outcomes are in
        self._cursor = 0
        self._counted_at = -math.inf  # when the shared campaign's counts were last read
        self._clock = client.config.clock
        self._max_throttled = max_throttled
        self._last_success = self._clock()
        self._requeued = 0  # rows sent back to pending since the last commit
        self._auto_concurrency = auto_concurrency
        self._limiter = limiter  # rate="auto": whether it paces here or in the client
        self._latency: float | None = None  # seconds a send takes (moving average)
        self._gate = gate
        """Which rows may start now (the dialer's rules); ``None`` from it: none may."""
        self._admit = admit
        """Records the claimed rows' calls before they go; returns those refused."""
        self._failure: Exception | None = None
        """Why the contact history could not admit a batch: raised once the rows in
        flight finished."""
        self.requeued = 0
        """Rows answered "throttled" (429, busy) that went back to the queue this run."""
        # What the journal's rate history holds of this run: (answers, throttle answers
        # heard by the limiter, rows re-queued).
        self._noted = (0, 0, 0) if limiter is None else (limiter.sent, limiter.throttled, 0)

    async def run(self) -> StateCounts:
        """Send every pending row (until stopped or halted); returns the final counts.

        Raises the ``AICCAuthError`` / ``AICCConnectionError`` that halted the run, or
        the error of a contact history that could not admit a batch (that batch is
        never sent), after the rows in flight finished and were recorded.
        """
        exhausted = starved = False
        feed = self._feed
        try:
            while True:
                if feed is not None:
                    self.counts = self.counts.added(feed.take_new())
                if self._requeued:
                    exhausted = False  # throttled rows went back to pending: send them later
                want = 0
                gate = None if self._gate is None else self._gate()
                if self._gate is not None and gate is None:
                    exhausted = True  # no row may start now: the run says why and waits
                if not (exhausted or self.stopping or self.halt):
                    want = self._in_flight_wanted() - len(self._tasks)
                    if self._pacer is not None:
                        want = self._pacer.take(want)
                if self._finished or want > 0:
                    loading = feed is not None and feed.loading
                    changed = None if feed is None else feed.changed()
                    claimed = await self._commit(want, gate)
                    # Short of rows: the input is exhausted, unless more is being loaded.
                    starved = len(claimed) < want and loading
                    exhausted = exhausted or (len(claimed) < want and not loading)
                    for row in claimed:
                        self._tasks[row.seq] = asyncio.create_task(self._send(row))
                if feed is not None and feed.error is not None and self.halt is None:
                    self.stopping = True  # the load failed: send nothing more
                if not self._tasks:
                    if self._finished:
                        continue  # outcomes that came in during the commit: commit them
                    if exhausted or self.stopping or self.halt:
                        break
                    delay = 0.0 if self._pacer is None else self._pacer.delay()
                    if delay > 0:  # the rate cap holds rows back
                        await asyncio.sleep(delay)
                    elif starved and changed is not None and not changed.is_set():
                        await changed.wait()  # the next batch of the input (or a stop)
                    else:
                        await asyncio.sleep(0)
                    continue
                timeout = None
                if starved:
                    timeout = _FEED_POLL
                elif not (exhausted or self.stopping) and self._pacer is not None:
                    timeout = self._pacer.delay()
                await self._next_outcome(timeout)
        except BaseException:
            await self._abandon()
            raise
        await self._journal.flush_rate()
        if self._failure is not None:
            raise self._failure
        if self.halt is not None:
            raise self.halt
        return self.counts

    def _note_rate(self) -> None:
        """Hand the journal this run's rate and counts since the last note: it writes
        them with a commit about once a second (never a transaction of their own)."""
        limiter = self._limiter
        sent, throttled = (0, 0) if limiter is None else (limiter.sent, limiter.throttled)
        counts = (sent, throttled, self.requeued)
        if counts == self._noted and limiter is None:
            return
        was, self._noted = self._noted, counts
        self._journal.note_rate(
            RatePoint(
                time.time(),
                None if limiter is None else limiter.rate,
                *(now - before for now, before in zip(counts, was, strict=True)),
            )
        )

    def _in_flight_wanted(self) -> int:
        """The concurrency: as set, or (``auto``) what the rate needs at the latency seen."""
        if not self._auto_concurrency or self._pacer is None:
            return self._concurrency
        rate = (
            self._pacer.rate if isinstance(self._pacer, AdaptiveRate) else 1 / self._pacer.interval
        )
        return little(rate, self._latency, self._concurrency)

    def _took(self, finished: Finished) -> None:
        """An outcome came in: its slot is free, its row waits for the next commit."""
        self._tasks.pop(finished.seq, None)
        self._finished.append(finished)
        waiter = self._waiter
        if waiter is not None and (len(self._finished) >= self._wanted or not self._tasks):
            _wake(waiter)

    async def _next_outcome(self, timeout: float | None) -> None:
        """Wait for the next outcome (at most ``timeout``), then linger briefly for more:
        each journal commit has a fixed cost (a disk sync), so outcomes and the claims
        that refill their slots go in batches of about a tenth of the concurrency."""
        if not self._finished:
            await self._wait(1, timeout)
        batch = max(1, self._concurrency // 10)
        if self._finished and len(self._finished) < batch and self._tasks:
            await self._wait(batch, _LINGER)

    async def _wait(self, count: int, timeout: float | None) -> None:
        """Until ``count`` outcomes are in, none is in flight, or ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._wanted = count
        timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _commit(self, claim: int, gate: Gate | None = None) -> list[Claimed]:
        finished, self._finished = self._finished, []
        cursor = self._cursor
        if self._requeued:  # rows went back to pending behind the cursor: look from the start
            cursor, self._requeued = 0, 0
        self._note_rate()
        commit = asyncio.ensure_future(
            self._journal.commit(
                finished, claim, cursor, once_per_number=self._once_per_number, gate=gate
            )
        )
        cancelled: asyncio.CancelledError | None = None
        try:
            claim_ = await asyncio.shield(commit)
        except asyncio.CancelledError as exc:
            claim_ = await commit  # the transaction goes on in its thread regardless
            cancelled = exc
        claimed = claim_.rows
        self._cursor = claim_.cursor
        if self._feed is not None:  # rows loaded meanwhile: count them before moving any
            self.counts = self.counts.added(self._feed.take_new())
        self.counts = (
            self.counts.moved("sending", [f.state for f in finished])
            .moved("pending", ["sending"] * len(claimed))
            .moved("pending", ["duplicate"] * claim_.duplicates)
            .moved("pending", ["suppressed"] * claim_.suppressed)
        )
        try:
            if cancelled is not None:
                raise cancelled
            if self._admit is not None and claimed:
                claimed = await self._admitted(claimed)  # before any of them is sent
            if self._journal.shared:
                await self._count_campaign()
            if self._on_progress is not None:
                self._on_progress(self.counts)
        except BaseException:
            # Rows claimed by that transaction were never sent: give them back.
            self._finished += [Finished(c.seq, "pending") for c in claimed]
            raise
        return claimed

    async def _admitted(self, claimed: list[Claimed]) -> list[Claimed]:
        """The rows of ``claimed`` the contact history admitted; those it refused are
        finished (``limited``). If it fails, none is sent: the run stops once the rows
        in flight finished, and raises its error."""
        assert self._admit is not None
        try:
            refused = await self._admit(claimed)
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
            self.stopping = True
            self._finished += [Finished(c.seq, "pending") for c in claimed]
            return []
        if not refused:
            return claimed
        self._finished += refused
        gone = {f.seq for f in refused}
        return [c for c in claimed if c.seq not in gone]

    async def _count_campaign(self) -> None:
        """Other workers move rows too: read the whole campaign's counts now and then
        (this worker's own moves are counted in between)."""
        now = asyncio.get_running_loop().time()
        if now - self._counted_at >= _SHARED_COUNTS_EVERY:
            self._counted_at = now
            self.counts = await self._journal.counts()

    async def _abandon(self) -> None:
        """Cancel what is in flight and record it (the run is being cancelled or failed)."""
        self._on_progress = None  # it may be what failed
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._commit(0)
            await self._journal.flush_rate()
        except Exception:  # the rows stay 'sending'; opening the journal settles them
            logger.exception("could not record the outcomes of the rows in flight")

    async def _send(self, row: Claimed) -> None:
        ROW.set(row.key)  # named in the request's DEBUG line (this task's context only)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            finished = await self._attempt(row)
        except asyncio.CancelledError:
            state: State = "pending" if self._kind.idempotent else "unknown"
            self._took(
                Finished(
                    row.seq,
                    state,
                    INTERRUPTED,
                    "the run stopped while this row was in flight; AICC may have processed it",
                )
            )
            raise
        if self._auto_concurrency:
            took = loop.time() - began
            latency = self._latency
            self._latency = took if latency is None else latency + (took - latency) / 16
        self._took(finished)

    def _settle(self, seq: int, exc: AICCError) -> Finished:
        """A row's state from what its error says became of the request: it may have
        been processed (``unknown``: never re-sent blindly; an idempotent campaign sends
        it again next run), it was answered with a refusal (``failed``), or it never
        left (``pending``, and the run stops: every other row would fare the same)."""
        if exc.sent is Sent.MAYBE_PROCESSED:
            return Finished(seq, "unknown", _code(exc.status, "no answer"), exc.message)
        if is_throttle_signal(exc):  # 429 or busy: not processed, so it goes back to the queue
            return self._requeue(seq, exc)
        if exc.sent is Sent.NOT_SENT:
            if self.halt is None:
                self.halt = exc
            return Finished(seq, "pending")
        if isinstance(exc, AICCBusinessError):
            return Finished(seq, "failed", exc.code, exc.description or exc.meaning or exc.message)
        return Finished(seq, "failed", _code(exc.status, "refused"), exc.message)

    def _requeue(self, seq: int, exc: AICCError) -> Finished:
        """A row answered "throttled" (HTTP 429, a busy code: not processed) goes back to
        ``pending`` and is sent later; the run stops only once nothing but throttle
        answers came back for ``max_throttled`` seconds."""
        quiet = self._clock() - self._last_success
        if quiet >= self._max_throttled:
            if self.halt is None:
                exc.message = (
                    f"AICC answered every request with a throttle answer for {quiet / 60:.0f} "
                    f"minutes without one success, so the campaign stopped ({exc.message}). "
                    "Nothing throttled was processed. Lower --rate (or use --rate auto), or "
                    "ask the tenant's administrator about its flow-control limit."
                )
                exc.args = (exc.message,)
                self.halt = exc
            return Finished(seq, "pending")
        self._requeued += 1
        self.requeued += 1
        return Finished(seq, "pending")

    async def _attempt(self, row: Claimed) -> Finished:
        seq = row.seq
        try:
            request = self._kind.request(row.payload)
            if self._callback_url is not None and self._kind.with_callback is not None:
                request = self._kind.with_callback(request, self._callback_url)
        except (TypeError, ValueError) as exc:  # AICCValidationError is a ValueError
            return Finished(seq, "failed", INVALID, str(exc))
        try:
            result = await self._kind.send(self._client, request)
        except AICCValidationError as exc:  # this row's input: nothing was sent
            return Finished(seq, "failed", INVALID, exc.message)
        except AICCError as exc:
            return self._settle(seq, exc)
        except Exception as exc:
            # Not an error the SDK knows: it may have come after the request left. Record
            # the row unknown and stop, rather than burn every other row the same way.
            logger.debug("unexpected error sending campaign row %r", row.key, exc_info=True)
            if self.halt is None:
                self.halt = AICCError(
                    f"the campaign stopped on an unexpected error ({type(exc).__name__}: "
                    f"{exc}); the row it was sending is recorded unknown."
                )
            return Finished(seq, "unknown", "internal error", f"{type(exc).__name__}: {exc}")
        self._last_success = self._clock()
        return Finished(
            seq,
            "done",
            reference=self._kind.reference(result),
            callback=getattr(request, "callback_url", None) is not None,
        )
