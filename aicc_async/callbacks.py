"""Release-event callbacks: verify, de-duplicate and dispatch AICC's release events.

When a voice notification's call is released, AICC POSTs a *release event* to the
notification's ``callBackUrl``. :class:`CallbackReceiver` receives it::

    async def on_event(event: ReleaseEvent) -> None:
        print(event.call_serial_no, event.answered, event.release_reason_meaning)

    receiver = CallbackReceiver(os.environ["AICC_CALLBACK_KEY"], on_event)
    app.router.add_post("/aicc/release", receiver.handle)     # your aiohttp.web app
    # or: web.run_app(receiver.app())                         # a standalone app
    # or: await receiver.receive(body_bytes)                  # FastAPI / Starlette / ...

The signature (:func:`compute_signature`): every body field except ``timestamp``,
``nonce`` and ``signature``, sorted by name (code-point order), joined as
``name=value`` with ``,``; then ``<sharedKey>_<timestamp>_<nonce>_<that>``,
HMAC-SHA256 keyed with the shared key, Base64 of the raw digest. Values are taken
as received: a string as is; any other JSON value as its compact JSON text
(``1``, ``1.5``, ``true``, ``false``, ``null``, ``[1,2]``). AICC documents every field
as a string, so the rendering of other values only matters for odd senders.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final

import attrs
from aiohttp import web

from aicc_async._decoding import read_at_most
from aicc_async._wire import converter, wire_field
from aicc_async.errors import AICCValidationError, check_positive, is_int

__all__ = [
    "KEY_MISMATCH_AFTER",
    "REFUSAL_REASONS",
    "RELEASE_REASONS",
    "CallbackReceiver",
    "CallbackResponse",
    "ReleaseEvent",
    "compute_signature",
    "verify_signature",
]

logger = logging.getLogger(__name__)

MIN_SHARED_KEY: Final = 16
"""AICC refuses shorter shared keys, so a shorter one is a configuration mistake."""

_UNSIGNED: Final = frozenset({"timestamp", "nonce", "signature"})
_MILLIS_FROM: Final = 10**11  # a timestamp this large is in milliseconds (10**11 s is year 5138)

RELEASE_REASONS: Final[Mapping[str, str]] = {
    "0": "the called party hung up after the call was connected",
    "1": "the notification finished playing and the call was released",
    "4": "the called party rejected the call or did not answer while ringing",
    "6": "the call failed before ringing",
    "8": "no resources",
    "9": "the queue timed out",
    "10": "the call is restricted",
    "999": "the recording conference could not be started",
}
"""Meanings of the voice-notification ``releaseReason`` codes AICC documents."""


# --------------------------------------------------------------------------- signature


def _text(value: object) -> str:
    """A body value as it is signed: strings as is, other JSON values as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def compute_signature(
    fields: Mapping[str, Any], shared_key: str, timestamp: str | int, nonce: str
) -> str:
    """The Base64 HMAC-SHA256 signature of a release-event body (see the module doc).

    ``fields`` may be the whole body: ``timestamp``, ``nonce`` and ``signature`` in it
    are left out. ``timestamp`` and ``nonce`` are rendered like body values.
    """
    joined = ",".join(
        f"{name}={_text(fields[name])}" for name in sorted(fields) if name not in _UNSIGNED
    )
    message = f"{shared_key}_{_text(timestamp)}_{_text(nonce)}_{joined}"
    digest = hmac.new(shared_key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(body: Mapping[str, Any], shared_key: str) -> bool:
    """Whether ``body`` (as received) carries a valid ``signature`` for ``shared_key``.

    Needs ``timestamp``, ``nonce`` and a string ``signature`` in ``body``; compares in
    constant time. Does not judge the timestamp's age (:class:`CallbackReceiver` does).
    """
    signature = body.get("signature")
    timestamp = body.get("timestamp")
    nonce = body.get("nonce")
    if not isinstance(signature, str) or timestamp is None or nonce is None:
        return False
    expected = compute_signature(body, shared_key, timestamp, nonce)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


# --------------------------------------------------------------------------- event


def _masked(number: str) -> str:
    """A phone number with all but its last four characters hidden."""
    return "*" * max(len(number) - 4, 0) + number[-4:] if len(number) > 4 else "****"


@attrs.frozen(kw_only=True)
class ReleaseEvent:
    """One release event, read from the body AICC posted.

    Times are naive ``datetime`` in the tenant's local time (AICC sends
    ``2022/02/17,13:10:06:836``); a missing or unreadable time is None. String fields
    hold non-string values as ``str(value)``; ``talk_duration`` (seconds) is None when
    absent or not a whole number. ``raw`` is the body as received, unknown fields and
    ``signature`` / ``timestamp`` / ``nonce`` included. Build one with :meth:`from_body`:
    it never raises on odd values (``call_serial_no`` / ``called`` are checked by the
    receiver before).
    """

    call_serial_no: str
    called: str = attrs.field(repr=_masked)
    caller_present: str | None = None
    create_call_time: datetime | None = None
    alerting_time: datetime | None = None
    talking_time: datetime | None = None
    release_time: datetime | None = None
    talk_duration: int | None = None
    record_file: str | None = attrs.field(default=None, metadata=wire_field("recordfile"))
    location_id: str | None = None
    release_reason: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ReleaseEvent:
        """The event in ``body`` (a decoded JSON object with ``callSerialNo`` and ``called``)."""
        fields = dict(body)
        fields["raw"] = body
        event: ReleaseEvent = converter.structure(fields, cls)
        return event

    @property
    def answered(self) -> bool:
        """True when the call was answered: a non-empty ``talkingTime`` or ``talkDuration`` > 0."""
        talking = self.raw.get("talkingTime")
        if isinstance(talking, str) and talking.strip():
            return True
        return self.talk_duration is not None and self.talk_duration > 0

    @property
    def release_reason_meaning(self) -> str | None:
        """What :attr:`release_reason` means (see :data:`RELEASE_REASONS`); None if unknown."""
        if self.release_reason is None:
            return None
        return RELEASE_REASONS.get(self.release_reason.strip())


# --------------------------------------------------------------------------- receiver


@attrs.frozen
class CallbackResponse:
    """What to answer AICC: HTTP :attr:`status` with the JSON :attr:`body`.

    ``ret_code`` is ``"0"`` when the event was accepted (handed to ``on_event`` now or
    before); any other code says why it was refused (see :class:`CallbackReceiver`).
    """

    status: int
    ret_code: str
    ret_msg: str
    content_type: str = "application/json"

    @property
    def json(self) -> dict[str, str]:
        """The answer as a dict: ``{"retCode": ..., "retMsg": ...}``."""
        return {"retCode": self.ret_code, "retMsg": self.ret_msg}

    @property
    def body(self) -> bytes:
        """The answer as JSON bytes."""
        return json.dumps(self.json).encode()


_OK = CallbackResponse(200, "0", "success")
_BAD_BODY = CallbackResponse(400, "1", "the body is not a JSON object")
_MISSING_FIELDS = CallbackResponse(400, "2", "callSerialNo or called is missing or invalid")
_NO_SIGNATURE = CallbackResponse(401, "3", "the event is not signed")
_BAD_SIGNATURE = CallbackResponse(401, "4", "the signature does not match")
_NO_TIMESTAMP = CallbackResponse(401, "5", "timestamp or nonce is missing")
_STALE = CallbackResponse(401, "6", "the timestamp is unreadable or outside the tolerance")
_UNSIGNED_REFUSED = CallbackResponse(
    403, "7", "unsigned events are not accepted: no shared key is configured"
)
_TOO_LARGE = CallbackResponse(413, "8", "the body is too large")
_HANDLER_FAILED = CallbackResponse(500, "9", "the event could not be processed; deliver it again")
_SEEN_FAILED = CallbackResponse(
    500, "10", "the event could not be checked against earlier ones; deliver it again"
)
_BAD_FIELD = CallbackResponse(400, "11", "a field does not have its documented form")
_BUSY = CallbackResponse(503, "12", "this call's event is being processed; deliver it again later")
_SLOW_BODY = CallbackResponse(408, "14", "the body did not arrive in time")
_HANDLER_TIMED_OUT = CallbackResponse(
    500, "13", "the event could not be processed in time; deliver it again"
)

#: Why an event was refused, by ``retCode``: what ``on_refused`` is told and reports count.
REFUSAL_REASONS: Final[Mapping[str, str]] = {
    _BAD_BODY.ret_code: "malformed",
    _MISSING_FIELDS.ret_code: "missing fields",
    _NO_SIGNATURE.ret_code: "unsigned",
    _BAD_SIGNATURE.ret_code: "signature",
    _NO_TIMESTAMP.ret_code: "no timestamp",
    _STALE.ret_code: "stale",
    _UNSIGNED_REFUSED.ret_code: "unsigned",
    _TOO_LARGE.ret_code: "too large",
    _BAD_FIELD.ret_code: "field form",
    _SLOW_BODY.ret_code: "slow body",
}
KEY_MISMATCH_AFTER: Final = 10
"""Events refused in a row for their signature, none ever verified, that make
:attr:`CallbackReceiver.key_mismatch` true."""

OnEvent = Callable[[ReleaseEvent], Awaitable[None]]
OnRefused = Callable[[str], Awaitable[None]]
SeenCheck = Callable[[str], Awaitable[bool]]


def _identifier(value: object) -> str | None:
    """``callSerialNo`` / ``called`` as a non-empty string (JSON integers accepted)."""
    if is_int(value):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


_DIGITS: Final = re.compile(r"[0-9]+")
_TIME: Final = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9]{2},[0-9]{2}:[0-9]{2}:[0-9]{2}(:[0-9]{1,3})?")
_NUMBER: Final = re.compile(r"\+?[0-9]{1,32}")
_NAME: Final = re.compile(r"[A-Za-z0-9_]+")
#: The documented form of each release-event field (the whole value must match).
_FORMS: Final[Mapping[str, re.Pattern[str]]] = {
    "callSerialNo": re.compile(r"[0-9]{1,50}"),
    "called": _NUMBER,
    "callerPresent": _NUMBER,
    "createCallTime": _TIME,
    "alertingTime": _TIME,
    "talkingTime": _TIME,
    "releaseTime": _TIME,
    "talkDuration": _DIGITS,
    "locationId": _DIGITS,
    "releaseReason": _DIGITS,
}
_REQUIRED: Final = frozenset({"callSerialNo", "called"})


