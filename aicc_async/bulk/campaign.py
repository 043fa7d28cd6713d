"""Journaled bulk campaigns: every row recorded before and after its send, resumable.

```python
async with Campaign("campaign.db", "voice_notification") as campaign:
    await campaign.load(CampaignRow(key=str(i), request=r) for i, r in enumerate(requests))
    counts = await campaign.run(aicc)          # pending -> sending -> done|failed|unknown
```

States: ``done`` (AICC processed it), ``failed`` (AICC refused it or the input was
invalid; nobody was called), ``unknown`` (it may have been processed: a timeout,
a reset or a gateway error after sending, or a run stopped while it was in
flight). ``unknown`` rows of a voice campaign are never sent again unless a run
asks for exactly that (``retry_unknown=True``); a write-back campaign (idempotent)
re-sends them on its next run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, get_args

import attrs

from aicc_async.bulk.engine import Engine, Kind, Pacer
from aicc_async.bulk.fanout import async_items, check_concurrency
from aicc_async.bulk.journal import INVALID, Journal, LoadedRow, Problem, StateCounts
from aicc_async.endpoints.outbound import WRITE_BACK, WriteBackResultRequest
from aicc_async.endpoints.voice_notification import ENDPOINT as VOICE
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.errors import AICCValidationError, CampaignError

if TYPE_CHECKING:
    from aicc_async.client import AICCClient

__all__ = ["KINDS", "Campaign", "CampaignKind", "CampaignReport", "CampaignRow", "LoadSummary"]

logger = logging.getLogger("aicc_async")

CampaignKind = Literal["voice_notification", "write_back"]

#: What each kind of campaign sends.
KINDS: Mapping[str, Kind] = {
    "voice_notification": Kind(
        name="voice_notification",
        request_type=CreateVoiceNotificationRequest,
        group=VOICE.group or "",
        idempotent=VOICE.idempotent,
        send=lambda aicc, request: aicc.voice_notification.send(request),
        reference=lambda result: result.call_serial_no,
    ),
    "write_back": Kind(
        name="write_back",
        request_type=WriteBackResultRequest,
        group=WRITE_BACK.group or "",
        idempotent=WRITE_BACK.idempotent,
        send=lambda aicc, request: aicc.outbound.send(request),
        reference=lambda result: None,
    ),
}

_LOAD_BATCH = 2000
_MAX_KEY = 256


def _key(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_KEY:
        raise AICCValidationError(
            f"key: must be a non-blank string of at most {_MAX_KEY} characters, got {value!r}",
            field="key",
        )


@attrs.frozen
class CampaignRow:
    """One row of campaign input: its ``key`` and either a ``request`` or, when the
    source row could not become one, ``invalid`` (why) and ``source`` (its values).

    The key names the row across runs: re-running with a different row for a key
    that was already sent raises ``CampaignError``.
    """

    key: str = attrs.field(validator=_key)
    request: CreateVoiceNotificationRequest | WriteBackResultRequest | None = None
    invalid: str | None = None
    source: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if (self.request is None) == (self.invalid is None):
            raise AICCValidationError(
                f"row {self.key!r}: give exactly one of request and invalid", field="request"
            )


@attrs.frozen
class LoadSummary:
    """What :meth:`Campaign.load` did with its input."""

    read: int
    added: int
    """Rows new to the journal."""
    replaced: int
    """Rows that changed but had never been sent (pending, or invalid before)."""

    @property
    def unchanged(self) -> int:
        """Rows the journal already held as given."""
        return self.read - self.added - self.replaced


@attrs.frozen
class CampaignReport:
    """A campaign's state: row counts and its failures grouped by code."""

    path: str
    kind: str
    counts: StateCounts
    problems: tuple[Problem, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (what ``aicc report --json`` prints)."""
        return {
            "journal": self.path,
            "kind": self.kind,
            "rows": self.counts.total,
            "states": attrs.asdict(self.counts),
            "problems": [attrs.asdict(p) for p in self.problems],
        }


def _check_callback(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise AICCValidationError(f"{name}: must be callable or None, got {value!r}", field=name)


def _fingerprint(tag: str, payload: str) -> str:
    return hashlib.sha256(f"{tag}:{payload}".encode()).hexdigest()[:32]


class Campaign:
    """A bulk campaign recorded in the SQLite journal at ``path``.

    Use it as ``async with Campaign(path, kind) as campaign:`` (or ``await
    campaign.open()`` ... ``await campaign.close()``). The journal is created for
    ``kind`` (``"voice_notification"`` or ``"write_back"``) if missing; with
    ``kind=None`` it must exist, whatever its kind. Raises ``AICCValidationError``
    for an unknown ``kind``.
    """

    def __init__(self, path: str | os.PathLike[str], kind: CampaignKind | None = None) -> None:
        if kind is not None and kind not in KINDS:
            raise AICCValidationError(
                f"kind: must be one of {', '.join(get_args(CampaignKind))}, got {kind!r}",
                field="kind",
            )
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise AICCValidationError(
                f"path: must be a file path (str or os.PathLike), got {path!r}", field="path"
            )
        self._path = Path(os.fspath(path))
        self._wanted = kind
        self._opened: tuple[Journal, Kind] | None = None
        self._engine: Engine | None = None

    async def open(self) -> None:
        """Open (or create) the journal.

        Rows a stopped run left ``sending`` are settled: ``unknown`` for a voice
        campaign, ``pending`` for a write-back one. Raises ``CampaignError`` if the
        journal cannot be created or opened, holds another kind of campaign or is in
        use by another process.
        """
        if self._opened is not None:
            return
        journal = await Journal.open(self._path, self._wanted)
        kind = KINDS[journal.kind]
        try:
            settled = await journal.recover(idempotent=kind.idempotent)
        except BaseException:
            await journal.close()
            raise
        if settled:
            logger.warning(
                "%d rows were in flight when the last run of %s stopped: %s",
                settled,
                self._path,
                "they will be sent again"
                if kind.idempotent
                else "their outcome is unknown and they will not be sent again",
            )
        self._opened = journal, kind

    def _open_state(self) -> tuple[Journal, Kind]:
        if self._opened is None:
            raise CampaignError(f"{self._path}: open the campaign first (async with Campaign(...))")
        return self._opened

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
    def path(self) -> Path:
        """The journal file."""
        return self._path

    async def load(
        self,
        rows: Iterable[CampaignRow] | AsyncIterable[CampaignRow],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> LoadSummary:
        """Record ``rows`` in the journal as ``pending`` (invalid ones as ``failed``),
        streaming: memory does not grow with the input.

        Rows the journal already holds unchanged are skipped, so loading the same
        input again is how a campaign resumes. ``on_progress(rows_read)`` is called
        after each batch. Raises ``CampaignError`` when a key's row differs from the
        one already sent for it, or the input gives a key to two different rows
        (nothing of that batch is written, nothing is sent).
        """
        _check_callback("on_progress", on_progress)
        journal = self._journal
        summary = LoadSummary(0, 0, 0)
        batch: list[LoadedRow] = []

        async def flush() -> None:
            nonlocal summary
            added, replaced = await journal.load(batch, load)
            summary = LoadSummary(
                summary.read + len(batch), summary.added + added, summary.replaced + replaced
            )
            batch.clear()
            if on_progress is not None:
                on_progress(summary.read)

        await journal.set_durable(False)
        load = await journal.new_load()
        try:
            async for row in async_items(rows, "campaign"):
                batch.append(self._loaded(row))
                if len(batch) >= _LOAD_BATCH:
                    await flush()
            if batch:
                await flush()
        finally:
            await journal.set_durable(True)
        return summary

    def _loaded(self, row: object) -> LoadedRow:
        if not isinstance(row, CampaignRow):
            raise AICCValidationError(
                f"rows: must hold CampaignRow objects, got {type(row).__name__}", field="rows"
            )
        if row.request is None:
            payload = Journal.dumps(dict(row.source))
            fingerprint = _fingerprint("invalid", f"{payload}:{row.invalid}")
            return LoadedRow(row.key, fingerprint, "failed", payload, INVALID, row.invalid)
        if not isinstance(row.request, self._kind.request_type):
            raise AICCValidationError(
                f"row {row.key!r}: a {self.kind} campaign takes "
                f"{self._kind.request_type.__name__}, got {type(row.request).__name__}",
                field="request",
            )
        payload = Journal.dumps(attrs.asdict(row.request))
        return LoadedRow(row.key, _fingerprint("request", payload), "pending", payload)

    async def run(
        self,
        aicc: AICCClient,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        retry_unknown: bool = False,
        retry_failed: bool = False,
        on_progress: Callable[[StateCounts], None] | None = None,
    ) -> StateCounts:
        """Send every ``pending`` row through ``aicc``; returns the counts afterwards.

        Args:
            concurrency: rows in flight at once; default and maximum: the client's
                limit for the endpoint group (``limits=``).
            rate: at most this many rows started per second.
            retry_unknown: send ``unknown`` rows again. For a voice campaign this
                phones anyone whose call went through a second time.
            retry_failed: send rows that AICC refused again (not invalid input).
            on_progress: called with the counts after each journal commit.

        A stop (:meth:`stop`) lets the rows in flight finish. Cancelling the run
        records the rows in flight as ``unknown`` (write-back: ``pending``). Raises
        ``AICCAuthError`` (bad credentials) or ``AICCConnectionError`` (AICC
        unreachable) after stopping early, the affected rows still ``pending``;
        ``AICCValidationError`` for bad arguments.
        """
        kind = self._kind
        limit = aicc.config.limits[kind.group]
        concurrency = check_concurrency(concurrency, limit, "campaign")
        if concurrency > limit:
            raise AICCValidationError(
                f"concurrency: {concurrency} is above the client's limit of {limit} for "
                f"{kind.group!r}; raise it with AICCClient(limits={{{kind.group!r}: "
                f"{concurrency}}})",
                field="concurrency",
            )
        pacer = None
        if rate is not None:
            if (
                isinstance(rate, bool)
                or not isinstance(rate, (int, float))
                or not (math.isfinite(rate) and rate > 0)
            ):
                raise AICCValidationError(
                    f"rate: must be a number of rows per second > 0, got {rate!r}", field="rate"
                )
            pacer = Pacer(float(rate))
        for name, flag in (("retry_unknown", retry_unknown), ("retry_failed", retry_failed)):
            if not isinstance(flag, bool):
                raise AICCValidationError(f"{name}: must be True or False, got {flag!r}")
        _check_callback("on_progress", on_progress)
        if self._engine is not None:
            raise CampaignError(f"{self.path}: this campaign is already running")
        if aicc.closed:
            raise RuntimeError("this AICCClient is closed; create a new one")
        if retry_unknown and not kind.idempotent:
            unknown = (await self._journal.counts()).unknown
            if unknown:
                logger.warning("sending %d rows whose outcome was unknown again", unknown)
        counts = await self._journal.requeue(
            unknown=retry_unknown or kind.idempotent, failed=retry_failed
        )
        self._engine = Engine(
            self._journal,
            kind,
            aicc,
            concurrency=concurrency,
            pacer=pacer,
            counts=counts,
            on_progress=on_progress,
        )
        try:
            return await self._engine.run()
        finally:
            self._engine = None

    def stop(self) -> None:
        """Stop the current run: no new row is sent, the rows in flight finish."""
        if self._engine is not None:
            self._engine.stopping = True

    async def report(self) -> CampaignReport:
        """The row counts and failures of this campaign."""
        return CampaignReport(
            str(self.path),
            self.kind,
            await self._journal.counts(),
            tuple(await self._journal.problems()),
        )

    async def problem_rows(self) -> AsyncIterator[dict[str, Any]]:
        """Failed and unknown rows in input order, each as a dict: ``key``, ``state``,
        ``code``, ``description``, ``reference`` and the row's fields."""
        after = 0
        while rows := await self._journal.problem_rows(after, 1000):
            for seq, key, state, code, description, reference, payload in rows:
                after = seq
                yield {
                    "key": key,
                    "state": state,
                    "code": code,
                    "description": description,
                    "reference": reference,
                    "fields": Journal.loads(payload),
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
