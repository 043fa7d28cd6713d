"""The campaign journal's rules: every row's key, request and state, recorded before
and after its send. One interface (:class:`Journal`), two backends: a SQLite file for
one process (:mod:`.sqlite`, the default) and PostgreSQL for many workers on one
campaign (:mod:`.postgres`, ``aicc-async[postgres]``); :func:`.opening.open_journal`
picks by the :class:`.location.JournalLocation`. This module imports neither.

A row moves ``pending -> sending -> done | failed | unknown``; rows that leave the
input become ``withdrawn``, and a voice row whose number was already used becomes
``duplicate``. The dialer's rules (:class:`Gate`) make a row ``suppressed`` (its
number on a do-not-call list) or ``limited`` (its number called as often as a contact
limit allows), and a ``done`` row whose call was not answered ``pending`` again for a
redial (:meth:`Journal.redial`; its earlier call kept as an attempt). The ``sending``
mark is committed before the request goes out, so after a crash a row that may have
been sent never looks unsent.

Rules both backends keep (the shared parts live here and in :mod:`.sql`):

* Input arrives in numbered load passes (:meth:`Journal.begin_load`,
  :meth:`Journal.load`, :meth:`Journal.end_load`); only rows of the latest pass
  accepted in full are sent. Unsent rows missing from it become ``withdrawn``. An
  input with no key in common with a non-empty journal is refused and the rows it
  added are deleted again. A key always names the same row once it was sent.
* A journal belongs to one target (:meth:`Journal.bind`).
* Claims (:meth:`Journal.commit`) phone a number once per campaign unless asked
  otherwise: later rows with a number already used become ``duplicate``.
* Rows left ``sending`` by a run that stopped become ``unknown`` (their call may
  have gone out) or, for an idempotent kind, ``pending`` again (:meth:`Journal.recover`).
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import attrs

from aicc_async.errors import CampaignError

__all__ = [
    "TALK_BUCKETS",
    "Activity",
    "Backlog",
    "Claim",
    "Claimed",
    "Finished",
    "Gate",
    "Journal",
    "KeyChanged",
    "LoadedRow",
    "Outcome",
    "Outcomes",
    "Problem",
    "ProblemRow",
    "RatePoint",
    "StateCounts",
    "Target",
]

logger = logging.getLogger(__name__)

State = Literal[
    "pending",
    "sending",
    "done",
    "failed",
    "unknown",
    "withdrawn",
    "duplicate",
    "suppressed",
    "limited",
]
#: Every row state, in :class:`StateCounts` order.
STATES: tuple[State, ...] = get_args(State)
#: The SQL check every backend's ``state`` column keeps.
STATE_CHECK = f"state IN ({', '.join(repr(state) for state in STATES)})"

SCHEMA_VERSION = 3
#: Earlier formats a journal opened to write is upgraded from (read-only, read as is).
UPGRADABLE = (2,)
#: ``code`` of a row whose input could not become a request (it was never sent).
INVALID = "invalid"
#: ``code`` of a row that was in flight when a run stopped.
INTERRUPTED = "interrupted"
#: ``code`` of a row left out of the latest input (it was never sent).
WITHDRAWN = "withdrawn"
#: ``code`` of a row whose number another row of the campaign already used.
DUPLICATE = "duplicate"
#: ``code`` of a row whose outcome was unknown until its release event came.
SETTLED = "settled"
#: ``code`` of a row whose number is on a do-not-call list (it was never sent).
SUPPRESSED = "do_not_call"
#: ``code`` of a row whose number had as many calls as the contact limit allows.
LIMITED = "contact_limit"
SETTLED_DESCRIPTION = (
    "its answer was lost, but the release event of its number shows AICC placed the call"
)

#: Rows whose number counts as used: they were (or are being) sent. Plain SQL that
#: SQLite and PostgreSQL read alike.
_USED = (
    "(state IN ('sending', 'done', 'unknown') "
    f"OR (state = 'failed' AND coalesce(code, '') <> '{INVALID}'))"
)
INTERRUPTED_DESCRIPTION = "was being sent when a run stopped; AICC may have processed it"
WITHDRAWN_DESCRIPTION = "not in the latest input; never sent"

#: The journal's JSON: canonical (sorted keys, no spaces, text as is), one encoder.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))

Mode = Literal["run", "read", "record"]
"""``run``: send; ``read``: read without writing a byte; ``record``: record call
outcomes only, beside a run or after it."""


@attrs.frozen
class StateCounts:
    """How many rows are in each state."""

    pending: int = 0
    sending: int = 0
    done: int = 0
    failed: int = 0
    unknown: int = 0
    withdrawn: int = 0
    """Left out of the latest input before they were sent: never phoned."""
    duplicate: int = 0
    """Not sent: another row of the campaign already used the number."""
    suppressed: int = 0
    """Never phoned: the number is on a do-not-call list."""
    limited: int = 0
    """Not phoned now: the number had as many calls as the contact limit allows within
    its period (a later run checks it again)."""

    @property
    def total(self) -> int:
        """All rows."""
        return sum(attrs.astuple(self))

    @property
    def finished(self) -> int:
        """Rows with a final state (all but pending and sending)."""
        return self.total - self.pending - self.sending

    @property
    def settled(self) -> bool:
        """True when nothing is left to act on: every row is done, withdrawn, duplicate or
        suppressed."""
        return self.done + self.withdrawn + self.duplicate + self.suppressed == self.total

    def added(self, states: Iterable[State]) -> StateCounts:
        """These counts with one more row per item of ``states``."""
        counts = attrs.asdict(self)
        for state in states:
            counts[state] += 1
        return StateCounts(**counts)

    def moved(self, source: State, targets: Iterable[State]) -> StateCounts:
        """These counts after one row per item of ``targets`` left ``source`` for it."""
        counts = attrs.asdict(self)
        for target in targets:
            counts[source] -= 1
            counts[target] += 1
        return StateCounts(**counts)


if tuple(field.name for field in attrs.fields(StateCounts)) != STATES:  # pragma: no cover
    raise TypeError("StateCounts must have one field per State, in the same order")


@attrs.frozen
class Problem:
    """Rows that failed (or whose outcome is unknown) with one code."""

    state: State
    code: str
    count: int
    example: str
    """The description of one such row."""


@attrs.frozen
class ProblemRow:
    """A failed, unknown or duplicate row as :meth:`Journal.problem_rows` reads it."""

    seq: int
    """Its place in the input (rows are read in this order)."""
    key: str
    state: State
    code: str | None
    description: str | None
    reference: str | None
    payload: str
    """Its fields, as the journal's canonical JSON."""