def _misformed(data: Mapping[str, Any]) -> str | None:
    """The first field of a body that is not in its documented form, or None.

    The signed text joins ``name=value`` with ``,`` and escapes nothing, so a value (or
    a name) holding ``,`` or ``=`` where its form has none could move fields from one
    value to another under a valid signature: every field is held to its form, and a
    field without a documented one (``recordfile``, fields AICC may add) to a value
    without ``,`` or ``=``. Optional fields may be empty or null.
    """
    for name, value in data.items():
        if name in _UNSIGNED:
            continue
        if not _NAME.fullmatch(name):
            return "a field name"
        if (value is None or value == "") and name not in _REQUIRED:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return name
        text = _text(value)
        form = _FORMS.get(name)
        if form is None:
            if "," in text or "=" in text:
                return name
        elif not form.fullmatch(text):
            return name
    return None


def _epoch_seconds(value: object) -> float | None:
    """A timestamp in seconds or milliseconds (digits, as a string or an integer)."""
    if is_int(value):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        return None
    return number / 1000 if number >= _MILLIS_FROM else float(number)


def _short(value: str) -> str:
    """An untrusted identifier cut for a log line."""
    return value if len(value) <= 64 else value[:64] + "..."


class CallbackReceiver:
    """Receives AICC release events and hands each one to ``on_event`` once.

    Args:
        shared_key: the tenant's callback shared key (at least 16 characters); every
            event must then carry a valid signature. None: AICC does not sign (the
            GUI-configured URL) and events are refused unless ``allow_unsigned``.
        on_event: ``async def on_event(event: ReleaseEvent) -> None``. If it raises, AICC
            is answered 500 so it delivers the event again, and the event is not
            remembered as seen. It may get events for serials you do not know: log and
            return.
        tolerance: how many seconds a ``timestamp`` may be older or newer than ``clock``
            (seconds and milliseconds are both accepted).
        allow_unsigned: accept unsigned events (only without a ``shared_key``).
        max_body: largest body accepted, in bytes.
        clock: wall clock in seconds (``time.time``), for the timestamp check.
        seen: optional persistent check ``async def seen(call_serial_no) -> bool``:
            True when the event was already recorded (e.g. in a campaign journal), so
            it is acknowledged without calling ``on_event``. Asked only for serials not
            in memory; if it raises, AICC is answered 500.
        max_remembered: how many serials (and, separately, nonces) are kept in memory to
            drop duplicates. Beyond it the oldest are forgotten (LRU); a nonce is also
            forgotten once its timestamp is outside ``tolerance``. A forgotten serial
            delivered again reaches ``on_event`` again unless ``seen`` knows it, so
            ``on_event`` should be idempotent per ``call_serial_no`` anyway.
        read_timeout: seconds :meth:`handle` waits for a request's body; then it is
            answered 408 "14" and the connection closed.
        handler_timeout: seconds ``on_event`` may take; then it is cancelled and AICC
            is answered 500 "13" so that it delivers the event again.
        max_waiting: how many deliveries of one serial may wait for the one being
            handed to ``on_event``; more are answered 503 "12" at once (AICC delivers
            them again later), so a slow handler never piles up waiting requests.
        on_refused: optional ``async def on_refused(reason) -> None``, awaited for each
            event refused with a 4xx answer, ``reason`` from :data:`REFUSAL_REASONS`
            (e.g. ``"signature"``), to count them where they last (a campaign journal
            does). If it raises, it is logged and the refusal stands.

    Raises:
        AICCValidationError: a bad setting (``field`` names it), e.g. a short key.

    Answers (HTTP status, ``retCode``): 200 "0" accepted (also for a replayed nonce or
    a serial already delivered: not handed on twice); 400 "1" not a JSON object;
    400 "2" ``callSerialNo`` / ``called`` missing; 401 "3" unsigned while a key is
    set; 401 "4" bad signature; 401 "5" ``timestamp`` / ``nonce`` missing; 401 "6"
    stale or unreadable timestamp; 403 "7" unsigned and no key; 413 "8" body over
    ``max_body``; 500 "9" ``on_event`` raised; 500 "10" ``seen`` raised; 503 "12" too
    many deliveries of that serial waiting; 500 "13" ``on_event`` timed out; 408 "14"
    the body came slower than ``read_timeout``; 400 "11" a
    field out of its documented form (serial numbers and codes digits, times
    ``yyyy/MM/dd,HH:mm:ss:SSS``, durations whole seconds, numbers ``+`` and digits, no
    ``,`` or ``=`` in any other value: the signed text could be re-split). Checks run
    in that order of concern: size, JSON, signature, timestamp, fields, duplicates.
    Concurrent deliveries of one serial wait for each other: the first is handed on,
    the others are answered after it (200, or tried again if it failed).

    The shared key and signatures are never logged; numbers are masked.
    """

    def __init__(
        self,
        shared_key: str | None = None,
        on_event: OnEvent | None = None,
        *,
        tolerance: float = 300,
        allow_unsigned: bool = False,
        max_body: int = 64 * 1024,
        clock: Callable[[], float] = time.time,
        seen: SeenCheck | None = None,
        max_remembered: int = 100_000,
        on_refused: OnRefused | None = None,
        handler_timeout: float = 10.0,
        max_waiting: int = 4,
        read_timeout: float = 10.0,
    ) -> None:
        if shared_key is not None and (
            not isinstance(shared_key, str) or len(shared_key) < MIN_SHARED_KEY
        ):
            raise AICCValidationError(
                f"shared_key must be a string of at least {MIN_SHARED_KEY} characters",
                field="shared_key",
            )
        if shared_key is not None and allow_unsigned:
            raise AICCValidationError(
                "allow_unsigned=True cannot be combined with a shared_key: "
                "an unsigned event would bypass the key",
                field="allow_unsigned",
            )
        if not callable(on_event):
            raise AICCValidationError(
                "on_event must be an async callable taking a ReleaseEvent", field="on_event"
            )
        check_positive("tolerance", tolerance, "a finite number of seconds")
        if not isinstance(max_body, int) or max_body < 1:
            raise AICCValidationError("max_body must be an integer >= 1", field="max_body")
        if not isinstance(max_remembered, int) or max_remembered < 1:
            raise AICCValidationError(
                "max_remembered must be an integer >= 1", field="max_remembered"
            )
        if seen is not None and not callable(seen):
            raise AICCValidationError(
                "seen must be None or an async callable taking a callSerialNo", field="seen"
            )
        check_positive("handler_timeout", handler_timeout, "a finite number of seconds")
        check_positive("read_timeout", read_timeout, "a finite number of seconds")
        if not isinstance(max_waiting, int) or max_waiting < 0:
            raise AICCValidationError("max_waiting must be an integer >= 0", field="max_waiting")
        if on_refused is not None and not callable(on_refused):
            raise AICCValidationError(
                "on_refused must be None or an async callable taking a reason",
                field="on_refused",
            )
        self._key = shared_key
        self._on_event = on_event
        self._tolerance = float(tolerance)
        self._allow_unsigned = allow_unsigned
        self._max_body = max_body
        self._clock = clock
        self._seen = seen
        self._max_remembered = max_remembered
        self._on_refused = on_refused
        self._handler_timeout = float(handler_timeout)
        self._read_timeout = float(read_timeout)
        self._max_waiting = max_waiting
        self._waiting: dict[str, int] = {}  # serial -> deliveries waiting for the one in flight
        self._refused: dict[str, int] = {}
        self._verified = 0
        self._bad_signatures = 0  # in a row
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> forget after
        self._serials: OrderedDict[str, None] = OrderedDict()  # delivered, LRU
        self._in_flight: dict[str, asyncio.Event] = {}

    def __repr__(self) -> str:
        signed = "signed" if self._key is not None else "unsigned"
        return f"CallbackReceiver({signed}, tolerance={self._tolerance:g})"

    @property
    def refused(self) -> Mapping[str, int]:
        """How many events this receiver refused, by reason (see :data:`REFUSAL_REASONS`)."""
        return dict(self._refused)

    @property
    def key_mismatch(self) -> bool:
        """True when no event was ever verified and the last :data:`KEY_MISMATCH_AFTER`
        (or more) were refused for their signature: the shared key is not the one the
        tenant signs with."""
        return self._verified == 0 and self._bad_signatures >= KEY_MISMATCH_AFTER

    @property
    def remembered(self) -> tuple[int, int]:
        """How many (nonces, serials) are held in memory now."""
        return len(self._nonces), len(self._serials)

    # ------------------------------------------------------------------ entry points

    async def handle(self, request: web.Request) -> web.Response:
        """aiohttp handler: ``app.router.add_post("/aicc/release", receiver.handle)``.

        Refuses a ``Content-Length`` over ``max_body`` before reading, and never reads
        more than ``max_body + 1`` bytes of the body.
        """
        length = request.content_length
        if length is not None and length > self._max_body:
            result = await self._counted(self._refuse(_TOO_LARGE, f"body of {length} bytes"))
        else:
            try:
                body = await asyncio.wait_for(self._read_capped(request), self._read_timeout)
            except TimeoutError:
                result = await self._counted(
                    self._refuse(_SLOW_BODY, f"body not read within {self._read_timeout:g} s")
                )
            else:
                result = (
                    await self._counted(
                        self._refuse(_TOO_LARGE, f"body over {self._max_body} bytes")
                    )
                    if body is None
                    else await self.receive(body, request.content_type)
                )
        response = web.Response(
            status=result.status, body=result.body, content_type=result.content_type
        )
        if result is _TOO_LARGE or result is _SLOW_BODY:
            response.force_close()  # the rest of the body is not read: do not reuse
        return response

    def app(self, path: str = "/aicc/release") -> web.Application:
        """A standalone ``aiohttp.web.Application`` serving POST ``path``."""
        application = web.Application()
        application.router.add_post(path, self.handle)
        return application

    async def receive(self, body: bytes, content_type: str | None = None) -> CallbackResponse:
        """Framework-free entry point: the raw request body in, the answer out.

        ``content_type`` is informational (AICC's header is undocumented): the body
        is parsed as JSON whatever it says. Cap the body you read at ``max_body + 1``
        bytes if your framework lets you; a longer one is refused here.
        """
        return await self._counted(await self._examine(body, content_type))

    async def _counted(self, result: CallbackResponse) -> CallbackResponse:
        """``result``, counted if it refuses the event (see ``on_refused``)."""
        reason = REFUSAL_REASONS.get(result.ret_code) if 400 <= result.status < 500 else None
        if reason is None:
            return result
        self._refused[reason] = self._refused.get(reason, 0) + 1
        if result is _BAD_SIGNATURE:
            self._bad_signatures += 1
            if self._bad_signatures == KEY_MISMATCH_AFTER and not self._verified:
                logger.error(
                    "%d release events in a row were refused for their signature and none "
                    "was verified: the shared key is not the one AICC signs with",
                    KEY_MISMATCH_AFTER,
                )
        if self._on_refused is not None:
            try:
                await self._on_refused(reason)
            except Exception:
                logger.exception("release event refused (%s): on_refused raised", reason)
        return result

    async def _examine(self, body: bytes, content_type: str | None) -> CallbackResponse:
        if len(body) > self._max_body:
            return self._refuse(_TOO_LARGE, f"body of {len(body)} bytes")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return self._refuse(_BAD_BODY, f"undecodable body (Content-Type {content_type!r})")
        if not isinstance(data, dict):
            return self._refuse(_BAD_BODY, f"JSON {type(data).__name__} body")
        refusal = self._authenticate(data)
        if refusal is not None:
            return refusal
        serial = _identifier(data.get("callSerialNo"))
        if serial is None or _identifier(data.get("called")) is None:
            return self._refuse(_MISSING_FIELDS, "body without callSerialNo/called")
        misformed = _misformed(data)
        if misformed is not None:
            return self._refuse(_BAD_FIELD, f"{misformed} is not in its documented form")
        return await self._dispatch(data, serial)

    # ------------------------------------------------------------------ steps

    @staticmethod
    def _refuse(answer: CallbackResponse, why: str) -> CallbackResponse:
        logger.warning(
            "release event refused (HTTP %d, retCode %s): %s", answer.status, answer.ret_code, why
        )
        return answer

    async def _read_capped(self, request: web.Request) -> bytes | None:
        """The body, or None once it is over ``max_body`` (at most ``max_body + 1`` read)."""
        return await read_at_most(request.content, self._max_body)

    def _authenticate(self, data: Mapping[str, Any]) -> CallbackResponse | None:
        """The refusal for a body's signature or timestamp, or None if it passes."""
        if self._key is not None:
            if "signature" not in data:
                return self._refuse(_NO_SIGNATURE, "no signature")
            if data.get("timestamp") is None or data.get("nonce") is None:
                return self._refuse(_NO_TIMESTAMP, "signed without timestamp/nonce")
            if not verify_signature(data, self._key):
                return self._refuse(_BAD_SIGNATURE, "signature mismatch")
            self._verified += 1
            self._bad_signatures = 0
        elif not self._allow_unsigned:
            return self._refuse(_UNSIGNED_REFUSED, "no shared key configured")
        if "timestamp" in data:
            sent = _epoch_seconds(data["timestamp"])
            if sent is None or abs(self._clock() - sent) > self._tolerance:
                return self._refuse(_STALE, f"timestamp outside {self._tolerance:g} s")
        return None

    def _nonce_of(self, data: Mapping[str, Any]) -> str | None:
        nonce = data.get("nonce")
        return None if nonce is None else json.dumps(nonce)

    def _remember_nonce(self, data: Mapping[str, Any]) -> None:
        nonce = self._nonce_of(data)
        if nonce is None:
            return
        now = self._clock()
        sent = _epoch_seconds(data.get("timestamp"))
        self._nonces[nonce] = max(now if sent is None else sent, now) + self._tolerance
        self._nonces.move_to_end(nonce)
        # Oldest first; a nonce whose timestamp is stale is refused anyway.
        while self._nonces:
            oldest, forget_after = next(iter(self._nonces.items()))
            if forget_after >= now and len(self._nonces) <= self._max_remembered:
                break
            del self._nonces[oldest]

    def _remember_serial(self, serial: str) -> None:
        self._serials[serial] = None
        self._serials.move_to_end(serial)
        while len(self._serials) > self._max_remembered:
            self._serials.popitem(last=False)

    def _duplicate(self, data: Mapping[str, Any], serial: str, why: str) -> CallbackResponse:
        logger.info("release event for callSerialNo %s already delivered (%s)", serial, why)
        self._remember_nonce(data)
        return _OK

    async def _dispatch(self, data: dict[str, Any], serial: str) -> CallbackResponse:
        nonce = self._nonce_of(data)
        if nonce is not None and self._nonces.get(nonce, -math.inf) >= self._clock():
            return self._duplicate(data, _short(serial), "replayed nonce")
        while True:
            if serial in self._serials:
                self._serials.move_to_end(serial)
                return self._duplicate(data, _short(serial), "same callSerialNo")
            running = self._in_flight.get(serial)
            if running is None:
                break
            waiting = self._waiting.get(serial, 0)
            if waiting >= self._max_waiting:
                logger.info("release event for callSerialNo %s: busy, answered 503", _short(serial))
                return _BUSY
            self._waiting[serial] = waiting + 1
            try:
                await running.wait()  # then look again: delivered, or try it ourselves
            finally:
                if self._waiting[serial] > 1:
                    self._waiting[serial] -= 1
                else:
                    del self._waiting[serial]
        done = self._in_flight[serial] = asyncio.Event()
        try:
            return await self._deliver(data, serial)
        finally:
            del self._in_flight[serial]
            done.set()

    async def _deliver(self, data: dict[str, Any], serial: str) -> CallbackResponse:
        shown = _short(serial)
        if self._seen is not None:
            try:
                known = await asyncio.wait_for(self._seen(serial), self._handler_timeout)
            except Exception:  # TimeoutError included
                logger.exception("release event for callSerialNo %s: the seen check failed", shown)
                return _SEEN_FAILED
            if known:
                self._remember_serial(serial)
                return self._duplicate(data, shown, "recorded earlier")
        event = ReleaseEvent.from_body(data)
        try:
            await asyncio.wait_for(self._on_event(event), self._handler_timeout)
        except TimeoutError:
            logger.error(
                "release event for callSerialNo %s: on_event took over %g s; answered 500 "
                "so that AICC delivers it again",
                shown,
                self._handler_timeout,
            )
            return _HANDLER_TIMED_OUT
        except Exception:
            logger.exception("release event for callSerialNo %s: on_event raised", shown)
            return _HANDLER_FAILED
        self._remember_serial(serial)
        self._remember_nonce(data)
        logger.info(
            "release event for callSerialNo %s delivered (answered=%s, releaseReason=%s)",
            shown,
            event.answered,
            event.release_reason,
        )
        logger.debug("release event for callSerialNo %s: called %s", shown, _masked(event.called))
        return _OK
