"""FakeAICC's release events: what AICC POSTs to a notification's ``callBackUrl``.

:class:`ReleaseEventSender` is owned by :class:`~aicc_async.testing.FakeAICC`: each
processed createVoiceNotification that carries ``callBackUrl`` schedules one event,
posted after ``delay`` seconds, answered with probability ``answer_rate`` (a seeded
RNG, so the same order of notifications gives the same outcomes) unless ``answers``
chooses the outcome for that number and attempt (:mod:`.answers`), with AICC's
release reasons, durations and ``2022/02/17,13:10:06:836`` times (local time, ending
at the moment of sending). With a ``callback_key`` the body is signed
(:func:`aicc_async.callbacks.compute_signature`, millisecond ``timestamp``); without
one it is unsigned, like the GUI-configured URL. A delivery that does not get HTTP
200 is retried ``retries`` times after 0.05, 0.1, 0.2 ... seconds; with probability
``duplicate_rate`` a delivered event is sent once more (half the time the exact same
body, half the time re-signed with a new nonce), as AICC may do.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import random
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp
import attrs

from aicc_async.callbacks import compute_signature
from aicc_async.testing.fake.answers import REASONS, AnswerPlan, Answers, Outcome

__all__ = ["ReleaseEventSender", "SentReleaseEvent"]

_RETRY_DELAY: Final = 0.05
_MIN_KEY: Final = 16  # AICC's minimum shared-key length
_POST_TIMEOUT: Final = 10.0
_ANSWERED_REASONS: Final = ("0", "1")  # the called party hung up / the notification ended
_UNANSWERED_REASONS: Final = ("4", "6", "8", "10")  # no answer or rejected, failed, ...
_UNANSWERED_WEIGHTS: Final = (85, 11, 2, 2)


@attrs.frozen
class SentReleaseEvent:
    """One release event FakeAICC sent (or tried to), recorded when its delivery ended.

    ``body`` holds the event's fields without ``timestamp`` / ``nonce`` /
    ``signature`` (each attempt is signed afresh). ``attempts`` counts POSTs, the
    duplicate included; ``delivered`` is True once one got HTTP 200; ``duplicated``
    when a second copy was sent after that; ``cancelled`` when FakeAICC closed first.
    """

    call_serial_no: str
    called: str
    answered: bool
    release_reason: str
    url: str
    body: Mapping[str, str] = attrs.field(repr=False)
    attempts: int
    delivered: bool
    duplicated: bool
    cancelled: bool


@attrs.frozen
class _Plan:
    url: str
    fields: Mapping[str, str]
    answered: bool
    duplicate: bool
    replay: bool


def _format(moment: datetime) -> str:
    return f"{moment:%Y/%m/%d,%H:%M:%S}:{moment.microsecond // 1000:03d}"


def _check_rate(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")
    return float(value)


def _decode_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


class ReleaseEventSender:
    """Schedules, signs, posts and retries release events; see the module doc.

    Raises ValueError for a bad option (the message names it).
    """

    def __init__(
        self,
        *,
        callback_key: str | None = None,
        answer_rate: float = 0.7,
        delay: float = 0.05,
        duplicate_rate: float = 0.0,
        seed: int = 0,
        retries: int = 3,
        record: bool = True,
        now: Callable[[], datetime] = datetime.now,
        wall_clock: Callable[[], float] = time.time,
        answers: Answers | None = None,
    ) -> None:
        if callback_key is not None and (
            not isinstance(callback_key, str) or len(callback_key) < _MIN_KEY
        ):
            raise ValueError("callback_key must be None or a string of at least 16 characters")
        if not (isinstance(delay, (int, float)) and math.isfinite(delay) and delay >= 0):
            raise ValueError(f"release_delay must be a finite number >= 0, got {delay!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"release_retries must be an integer >= 0, got {retries!r}")
        self._key = callback_key
        self._answer_rate = _check_rate("answer_rate", answer_rate)
        self._answers = AnswerPlan(answers)
        self._duplicate_rate = _check_rate("duplicate_rate", duplicate_rate)
        self._delay = float(delay)
        self._retries = retries
        self._record = record
        self._now = now
        self._wall_clock = wall_clock
        self._rng = random.Random(seed)  # noqa: S311 - reproducible outcomes, not security
        self._chosen_rng = random.Random(seed)  # noqa: S311 - the details of chosen outcomes
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._events: list[SentReleaseEvent] = []
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "scheduled",
                "delivered",
                "failed",
                "cancelled",
                "answered",
                "not_answered",
                "attempts",
                "duplicates",
            ),
            0,
        )

    # ------------------------------------------------------------------ API

    def schedule(self, notification: Mapping[str, Any], call_serial_no: str) -> None:
        """Plan the release event of a processed notification (its JSON body) and send it.

        Does nothing when the body has no decodable ``callBackUrl`` or after :meth:`close`;
        the notification still counts as a call to its number for ``answers``.
        """
        outcome = self._answers.next(str(notification["called"]))
        url = _decode_url(notification.get("callBackUrl"))
        if url is None or self._closed:
            return
        plan = self._plan(url, call_serial_no, notification, outcome)
        self._counts["scheduled"] += 1
        task = asyncio.get_running_loop().create_task(self._run(plan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def events(self) -> list[SentReleaseEvent]:
        """Finished deliveries, in the order they ended (a copy; empty without recording)."""
        return list(self._events)

    def stats(self) -> dict[str, int]:
        """Counters: scheduled, pending, delivered, failed, cancelled, answered and
        not_answered (of the delivered), attempts (POSTs) and duplicates."""
        counts = dict(self._counts)
        counts["pending"] = len(self._tasks)
        order = ("scheduled", "pending", "delivered", "failed", "cancelled")
        rest = ("answered", "not_answered", "attempts", "duplicates")
        return {name: counts[name] for name in (*order, *rest)}

    async def wait(self) -> None:
        """Wait until every scheduled delivery has ended (those scheduled meanwhile too)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel pending deliveries (recorded as cancelled) and close the HTTP session."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ------------------------------------------------------------------ internals

    def _plan(
        self, url: str, serial: str, notification: Mapping[str, Any], outcome: Outcome | None
    ) -> _Plan:
        plan = self._draw(self._rng, url, serial, notification, None)
        if outcome is None:
            return plan
        # Drawn from the seeded RNG as if not chosen, so that the numbers ``answers``
        # leaves out keep the outcomes they have without it; the chosen one apart.
        chosen = self._draw(self._chosen_rng, url, serial, notification, outcome)
        return attrs.evolve(chosen, duplicate=plan.duplicate, replay=plan.replay)

    def _draw(
        self,
        rng: random.Random,
        url: str,
        serial: str,
        notification: Mapping[str, Any],
        outcome: Outcome | None,
    ) -> _Plan:
        roll = rng.random()
        answered = roll < self._answer_rate if outcome is None else outcome == "answered"
        duplicate = rng.random() < self._duplicate_rate
        replay = rng.random() < 0.5
        release = self._now()
        setup = timedelta(seconds=rng.uniform(0.5, 3.0))
        fields: dict[str, str] = {"callSerialNo": serial, "called": str(notification["called"])}
        caller = notification.get("callerPresent")
        if isinstance(caller, str):
            fields["callerPresent"] = caller
        if answered:
            talk = rng.randint(3, 90)
            talking = release - timedelta(seconds=talk, milliseconds=rng.randint(0, 999))
            alerting = talking - timedelta(seconds=rng.uniform(2.0, 15.0))
            fields["createCallTime"] = _format(alerting - setup)
            fields["alertingTime"] = _format(alerting)
            fields["talkingTime"] = _format(talking)
            fields["talkDuration"] = str(talk)
            reason = rng.choice(_ANSWERED_REASONS)
        else:
            if outcome is None:
                reason = rng.choices(_UNANSWERED_REASONS, weights=_UNANSWERED_WEIGHTS)[0]
            else:
                reason = REASONS[outcome]
            if reason == "4":  # rang, nobody answered (or rejected)
                alerting = release - timedelta(seconds=rng.uniform(5.0, 45.0))
                fields["createCallTime"] = _format(alerting - setup)
                fields["alertingTime"] = _format(alerting)
            else:
                fields["createCallTime"] = _format(release - setup)
            fields["talkDuration"] = "0"
        fields["releaseTime"] = _format(release)
        fields["releaseReason"] = reason
        return _Plan(url, fields, answered, duplicate, replay)

    def _signed(self, fields: Mapping[str, str]) -> dict[str, str]:
        body = dict(fields)
        if self._key is not None:
            timestamp = str(int(self._wall_clock() * 1000))
            nonce = secrets.token_hex(16)
            body["timestamp"] = timestamp
            body["nonce"] = nonce
            body["signature"] = compute_signature(fields, self._key, timestamp, nonce)
        return body

    async def _post(self, url: str, body: Mapping[str, str]) -> bool:
        """One POST; True on HTTP 200."""
        self._counts["attempts"] += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_POST_TIMEOUT)
            )
        try:
            async with self._session.post(url, json=body) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def _run(self, plan: _Plan) -> None:
        delivered = duplicated = cancelled = False
        attempts = 0
        try:
            await asyncio.sleep(self._delay)
            body = self._signed(plan.fields)
            for attempt in range(self._retries + 1):
                if attempt:
                    await asyncio.sleep(_RETRY_DELAY * 2 ** (attempt - 1))
                    body = self._signed(plan.fields)
                attempts += 1
                if await self._post(plan.url, body):
                    delivered = True
                    break
            if delivered and plan.duplicate:
                duplicated = True
                self._counts["duplicates"] += 1
                attempts += 1
                await self._post(plan.url, body if plan.replay else self._signed(plan.fields))
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self._finish(plan, attempts, delivered, duplicated, cancelled)

    def _finish(
        self, plan: _Plan, attempts: int, delivered: bool, duplicated: bool, cancelled: bool
    ) -> None:
        if delivered:
            self._counts["delivered"] += 1
            self._counts["answered" if plan.answered else "not_answered"] += 1
        elif cancelled:
            self._counts["cancelled"] += 1
        else:
            self._counts["failed"] += 1
        if self._record:
            self._events.append(
                SentReleaseEvent(
                    call_serial_no=plan.fields["callSerialNo"],
                    called=plan.fields["called"],
                    answered=plan.answered,
                    release_reason=plan.fields["releaseReason"],
                    url=plan.url,
                    body=plan.fields,
                    attempts=attempts,
                    delivered=delivered,
                    duplicated=duplicated,
                    cancelled=cancelled,
                )
            )