@attrs.frozen
class Target:
    """Where a campaign sends: recorded in its journal on the first run, checked on every
    later one. The app secret is never part of it."""

    base_url: str
    app_key: str
    sandbox: bool = False

    def describe(self) -> str:
        """The target as messages name it."""
        if self.sandbox:
            return "the sandbox (FakeAICC)"
        return f"{self.base_url} (app key {self.app_key})"


@attrs.frozen
class LoadedRow:
    """One input row as the journal stores it."""

    key: str
    fingerprint: str
    state: State
    payload: str
    number: str | None = None
    code: str | None = None
    description: str | None = None
    zone: str | None = None
    """The row's own time zone (an IANA name), if its input gives one."""


@attrs.frozen
class Claimed:
    """A row marked ``sending``: send its payload now."""

    seq: int
    key: str
    payload: str
    number: str | None = None
    attempt: int = 1
    """Which call of the row this is (1: its first)."""


@attrs.frozen
class Gate:
    """Which ``pending`` rows a commit may claim now (the dialer's rules).

    A row scheduled for a redial (``due`` set) is claimed from ``due`` on, and only
    while it had fewer than ``attempts`` calls. With ``zones`` (calling hours), a row
    is claimed only if its own zone is one of them, or it has none and ``unzoned``.
    With ``screen``, a row whose number it returns True for (a do-not-call list) is
    recorded ``suppressed`` instead of being claimed.
    """

    now: float
    """UNIX time (the rows claimed are stamped ``sent`` at it)."""
    attempts: int = 1
    zones: tuple[str, ...] | None = None
    unzoned: bool = True
    screen: Callable[[str], bool] | None = None
    shared_lists: bool = False
    """Also refuse the numbers of the do-not-call lists that the campaign's workers
    shared in its journal (:meth:`Journal.share_do_not_call`)."""


@attrs.frozen
class Backlog:
    """What a campaign's rows wait for (see :meth:`Journal.backlog`)."""

    zones: tuple[tuple[str | None, int], ...] = ()
    """(zone or ``None``, rows) of the ``pending`` rows that may start as far as redial
    times go: calling hours decide."""
    redials: int = 0
    """Rows scheduled for a redial later than now."""
    next_redial: float | None = None
    """When the first of them is due (UNIX time)."""
    beyond: int = 0
    """Rows scheduled for a redial that the run's ``attempts`` does not allow."""
    awaiting: int = 0
    """Rows with calls left whose release event may still come (sent within the wait)."""
    awaiting_until: float | None = None
    """When the last of them stops being waited for (UNIX time)."""


@attrs.frozen
class Claim:
    """What one commit claimed: the rows to send, how many rows it marked ``duplicate``
    instead, and the last ``seq`` it looked at (the next claim starts after it)."""

    rows: list[Claimed]
    duplicates: int
    cursor: int
    suppressed: int = 0
    """Rows recorded ``suppressed`` (on a do-not-call list) instead."""


@attrs.frozen
class Finished:
    """The outcome of one claimed row, to be committed."""

    seq: int
    state: State
    code: str | None = None
    description: str | None = None
    reference: str | None = None
    callback: bool = True
    """Sent with a callback URL: its release event is awaited."""


@attrs.frozen
class Outcome:
    """What a release event said about one row's call."""

    answered: bool
    release_reason: str | None = None
    talk_duration: int | None = None
    release_time: str | None = None
    """ISO 8601, tenant local time, when AICC sent one."""


@attrs.frozen
class Outcomes:
    """Call outcomes of a campaign's ``done`` rows."""

    answered: int = 0
    not_answered: int = 0
    awaiting: int = 0
    """Done rows sent with a callback URL whose release event has not arrived (yet)."""
    reasons: tuple[tuple[str, int], ...] = ()
    """(release reason code, calls), most calls first: every call whose release event
    came, the earlier calls of redialed rows included."""
    refused: tuple[tuple[str, int], ...] = ()
    """(why, events): release events the receiver refused, most first (a wrong shared
    key shows as ``signature``)."""

    unmatched: int = 0
    """Release events kept that no row took: their call serial number is on no row
    (yet), and their number matches no single ``unknown`` row sent before them."""
    settled: int = 0
    """Rows whose outcome was unknown (the answer to their send was lost) and that their
    release event settled: AICC placed the call; they are ``done``."""

    @property
    def refused_events(self) -> int:
        """How many release events were refused, whatever the reason."""
        return sum(count for _, count in self.refused)


class KeyChanged(CampaignError):
    """The input gives ``key``, whose row was already sent (it is in ``state``), another
    row. Nothing of the batch that holds it was written."""

    def __init__(self, message: str, *, key: str, state: str) -> None:
        super().__init__(message)
        self.key = key
        self.state = state


#: Lower bounds (seconds) of the talk-duration ranges :class:`Activity` counts.
TALK_BUCKETS = (0, 10, 30, 60, 120, 300)


@attrs.frozen
class Activity:
    """When a campaign's rows were sent and how long its answered calls lasted, counted
    in the journal (memory does not grow with the campaign)."""

    sent_per_minute: tuple[tuple[int, int], ...] = ()
    """(minute: Unix time // 60, rows sent) in time order, by when each sent row's
    answer (or failure) was recorded: a row's send is within its timeout of it."""
    talk_durations: tuple[tuple[int, int], ...] = ()
    """(lower bound in seconds from :data:`TALK_BUCKETS`, answered calls that lasted
    from it to the next bound), ranges without calls left out."""


@attrs.frozen
class RatePoint:
    """One point of a run's rate history, as the journal keeps it: at ``time`` (Unix
    time) the limiter allowed ``rate`` starts per second (``None``: the run had no
    adaptive rate), and the answers, throttle answers and rows sent back to the queue
    since the previous point of the same run (on PostgreSQL, of the same worker)."""

    time: float
    rate: float | None
    sent: int = 0
    throttled: int = 0
    requeued: int = 0

    def then(self, later: RatePoint) -> RatePoint:
        """This point and ``later`` as one: ``later``'s time and rate, the counts of both."""
        return RatePoint(
            later.time,
            later.rate,
            self.sent + later.sent,
            self.throttled + later.throttled,
            self.requeued + later.requeued,
        )


# -- the rules both backends apply --------------------------------------------------------

#: What the journal holds for a key: (fingerprint, state, code, load pass it was last in).
Known = tuple[str, str, "str | None", int]


@attrs.frozen
class LoadPlan:
    """What one batch of a load pass does to the journal (see :func:`plan_load`)."""

    added: list[LoadedRow]
    """Rows new to the journal."""
    replaced: list[LoadedRow]
    """Rows that replace the never-sent row of their key."""
    seen: list[str]
    """Keys held unchanged (now part of this pass)."""
    revived: list[str]
    """Of ``seen``, the ``withdrawn`` ones: back in the input, ``pending`` again."""

    @property
    def known(self) -> int:
        """Rows whose key the journal already held."""
        return len(self.seen) + len(self.replaced)


def plan_load(rows: Sequence[LoadedRow], known: dict[str, Known], load: int) -> LoadPlan:
    """Decide what ``rows`` of input pass ``load`` do, given what the journal holds for
    their keys (``known``: updated in place as rows are decided).

    A key held with the same fingerprint is kept (a ``withdrawn`` row is revived). With
    a different fingerprint it is replaced if it was never sent (``pending``,
    ``withdrawn``, ``duplicate``, or ``failed`` as invalid input). Raises
    ``CampaignError`` otherwise, or when this pass already gave the key another row.
    """
    plan = LoadPlan([], [], [], [])
    for row in rows:
        old = known.get(row.key)
        if old is None:
            plan.added.append(row)
            known[row.key] = (row.fingerprint, row.state, row.code, load)
            continue
        fingerprint, state, code, loaded = old
        if loaded == load:
            if fingerprint == row.fingerprint:
                continue  # the same row twice in one input: it is one row
            raise CampaignError(
                f"the input gives key {row.key!r} to two different rows: each row needs its own id."
            )
        if fingerprint == row.fingerprint:
            plan.seen.append(row.key)
            known[row.key] = (fingerprint, state, code, load)
            if state == "withdrawn":  # back in the input (a duplicate stays one)
                plan.revived.append(row.key)
            continue
        if state not in ("pending", "withdrawn", "duplicate", "suppressed", "limited") and not (
            state == "failed" and code == INVALID
        ):
            raise KeyChanged(
                f"the input's row for key {row.key!r} differs from the row this journal "
                f"holds for it, which was already sent (state {state}). A key must always "
                "name the same row: restore that row as it was, or give the changed row a "
                "new key. Starting over with a new journal would send every row already "
                "sent again.",
                key=row.key,
                state=state,
            )
        plan.replaced.append(row)
        known[row.key] = (row.fingerprint, row.state, row.code, load)
    return plan


def sort_claims(
    found: Sequence[tuple[int, str, str, str | None, int]],
    taken: dict[str, str],
    once_per_number: bool,
) -> tuple[list[Claimed], list[tuple[str, int]]]:
    """Split ``pending`` rows (seq, key, payload, number, calls made), in input order,
    into the rows to send and the ``duplicate`` ones (their description and seq).

    ``taken`` maps each number already used to the key of the row that used it; rows
    claimed here are added to it. Without ``once_per_number`` every row is claimed.
    """
    claimed: list[Claimed] = []
    duplicates: list[tuple[str, int]] = []
    for seq, key, payload, number, calls in found:
        if once_per_number and number is not None:
            owner = taken.setdefault(number, key)
            if owner != key:
                duplicates.append((f"number already used by row {owner!r}", seq))
                continue
        claimed.append(Claimed(seq, key, payload, number, calls + 1))
    return claimed, duplicates


def checked_kind(
    where: str,
    kind: str | None,
    found: tuple[str, int],
    version: int,
    upgradable: tuple[int, ...] = (),
) -> str:
    """The kind a journal holds; ``CampaignError`` if it is another version's format
    (other than one of ``upgradable``) or another kind than ``kind`` (``None``: any)."""
    found_kind, held = found
    if held != version and held not in upgradable:
        raise CampaignError(
            f"{where} was written by another version of aicc-async (journal format "
            f"{held}, this one reads {version})"
        )
    if kind is not None and found_kind != kind:
        raise CampaignError(
            f"{where} holds a {found_kind} campaign, not {kind}: use the command that "
            "created it, or another --journal path"
        )
    return found_kind


def warn_settled(count: int, what: str, *, idempotent: bool) -> None:
    """Log that ``count`` rows ``what`` (in flight when a run or a worker stopped) were
    settled, and what becomes of them: sent again (``idempotent``) or not."""
    logger.warning(
        "%d rows %s: %s",
        count,
        what,
        "they will be sent again"
        if idempotent
        else "their outcome is unknown and they will not be sent again",
    )


# -- the interface --------------------------------------------------------------------------


class Journal(abc.ABC):
    """An open campaign journal. Open with :func:`~aicc_async.bulk.journal.open_journal`;
    close with :meth:`close`.

    Every method may raise ``JournalError`` when the store cannot be read or written
    (the rows it recorded so far are kept), and ``CampaignError`` once closed.
    """

    kind: str
    """The kind of campaign it holds."""
    mode: Mode
    read_only: bool
    location: str
    """The journal as messages name it (a PostgreSQL password masked)."""
    shared: ClassVar[bool] = False
    """True when other processes may send rows of the same campaign meanwhile."""

    @property
    @abc.abstractmethod
    def files(self) -> tuple[Path, ...]:
        """The files that make up the journal (none for a database server's)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close it (safe to call more than once)."""

    @abc.abstractmethod
    async def bind(self, target: Target) -> None:
        """Record ``target`` as this journal's on first use; raise ``CampaignError`` if
        the journal already belongs to another one (and sent anything to it)."""

    @abc.abstractmethod
    async def source(self) -> str | None:
        """The input file the latest load named, if any."""

    @abc.abstractmethod
    async def begin_load(
        self, source: str | None = None, *, stream: bool = False
    ) -> tuple[int, bool]:
        """Number a new pass over the input (read from the file ``source`` if any);
        returns (pass, streams): ``streams`` when its rows may be sent as they are
        loaded (a journal with no rows yet, and ``stream`` asked)."""

    @abc.abstractmethod
    async def load(self, rows: Sequence[LoadedRow], load: int) -> tuple[list[State], int, int]:
        """Add ``rows`` of pass ``load`` in one transaction; returns (the states of the
        rows added, how many replaced an unsent row, how many had a known key).
        ``CampaignError`` (nothing of ``rows`` written) as :func:`plan_load` says."""

    @abc.abstractmethod
    async def end_load(self, load: int, known: int, source: str | None) -> int:
        """Accept pass ``load``: unsent rows not in it become ``withdrawn`` (returns how
        many). ``CampaignError`` (and the rows of the pass removed) if the journal held
        rows and the input has no key in common with them."""

    @abc.abstractmethod
    async def current_load(self) -> int | None:
        """The pass the next run sends from (``None``: no complete load yet)."""

    @abc.abstractmethod
    async def set_durable(self, durable: bool) -> None:
        """Make every commit durable (``True``, while sending) or not (while loading:
        a crash can only lose rows not yet sent, which the next run loads again)."""

    @abc.abstractmethod
    async def requeue(
        self, *, unknown: bool, failed: bool, duplicate: bool = False, limited: bool = True
    ) -> StateCounts:
        """Put ``unknown`` / sent-but-``failed`` / ``duplicate`` / ``limited`` rows of the
        current input (those asked for) back to ``pending``; returns the counts afterwards."""

    @abc.abstractmethod
    async def recover(self, *, idempotent: bool) -> int:
        """Settle rows left ``sending`` by a run that stopped: ``unknown`` (they may have
        been processed) or, if ``idempotent``, ``pending``. Returns how many."""

    @abc.abstractmethod
    async def commit(
        self,
        finished: Sequence[Finished],
        claim: int,
        after: int,
        *,
        once_per_number: bool,
        gate: Gate | None = None,
    ) -> Claim:
        """In one transaction: record ``finished``, then mark up to ``claim`` ``pending``
        rows of the current input with ``seq > after`` that ``gate`` lets start as
        ``sending`` (with ``once_per_number``, a row whose number was used becomes
        ``duplicate``; one ``gate.screen`` refuses, ``suppressed``). Without a gate,
        rows scheduled for a redial are not claimed."""

    @abc.abstractmethod
    async def redial(self, attempts: int, after: float, wait: float) -> int:
        """Schedule a redial ``after`` seconds after its release event for each ``done``
        row of the current input whose call was not answered, that had fewer than
        ``attempts`` calls, and whose event came within ``wait`` seconds of its send:
        its call is kept as an attempt and it is ``pending`` again. Returns how many."""

    @abc.abstractmethod
    async def share_do_not_call(self, source: str, numbers: Collection[str]) -> None:
        """Keep ``numbers`` as the do-not-call list ``source`` (a file on a host) in a
        journal several workers share, replacing what it held for ``source``: every
        worker's claims then refuse them (:attr:`Gate.shared_lists`). A journal of one
        process keeps nothing: its run checks its own lists."""

    @abc.abstractmethod
    async def backlog(self, attempts: int, wait: float, now: float) -> Backlog:
        """What the current input's rows wait for at ``now`` (see :class:`Backlog`)."""

    @abc.abstractmethod
    async def attempts(self) -> tuple[tuple[int, int], ...]:
        """(calls, rows called that many times), fewest calls first."""

    @abc.abstractmethod
    async def calls(self, after: int, limit: int) -> list[tuple[int, str, str, int, float]]:
        """Up to ``limit`` calls placed or possibly placed (claimed to be sent) of rows
        with ``seq > after``, by seq then attempt: (seq, key, number, attempt, when)."""

    @abc.abstractmethod
    async def call_attempts(self, key: str) -> list[dict[str, Any]]:
        """Every call of the row ``key``, first to last: ``attempt``, ``number``,
        ``reference``, ``outcome``, ``release_reason``, ``talk_duration``,
        ``release_time``, ``sent`` and ``heard`` (UNIX times)."""

    @abc.abstractmethod
    async def checkpoint(self) -> None:
        """Make what was written so far compact and self-contained (the end of a run)."""

    @abc.abstractmethod
    async def counts(self) -> StateCounts:
        """How many rows are in each state."""

    @abc.abstractmethod
    async def target(self) -> Target | None:
        """The target the journal is bound to (``None`` before its first run)."""

    @abc.abstractmethod
    async def problems(self) -> list[Problem]:
        """Failed, unknown and duplicate rows grouped by state and code, largest first."""

    @abc.abstractmethod
    async def problem_rows(self, after: int, limit: int) -> list[ProblemRow]:
        """Up to ``limit`` failed, unknown or duplicate rows with ``seq > after``, in input
        order."""

    @abc.abstractmethod
    async def record_outcome(
        self,
        reference: str,
        outcome: Outcome,
        *,
        number: str | None = None,
        now: float | None = None,
    ) -> bool:
        """Record ``outcome`` (heard at ``now``, UNIX time: the machine's clock by
        default) on the row whose call is ``reference`` or, failing that,
        on the one ``unknown`` row of the called ``number`` (normalised) sent before it
        (the row is then ``done``); False (and kept until such a row is recorded) when
        no row took it."""

    @abc.abstractmethod
    async def record_refused(self, reason: str) -> None:
        """Count one release event refused for ``reason`` (kept with the outcomes)."""

    @abc.abstractmethod
    async def has_outcome(self, reference: str) -> bool:
        """True when the outcome of the call ``reference`` is recorded."""

    @abc.abstractmethod
    async def outcomes(self) -> Outcomes:
        """The call outcomes recorded so far."""

    @abc.abstractmethod
    async def activity(self) -> Activity:
        """Rows sent per minute and answered calls per talk-duration range."""

    @abc.abstractmethod
    def note_rate(self, point: RatePoint) -> None:
        """Keep ``point`` of this run's rate history: written with the next commit at
        least a second after the last point written (points in between are added to it),
        never in a transaction of its own (see :meth:`flush_rate`)."""

    @abc.abstractmethod
    async def flush_rate(self) -> None:
        """Write the point :meth:`note_rate` holds back, if any (the end of a run)."""

    @abc.abstractmethod
    async def rate_history(self) -> tuple[RatePoint, ...]:
        """The campaign's rate history in time order, one point per second at most: with
        several workers, the highest rate one of them allowed in that second (with
        ``AICC_REDIS_URL`` every worker paces by the tenant's one rate) and the counts of
        all of them."""

    @abc.abstractmethod
    async def unanswered_rows(self, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` rows whose call was not answered with ``seq > after``, in input
        order, as (seq, key, payload)."""

    @staticmethod
    def loads(payload: str) -> Any:
        """A payload back as Python values."""
        return json.loads(payload)

    @staticmethod
    def dumps(value: Any) -> str:
        """The canonical JSON used for payloads and fingerprints."""
        return _CANONICAL.encode(value)
