"""FakeAICC: an in-process AICC simulator for tests and benchmarks.

It serves ``tokenByAkSk``, ``createVoiceNotification``, the CC-Messaging
``applyToken`` / ``doLeaveMessage`` pair, the mobile-agent ``createcall`` and
``getCalledInfo``, and the outbound ``midresult`` write-back on 127.0.0.1 with the
validation rules of the real platform, records what it received, and can inject
faults (latency, hangs, connection resets, gateway HTML pages, throttling, busy
answers, token rejections) either on demand (:meth:`FakeAICC.inject`) or at
random with a fixed seed (:meth:`FakeAICC.chaos`). ``latency=`` slows every
business request down, and ``GET /_fake/stats`` answers :meth:`FakeAICC.stats` as
JSON for tests that run the fake in another process (``python -m aicc_async.testing``).

Typical use::

    async with FakeAICC() as fake:
        fake.inject(Fault.RESET_AFTER_PROCESSING)
        ...  # drive the client against fake.url
        assert fake.calls_to("88880000") == 1
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import math
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from aicc_async.testing.release_events import ReleaseEventSender, SentReleaseEvent

if TYPE_CHECKING:
    from aicc_async import AICCClient  # type: ignore[attr-defined,unused-ignore]

__all__ = ["CalledParty", "FakeAICC", "Fault", "RecordedRequest"]

_TOKEN_ENDPOINT: Final = "tokenByAkSk"  # noqa: S105 - not a secret
_VOICE_ENDPOINT: Final = "createVoiceNotification"
_APPLY_TOKEN_ENDPOINT: Final = "applyToken"  # noqa: S105 - not a secret
_LEAVE_MESSAGE_ENDPOINT: Final = "doLeaveMessage"
_CREATE_CALL_ENDPOINT: Final = "createcall"
_CALLED_INFO_ENDPOINT: Final = "getCalledInfo"
_MIDRESULT_ENDPOINT: Final = "midresult"
_UNKNOWN_ENDPOINT: Final = "unknown"

_TOKEN_PATH: Final = "/apigovernance/api/oauth/tokenByAkSk"  # noqa: S105 - not a secret
_VOICE_PATH: Final = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
_APPLY_TOKEN_PATH: Final = "/apiaccess/ccmessaging/applyToken"  # noqa: S105 - not a secret
_LEAVE_MESSAGE_PATH: Final = "/apiaccess/ccmessaging/doLeaveMessage"
_CREATE_CALL_PATH: Final = "/apiaccess/ccmessaging/v1/mobileagent/createcall"
_CALLED_INFO_PATH: Final = "/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo"
_MIDRESULT_PATH: Final = "/rest/isales/v1/openapi/obs/business/push/midresult"

_PATHS: Final[Mapping[str, str]] = {
    _TOKEN_PATH: _TOKEN_ENDPOINT,
    _VOICE_PATH: _VOICE_ENDPOINT,
    _APPLY_TOKEN_PATH: _APPLY_TOKEN_ENDPOINT,
    _LEAVE_MESSAGE_PATH: _LEAVE_MESSAGE_ENDPOINT,
    _CREATE_CALL_PATH: _CREATE_CALL_ENDPOINT,
    _CALLED_INFO_PATH: _CALLED_INFO_ENDPOINT,
    _MIDRESULT_PATH: _MIDRESULT_ENDPOINT,
}
_ENDPOINTS: Final = frozenset(_PATHS.values())
_ALL_ENDPOINTS: Final = (*_PATHS.values(), _UNKNOWN_ENDPOINT)
_STATS_PATH: Final = "/_fake/stats"

_MESSAGING_TOKEN_HEADER: Final = "ccmessaging-token"  # noqa: S105 - a header name
_MESSAGING_TOKEN_TTL: Final = 3600
_FIRST_ACCESS_CODE: Final = 179080024600000
_SIP_SERVICE_ADDRESS: Final = "127.0.0.1:5063"

_DEFAULT_TTL: Final = 600
_MIN_TTL: Final = 60
_MAX_TTL: Final = 3600
_DEFAULT_LATENCY: Final = 0.5
_FIRST_SERIAL: Final = 1182700000000000
_SHUTDOWN_TIMEOUT: Final = 0.5
_KEEPALIVE_TIMEOUT: Final = 75.0

_CALLED_RE: Final = re.compile(r"\+?[0-9]{1,32}")
_CALLER_RE: Final = re.compile(r"[0-9]{1,32}")
_CALLBACK_CHARS_RE: Final = re.compile(r"[A-Za-z0-9\-:./_#?&]+")
_PRIORITIES: Final = frozenset(str(n) for n in range(1, 10))

_RET_MSGS: Final[Mapping[str, str]] = {
    "0": "Created successfully.",
    "1": "A task is in progress. Try again later.",
    "5": "The value of caller or called is not transferred, or the format does not match the rule.",
    "7": "callerPresent or agentPresent fails to pass the verification.",
    "8": "The value of voiceContent is empty, exceeds the upper limit, or does not exist.",
    "9": "The value of callBackUrl does not meet the requirements.",
    "16": (
        "The tenant is in trial commercial use state, and the called number is not in the "
        "trustlist."
    ),
    "36": "The value of priority is in an incorrect format.",
}

_BUSY_DESC: Final = _RET_MSGS["1"]

_BUSY_BODIES: Final[Mapping[str, Mapping[str, str]]] = {
    _VOICE_ENDPOINT: {"retCode": "1", "retMsg": _BUSY_DESC},
    _CALLED_INFO_ENDPOINT: {"retCode": "1", "retMsg": _BUSY_DESC},
    _MIDRESULT_ENDPOINT: {"result": "1", "resultDesc": _BUSY_DESC},
    _APPLY_TOKEN_ENDPOINT: {"resultCode": "1", "resultDesc": _BUSY_DESC},
    _LEAVE_MESSAGE_ENDPOINT: {"resultCode": "1", "resultDesc": _BUSY_DESC},
    _CREATE_CALL_ENDPOINT: {"resultCode": "1", "resultDesc": _BUSY_DESC},
}

_BAD_MESSAGING_TOKEN: Final[Mapping[str, str]] = {
    "resultCode": "401",
    "resultDesc": "ccmessaging-token is invalid",
}
_LEAVE_MESSAGE_SAVED: Final[Mapping[str, str]] = {
    "resultCode": "0",
    "resultDesc": "Save leaveMessage success!",
}
_LEAVE_MESSAGE_BAD_PARAMS: Final[Mapping[str, str]] = {
    "resultCode": "3",
    "resultDesc": "the leaveMessageParams is error",
}
_LEAVE_MESSAGE_FAILED: Final[Mapping[str, str]] = {
    "resultCode": "13",
    "resultDesc": "Save leaveMessage failed!",
}
_CREATE_CALL_BAD_PARAMS: Final[Mapping[str, str]] = {
    "resultCode": "30010000003",
    "resultDesc": "Input parameter verification failed",
}
_CALLED_INFO_MSGS: Final[Mapping[str, str]] = {
    "0": "success",
    "3": "Parameter error",
    "4": "The called party ID cannot be obtained",
    "5": "Called is not configured",
}
_MIDRESULT_BAD_PARAMS: Final[Mapping[str, Any]] = {"result": 1, "resultDesc": "Parameter error"}
_MIDRESULT_OPTIONAL_STRINGS: Final = (
    "status",
    "phoneNumber",
    "failCode",
    "asrResult",
    "fetchTime",
    "writeStartTime",
    "endCallTime",
    "callId",
)

_BAD_CREDENTIALS: Final[Mapping[str, str]] = {
    "error_code": "APIGW.0101",
    "error_msg": "The app key or app secret is incorrect",
}
_BAD_TOKEN_401: Final[Mapping[str, str]] = {
    "error_code": "APIGW.0301",
    "error_msg": "Incorrect token",
}
_BAD_TOKEN_403: Final[Mapping[str, str]] = {
    "errorCode": "APIGW.0307",
    "exceptionInfo": (
        "auth fail! illegal or expired token info. please apply or refresh the access token "
        "from the server!"
    ),
}
_HTML_REASONS: Final[Mapping[int, str]] = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class Fault(enum.Enum):
    """A misbehaviour FakeAICC can apply to one request.

    "Processed" means the fake did the thing (issued a token, placed the call, saved
    the message, created the call task, answered the look-up, wrote the result back)
    before misbehaving, so a retry would do it twice.
    """

    LATENCY = "latency"
    """Wait ``delay`` seconds (default 0.5), then answer normally."""
    HANG = "hang"
    """Never answer, never process; drop the connection on close() or after ``delay``."""
    RESET_AFTER_PROCESSING = "reset_after_processing"
    """Process the request, then abort the TCP connection without any response."""
    RESET_BEFORE_PROCESSING = "reset_before_processing"
    """Abort the TCP connection without processing."""
    HTTP_500 = "http_500"
    """HTTP 500 with a small JSON body; not processed."""
    HTML_502 = "html_502"
    """Process, then answer 502 with an openresty HTML page (the ambiguous case)."""
    HTML_503 = "html_503"
    """Not processed; 503 HTML page, with ``Retry-After`` when ``retry_after`` is given."""
    HTML_503_AFTER_PROCESSING = "html_503_after_processing"
    """Process, then answer 503 with an openresty HTML page and ``Retry-After``
    (``retry_after`` seconds, default 0): a proxy that passed the request on and then
    reported itself unavailable. The client cannot tell it from HTML_503."""
    HTML_504 = "html_504"
    """Process, then answer 504 with an openresty HTML page."""
    HTTP_429 = "http_429"
    """Not processed; 429 JSON body, with ``Retry-After`` when ``retry_after`` is given."""
    BUSY = "busy"
    """Not processed; HTTP 200 with the endpoint's own code field set to ``"1"``.

    ``{"retCode": "1", "retMsg": ...}`` for createVoiceNotification and getCalledInfo,
    ``{"resultCode": "1", "resultDesc": ...}`` for applyToken, doLeaveMessage and
    createcall, ``{"result": "1", "resultDesc": ...}`` for midresult.
    """
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - not a secret
    """Not processed; answered exactly like a request with an expired token."""


@attrs.frozen
class RecordedRequest:
    """One request as FakeAICC saw it.

    ``endpoint`` is ``"tokenByAkSk"``, ``"createVoiceNotification"``, ``"applyToken"``,
    ``"doLeaveMessage"``, ``"createcall"``, ``"getCalledInfo"``, ``"midresult"`` or
    ``"unknown"`` (any other method/path, answered 404/405). ``headers`` look-ups are
    case-insensitive. ``body`` is the parsed JSON, or the raw text when it was not
    JSON. ``time`` is the fake's clock at arrival.
    """

    endpoint: str
    path: str
    headers: Mapping[str, str]
    body: Any
    processed: bool
    fault: Fault | None
    time: float


@attrs.frozen
class CalledParty:
    """What getCalledInfo answers for one configured called number (see ``called_parties``).

    ``dev_type`` is 0 for a skill queue, 1 for a number; ``skill_id`` and
    ``skill_name`` are left out of the answer when None.
    """

    dev_type: int
    called: str
    skill_id: int | None = None
    skill_name: str | None = None


@attrs.frozen
class _MessagingToken:
    user_id: str
    expires_at: float


@attrs.frozen
class _FaultSpec:
    fault: Fault
    endpoint: str | None
    delay: float | None
    retry_after: float | None

    def matches(self, endpoint: str) -> bool:
        if self.endpoint is None:
            return endpoint != _TOKEN_ENDPOINT
        return self.endpoint == endpoint


@attrs.define
class _Chaos:
    rng: random.Random
    probability: float
    faults: tuple[Fault, ...]
    endpoint: str | None
    delay: float | None
    retry_after: float | None


@attrs.define
class _Exchange:
    """Per-request state passed between the handler's steps."""

    request: web.Request
    endpoint: str
    headers: CIMultiDictProxy[str]
    body: Any
    index: int | None


def _check_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and endpoint not in _ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(_ENDPOINTS)}")


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _format_retry_after(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _html_page(status: int) -> str:
    title = f"{status} {_HTML_REASONS[status]}"
    return (
        "<html>\r\n"
        f"<head><title>{title}</title></head>\r\n"
        "<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n"
        "<hr><center>openresty</center>\r\n"
        "</body>\r\n"
        "</html>\r\n"
    )


def _valid_callback_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        url = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    if not _CALLBACK_CHARS_RE.fullmatch(url):
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _voice_ret_code(body: Mapping[str, Any], trustlist: set[str] | None) -> str | None:
    """The failing retCode for a createVoiceNotification body, or None if it is valid."""
    called = body.get("called")
    if not isinstance(called, str) or not _CALLED_RE.fullmatch(called):
        return "5"
    content = body.get("voiceContent")
    if not isinstance(content, str) or not content or len(content) > 1000:
        return "8"
    caller = body.get("callerPresent")
    if caller is not None and (not isinstance(caller, str) or not _CALLER_RE.fullmatch(caller)):
        return "7"
    callback = body.get("callBackUrl")
    if callback is not None and not _valid_callback_url(callback):
        return "9"
    priority = body.get("priority")
    if priority is not None and priority not in _PRIORITIES:
        return "36"
    if trustlist is not None and called not in trustlist:
        return "16"
    return None


def _is_int(value: object) -> bool:
    """A JSON integer (booleans are not integers here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value: object, min_len: int = 1, max_len: int | None = None) -> bool:
    if not isinstance(value, str) or len(value) < min_len:
        return False
    return max_len is None or len(value) <= max_len


def _apply_token_error(body: Mapping[str, Any], channels: set[str] | None) -> str | None:
    """The resultDesc refusing an applyToken body, or None if it is valid."""
    if not _is_text(body.get("userId"), 1, 32):
        return "The userId is invalid"
    for name in ("userName", "channelId", "locale"):
        if not _is_text(body.get(name)):
            return f"The {name} is invalid"
    if channels is not None and body["channelId"] not in channels:
        return "The channelId is not configured"
    return None


def _leave_message_valid(body: Mapping[str, Any]) -> bool:
    fields = ("callId", "caller", "leaveMessage", "channel")
    return all(_is_text(body.get(name)) for name in fields) and body["channel"] == "WEB"


def _create_call_valid(body: Mapping[str, Any]) -> bool:
    if not (_is_text(body.get("called"), 1, 32) and _is_text(body.get("callerPresent"), 1, 32)):
        return False
    return "callData" not in body or _is_text(body["callData"], 0, 1024)


def _called_info_number(value: object) -> str | None:
    """``value`` (a string or a JSON integer) as 1..32 characters, or None if invalid."""
    text = str(value) if _is_int(value) else value
    return text if isinstance(text, str) and 1 <= len(text) <= 32 else None


def _midresult_valid(body: Mapping[str, Any]) -> bool:
    if not (_is_int(body.get("subCCNo")) and _is_int(body.get("vdnId"))):
        return False
    if not (_is_text(body.get("uniqueId")) and _is_text(body.get("serviceId"))):
        return False
    if "deviceType" in body and not _is_int(body["deviceType"]):
        return False
    return all(_is_text(body[name], 0) for name in _MIDRESULT_OPTIONAL_STRINGS if name in body)


def _same_secret(given: object, expected: str) -> bool:
    if not isinstance(given, str):
        return False
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _parse_ttl(raw: str | None) -> int | None:
    if raw is None:
        return _DEFAULT_TTL
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        return None
    ttl = int(text)
    return ttl if _MIN_TTL <= ttl <= _MAX_TTL else None


class FakeAICC:
    """An AICC simulator serving real HTTP on ``host:port`` (a free port by default).

    Use it as ``async with FakeAICC() as fake:`` or call :meth:`start` /
    :meth:`close`. Point a client at :attr:`url` with :attr:`app_key` /
    :attr:`app_secret`. Tokens live for the ``X-Token-Expire`` seconds asked for
    (default 600) on ``clock`` (default :func:`time.monotonic`); pass a fake clock
    to expire them without sleeping. ccmessaging-tokens (from applyToken) live 3600 s
    on the same clock.

    Every business endpoint (all but tokenByAkSk) needs ``Authorization: Bearer
    <AccessToken>`` and, except midresult, the ``X-APP-Key`` header; a body that is
    not a JSON object is answered HTTP 400. The public attributes set below tune
    the business answers.

    ``latency`` (seconds, default 0) makes every business request wait that long in
    real time after it arrived and before it is handled: before its fault (chosen at
    arrival) is applied or it is processed. The wait counts in :attr:`in_flight`;
    :meth:`close` cuts it short and drops the connection unprocessed.
    tokenByAkSk and the stats route are never delayed.

    For tests that run FakeAICC in another process, ``GET /_fake/stats`` answers
    :meth:`stats` as JSON (HTTP 200, no token needed; any other method is answered
    405). It is not a business request: it is not recorded, not counted, and never
    gets faults or latency.

    Release events: a processed createVoiceNotification with ``callBackUrl`` makes the
    fake POST a release event to that URL after ``release_delay`` seconds (real time),
    answered with probability ``answer_rate`` (``random.Random(release_seed)``, drawn
    in processing order), signed with ``callback_key`` (None: unsigned), retried
    ``release_retries`` times (0.05, 0.1, 0.2 ... s apart) until it gets HTTP 200,
    and sent once more after delivery with probability ``duplicate_rate``. See
    :mod:`aicc_async.testing.release_events`, :attr:`release_events`,
    :meth:`wait_release_events`; :meth:`close` cancels pending deliveries.
    """

    def __init__(
        self,
        *,
        app_key: str = "fake-app-key",
        app_secret: str = "fake-app-secret",  # noqa: S107 - a fake credential
        host: str = "127.0.0.1",
        port: int = 0,
        token_reject_status: int = 401,
        clock: Callable[[], float] | None = None,
        record: bool = True,
        latency: float = 0.0,
        callback_key: str | None = None,
        answer_rate: float = 0.7,
        release_delay: float = 0.05,
        duplicate_rate: float = 0.0,
        release_seed: int = 0,
        release_retries: int = 3,
    ) -> None:
        if not (math.isfinite(latency) and latency >= 0):
            raise ValueError(f"latency must be a finite number >= 0, got {latency!r}")
        self.app_key = app_key
        self.app_secret = app_secret
        self._host = host
        self._port = port
        self.token_reject_status = token_reject_status
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._record = record
        self._latency = float(latency)
        self._release_events = ReleaseEventSender(
            callback_key=callback_key,
            answer_rate=answer_rate,
            delay=release_delay,
            duplicate_rate=duplicate_rate,
            seed=release_seed,
            retries=release_retries,
            record=record,
        )

        self.trial_trustlist: set[str] | None = None
        """When a set, createVoiceNotification to a ``called`` not in it answers retCode 16."""
        self.messaging_channels: set[str] | None = None
        """When a set, applyToken for a ``channelId`` not in it answers resultCode 1."""
        self.leave_message_fails = False
        """When True, a valid doLeaveMessage answers resultCode 13 and is not processed."""
        self.rotate_messaging_token = False
        """When True, a successful doLeaveMessage carries a fresh ``ccmessaging-token`` header."""
        self.omit_call_serial_no = False
        """When True, createcall answers without ``resultData.callSerialNo`` (as the seed does)."""
        self.called_parties: dict[str, CalledParty] = {}
        """getCalledInfo answers, keyed by the ``called`` number as a string."""
        self.unobtainable: set[str] = set()
        """Called numbers for which getCalledInfo answers retCode 4 (checked first)."""
        self.midresult_result_as_string = False
        """When True, a successful midresult answers ``{"result": "0"}`` instead of ``0``."""

        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._closing: asyncio.Event | None = None
        self._closed = False

        self._requests: list[RecordedRequest] = []
        self._tokens: dict[str, float] = {}
        self._messaging_tokens: dict[str, _MessagingToken] = {}
        self._calls: Counter[str] = Counter()
        self._call_tasks: Counter[str] = Counter()
        self._write_backs: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._processed: Counter[str] = Counter()
        self._serial = _FIRST_SERIAL
        self._access_code = _FIRST_ACCESS_CODE
        self._queued: list[_FaultSpec] = []
        self._chaos: _Chaos | None = None

        self._token_requests = 0
        self._rejected_token_requests = 0
        self._messaging_token_requests = 0
        self._rejected_messaging_tokens = 0
        self._in_flight = 0
        self._max_in_flight = 0

        self._handlers: Mapping[str, Callable[[_Exchange], web.Response]] = {
            _TOKEN_ENDPOINT: self._issue_token,
            _VOICE_ENDPOINT: self._create_voice_notification,
            _APPLY_TOKEN_ENDPOINT: self._apply_token,
            _LEAVE_MESSAGE_ENDPOINT: self._do_leave_message,
            _CREATE_CALL_ENDPOINT: self._create_call,
            _CALLED_INFO_ENDPOINT: self._get_called_info,
            _MIDRESULT_ENDPOINT: self._midresult,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start serving (a random free port when ``port=0``)."""
        if self._runner is not None or self._closed:
            raise RuntimeError("FakeAICC can be started only once")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            keepalive_timeout=_KEEPALIVE_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=1024)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._closing = asyncio.Event()
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving; releases HANGing requests. Safe to call more than once."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            self._closing.set()
        await self._release_events.close()
        await runner.cleanup()

    async def __aenter__(self) -> FakeAICC:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:43123`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("FakeAICC is not started")
        return self._url

    def client(self, **kwargs: Any) -> AICCClient:
        """An ``AICCClient`` pointed at this fake with its credentials; kwargs are passed on."""
        from aicc_async import AICCClient  # type: ignore[attr-defined,unused-ignore]

        client: AICCClient = AICCClient(
            base_url=self.url, app_key=self.app_key, app_secret=self.app_secret, **kwargs
        )
        return client

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        fault: Fault,
        *,
        times: int = 1,
        endpoint: str | None = None,
        delay: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Queue ``times`` copies of ``fault``.

        Each request whose endpoint matches consumes the first matching queued
        fault (FIFO). ``endpoint`` is an endpoint name as in
        :attr:`RecordedRequest.endpoint`; ``None`` matches every business endpoint
        (everything except ``tokenByAkSk``, so applyToken included); token requests
        get faults only when queued with ``endpoint="tokenByAkSk"``. ``delay`` is
        used by LATENCY and HANG, ``retry_after`` (seconds) by HTML_503 and HTTP_429.
        """
        if not isinstance(fault, Fault):
            raise TypeError(f"fault must be a Fault, got {fault!r}")
        if times < 0:
            raise ValueError(f"times must be >= 0, got {times!r}")
        _check_endpoint(endpoint)
        _check_non_negative("delay", delay)
        _check_non_negative("retry_after", retry_after)
        spec = _FaultSpec(fault, endpoint, delay, retry_after)
        self._queued.extend([spec] * times)

    def chaos(
        self,
        *,
        seed: int,
        probability: float,
        faults: Sequence[Fault],
        endpoint: str | None = None,
        delay: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """From now on give each matching request a random fault with ``probability``.

        Applies only when no queued fault matched. The fault is chosen uniformly
        from ``faults`` with ``random.Random(seed)``, so the same arrival order
        gives the same faults. Replaces any earlier chaos setting; endpoint
        matching is as for :meth:`inject`.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {probability!r}")
        chosen = tuple(faults)
        if not chosen:
            raise ValueError("faults must not be empty")
        for fault in chosen:
            if not isinstance(fault, Fault):
                raise TypeError(f"faults must hold Fault members, got {fault!r}")
        _check_endpoint(endpoint)
        _check_non_negative("delay", delay)
        _check_non_negative("retry_after", retry_after)
        rng = random.Random(seed)  # noqa: S311 - deterministic fault choice, not security
        self._chaos = _Chaos(rng, probability, chosen, endpoint, delay, retry_after)

    def clear_faults(self) -> None:
        """Drop every queued fault and stop chaos."""
        self._queued.clear()
        self._chaos = None

    def _pick_fault(self, endpoint: str) -> _FaultSpec | None:
        for i, spec in enumerate(self._queued):
            if spec.matches(endpoint):
                del self._queued[i]
                return spec
        chaos = self._chaos
        if chaos is None:
            return None
        if chaos.endpoint is None:
            if endpoint == _TOKEN_ENDPOINT:
                return None
        elif chaos.endpoint != endpoint:
            return None
        if chaos.rng.random() >= chaos.probability:
            return None
        fault = chaos.rng.choice(chaos.faults)
        return _FaultSpec(fault, chaos.endpoint, chaos.delay, chaos.retry_after)

    # ------------------------------------------------------------------ tokens

    @property
    def token_reject_status(self) -> int:
        """How a bad token is answered: 401 (JSON ``APIGW.0301``) or 403 (``APIGW.0307``)."""
        return self._token_reject_status

    @token_reject_status.setter
    def token_reject_status(self, value: int) -> None:
        if value not in (401, 403):
            raise ValueError(f"token_reject_status must be 401 or 403, got {value!r}")
        self._token_reject_status = value

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid right now."""
        self._tokens.clear()

    def expire_messaging_tokens(self) -> None:
        """Make every ccmessaging-token issued so far invalid right now."""
        self._messaging_tokens.clear()

    # ------------------------------------------------------------------ what happened

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a copy; empty when ``record=False``)."""
        return list(self._requests)

    def received(self, endpoint: str) -> list[RecordedRequest]:
        """All recorded requests to ``endpoint``."""
        return [r for r in self._requests if r.endpoint == endpoint]

    def processed(self, endpoint: str) -> list[RecordedRequest]:
        """Recorded requests to ``endpoint`` that were processed (see :class:`Fault`)."""
        return [r for r in self._requests if r.endpoint == endpoint and r.processed]

    def calls_to(self, called: str) -> int:
        """How many voice notification calls were placed to ``called`` (``record=False`` too)."""
        return self._calls[called]

    def call_tasks_to(self, called: str) -> int:
        """How many createcall tasks were created for ``called`` (``record=False`` too)."""
        return self._call_tasks[called]

    @property
    def write_backs(self) -> dict[str, int]:
        """Processed midresult write-backs per ``uniqueId`` (a copy; ``record=False`` too)."""
        return dict(self._write_backs)

    @property
    def token_requests(self) -> int:
        """How many tokenByAkSk requests arrived (whatever their outcome)."""
        return self._token_requests

    @property
    def rejected_token_requests(self) -> int:
        """Business requests refused for a missing/invalid/expired token (TOKEN_EXPIRED too)."""
        return self._rejected_token_requests

    @property
    def messaging_token_requests(self) -> int:
        """How many applyToken requests arrived (whatever their outcome)."""
        return self._messaging_token_requests

    @property
    def rejected_messaging_tokens(self) -> int:
        """doLeaveMessage requests refused (HTTP 401) for their ccmessaging-token."""
        return self._rejected_messaging_tokens

    @property
    def in_flight(self) -> int:
        """Business requests (not tokenByAkSk) being handled now, latency and fault delays too."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """High-water mark of :attr:`in_flight` since start or :meth:`reset_stats`."""
        return self._max_in_flight

    @property
    def release_events(self) -> list[SentReleaseEvent]:
        """Release events sent to ``callBackUrl``s, as their deliveries ended (a copy)."""
        return self._release_events.events

    async def wait_release_events(self) -> None:
        """Wait until every release event scheduled so far was delivered or given up."""
        await self._release_events.wait()

    def reset_stats(self) -> None:
        """Restart :attr:`max_in_flight` from the current :attr:`in_flight` (0 when idle)."""
        self._max_in_flight = self._in_flight

    def stats(self) -> dict[str, Any]:
        """A JSON-able snapshot of the counters (kept with ``record=False`` too).

        ``calls`` (see :meth:`calls_to`), ``call_tasks`` (:meth:`call_tasks_to`) and
        ``write_backs`` count per number / ``uniqueId``; ``received`` and
        ``processed`` count requests per endpoint name (as in
        :attr:`RecordedRequest.endpoint`, every name present, 0 included);
        ``token_requests``, ``rejected_token_requests``, ``in_flight`` and
        ``max_in_flight`` are the properties of the same names; ``release_events``
        counts release events (scheduled, pending, delivered, failed, cancelled,
        answered / not_answered of the delivered, attempts, duplicates). Also served as
        ``GET /_fake/stats``.
        """
        return {
            "calls": dict(self._calls),
            "call_tasks": dict(self._call_tasks),
            "write_backs": dict(self._write_backs),
            "received": {name: self._received[name] for name in _ALL_ENDPOINTS},
            "processed": {name: self._processed[name] for name in _ALL_ENDPOINTS},
            "token_requests": self._token_requests,
            "rejected_token_requests": self._rejected_token_requests,
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "release_events": self._release_events.stats(),
        }

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == _STATS_PATH:
            return self._stats_response(request)
        endpoint = _PATHS.get(request.path, _UNKNOWN_ENDPOINT)
        if request.method != "POST":
            endpoint = _UNKNOWN_ENDPOINT
        business = endpoint not in (_TOKEN_ENDPOINT, _UNKNOWN_ENDPOINT)
        if business:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return await self._serve(request, endpoint)
        finally:
            if business:
                self._in_flight -= 1

    def _stats_response(self, request: web.Request) -> web.Response:
        """The control route: GET answers :meth:`stats`, anything else 405."""
        if request.method != "GET":
            return web.json_response(
                {"error": f"{request.method} not allowed on {_STATS_PATH}; use GET"},
                status=405,
                headers={"Allow": "GET"},
            )
        return web.json_response(self.stats())

    async def _serve(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        arrival = self._clock()
        raw = (await request.read()).decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        headers = CIMultiDictProxy(CIMultiDict(request.headers))
        spec = self._pick_fault(endpoint) if endpoint != _UNKNOWN_ENDPOINT else None
        index: int | None = None
        if self._record:
            index = len(self._requests)
            self._requests.append(
                RecordedRequest(
                    endpoint=endpoint,
                    path=request.path,
                    headers=headers,
                    body=body,
                    processed=False,
                    fault=spec.fault if spec is not None else None,
                    time=arrival,
                )
            )
        self._received[endpoint] += 1
        if endpoint == _TOKEN_ENDPOINT:
            self._token_requests += 1
        elif endpoint == _APPLY_TOKEN_ENDPOINT:
            self._messaging_token_requests += 1
        ex = _Exchange(request, endpoint, headers, body, index)
        if endpoint == _UNKNOWN_ENDPOINT:
            if request.path in _PATHS:
                return web.json_response(
                    {"error_code": "APIGW.0405", "error_msg": "Method not allowed"}, status=405
                )
            return web.json_response(
                {"error_code": "APIGW.0404", "error_msg": "The API does not exist"}, status=404
            )
        if self._latency > 0 and endpoint != _TOKEN_ENDPOINT and await self._wait(self._latency):
            return self._abort(request)
        if spec is None:
            return self._process(ex)
        return await self._apply_fault(ex, spec)

    async def _apply_fault(self, ex: _Exchange, spec: _FaultSpec) -> web.StreamResponse:
        fault = spec.fault
        if fault is Fault.LATENCY:
            delay = spec.delay if spec.delay is not None else _DEFAULT_LATENCY
            if await self._wait(delay):
                return self._abort(ex.request)
            return self._process(ex)
        if fault is Fault.HANG:
            await self._wait(spec.delay)
            return self._abort(ex.request)
        if fault is Fault.RESET_BEFORE_PROCESSING:
            return self._abort(ex.request)
        if fault is Fault.RESET_AFTER_PROCESSING:
            self._process(ex)
            return self._abort(ex.request)
        if fault is Fault.HTTP_500:
            return web.json_response(
                {"error_code": "AICC.0500", "error_msg": "Internal server error"}, status=500
            )
        if fault in (Fault.HTML_502, Fault.HTML_504):
            self._process(ex)
            return self._html(502 if fault is Fault.HTML_502 else 504, None)
        if fault is Fault.HTML_503:
            return self._html(503, spec.retry_after)
        if fault is Fault.HTML_503_AFTER_PROCESSING:
            self._process(ex)
            return self._html(503, 0.0 if spec.retry_after is None else spec.retry_after)
        if fault is Fault.HTTP_429:
            return web.json_response(
                {
                    "error_code": "APIGW.0308",
                    "error_msg": "The throttling threshold has been reached",
                },
                status=429,
                headers=self._retry_after_header(spec.retry_after),
            )
        if fault is Fault.BUSY:
            return web.json_response(dict(_BUSY_BODIES[ex.endpoint]))
        # Fault.TOKEN_EXPIRED
        return self._reject_token(ex)

    async def _wait(self, delay: float | None) -> bool:
        """Sleep ``delay`` seconds (forever when None); True if close() cut it short."""
        closing = self._closing
        assert closing is not None
        if delay is None:
            await closing.wait()
            return True
        try:
            await asyncio.wait_for(closing.wait(), delay)
        except asyncio.TimeoutError:
            return False
        return True

    @staticmethod
    def _abort(request: web.Request) -> web.StreamResponse:
        """Abort the TCP connection; the returned response can never be written."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)

    @staticmethod
    def _retry_after_header(retry_after: float | None) -> dict[str, str]:
        if retry_after is None:
            return {}
        return {"Retry-After": _format_retry_after(retry_after)}

    def _html(self, status: int, retry_after: float | None) -> web.Response:
        headers = {"Server": "openresty", **self._retry_after_header(retry_after)}
        return web.Response(
            status=status, text=_html_page(status), content_type="text/html", headers=headers
        )

    def _mark_processed(self, ex: _Exchange) -> None:
        self._processed[ex.endpoint] += 1
        if ex.index is not None:
            self._requests[ex.index] = attrs.evolve(self._requests[ex.index], processed=True)

    def _process(self, ex: _Exchange) -> web.Response:
        """Answer as the real platform would, marking the request processed if it was."""
        return self._handlers[ex.endpoint](ex)

    def _issue_token(self, ex: _Exchange) -> web.Response:
        body = ex.body
        if not isinstance(body, dict):
            return web.json_response(
                {"error_code": "APIGW.0201", "error_msg": "The request body must be JSON"},
                status=400,
            )
        ttl = _parse_ttl(ex.headers.get("X-Token-Expire"))
        if ttl is None:
            return web.json_response(
                {
                    "error_code": "APIGW.0201",
                    "error_msg": f"X-Token-Expire must be an integer in {_MIN_TTL}..{_MAX_TTL}",
                },
                status=400,
            )
        if not (
            _same_secret(body.get("app_key"), self.app_key)
            and _same_secret(body.get("app_secret"), self.app_secret)
        ):
            return web.json_response(dict(_BAD_CREDENTIALS), status=401)
        token = secrets.token_hex(16)
        self._tokens[token] = self._clock() + ttl
        self._mark_processed(ex)
        return web.json_response(
            {
                "AccessToken": token,
                "ApplyType": "Bearer",
                "CreateTime": str(int(time.time())),
                "Expires": str(ttl),
                "Scope": "default",
                "AppKey": self.app_key,
                "UserID": "Anonymous",
            }
        )

    def _token_valid(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        token = authorization[len("Bearer ") :]
        if not token or token != token.strip() or " " in token:
            return False
        expires_at = self._tokens.get(token)
        if expires_at is None:
            return False
        if self._clock() >= expires_at:
            del self._tokens[token]
            return False
        return True

    def _reject_token(self, ex: _Exchange) -> web.Response:
        if ex.endpoint != _TOKEN_ENDPOINT:
            self._rejected_token_requests += 1
        if self._token_reject_status == 403:
            return web.json_response(dict(_BAD_TOKEN_403), status=403)
        return web.json_response(dict(_BAD_TOKEN_401), status=401)

    def _refuse(self, ex: _Exchange, *, app_key: bool = True) -> web.Response | None:
        """The answer refusing a business request's token, app key or body; None if fine."""
        if not self._token_valid(ex.headers.get("Authorization")):
            return self._reject_token(ex)
        if app_key and ex.headers.get("X-APP-Key") != self.app_key:
            return web.json_response(dict(_BAD_CREDENTIALS), status=401)
        if not isinstance(ex.body, dict):
            return web.json_response(
                {"error_code": "APIGW.0201", "error_msg": "The request body must be a JSON object"},
                status=400,
            )
        return None

    def _create_voice_notification(self, ex: _Exchange) -> web.Response:
        refusal = self._refuse(ex)
        if refusal is not None:
            return refusal
        body = ex.body
        code = _voice_ret_code(body, self.trial_trustlist)
        if code is not None:
            return web.json_response({"retCode": code, "retMsg": _RET_MSGS[code]})
        self._serial += 1
        self._calls[body["called"]] += 1
        self._mark_processed(ex)
        self._release_events.schedule(body, str(self._serial))
        return web.json_response(
            {
                "result": {"callSerialNo": str(self._serial)},
                "retCode": "0",
                "retMsg": _RET_MSGS["0"],
            }
        )

    def _issue_messaging_token(self, user_id: str) -> str:
        token = secrets.token_hex(16)
        expires_at = self._clock() + _MESSAGING_TOKEN_TTL
        self._messaging_tokens[token] = _MessagingToken(user_id, expires_at)
        return token

    def _messaging_token_user(self, token: str | None) -> str | None:
        """The userId a valid, unexpired ccmessaging-token was issued for, else None."""
        if token is None:
            return None
        entry = self._messaging_tokens.get(token)
        if entry is None:
            return None
        if self._clock() >= entry.expires_at:
            del self._messaging_tokens[token]
            return None
        return entry.user_id

    def _reject_messaging_token(self) -> web.Response:
        self._rejected_messaging_tokens += 1
        return web.json_response(dict(_BAD_MESSAGING_TOKEN), status=401)

    def _apply_token(self, ex: _Exchange) -> web.Response:
        refusal = self._refuse(ex)
        if refusal is not None:
            return refusal
        error = _apply_token_error(ex.body, self.messaging_channels)
        if error is not None:
            return web.json_response({"resultCode": "1", "resultDesc": error})
        token = self._issue_messaging_token(ex.body["userId"])
        self._mark_processed(ex)
        return web.json_response({"resultCode": "0", "token": token})

    def _do_leave_message(self, ex: _Exchange) -> web.Response:
        refusal = self._refuse(ex)
        if refusal is not None:
            return refusal
        user_id = self._messaging_token_user(ex.headers.get(_MESSAGING_TOKEN_HEADER))
        if user_id is None:
            return self._reject_messaging_token()
        body = ex.body
        if not _leave_message_valid(body):
            return web.json_response(dict(_LEAVE_MESSAGE_BAD_PARAMS))
        if body["callId"] != user_id:
            return self._reject_messaging_token()
        if self.leave_message_fails:
            return web.json_response(dict(_LEAVE_MESSAGE_FAILED))
        self._mark_processed(ex)
        headers: dict[str, str] = {}
        if self.rotate_messaging_token:
            headers[_MESSAGING_TOKEN_HEADER] = self._issue_messaging_token(user_id)
        return web.json_response(dict(_LEAVE_MESSAGE_SAVED), headers=headers)

    def _create_call(self, ex: _Exchange) -> web.Response:
        refusal = self._refuse(ex)
        if refusal is not None:
            return refusal
        body = ex.body
        if not _create_call_valid(body):
            return web.json_response(dict(_CREATE_CALL_BAD_PARAMS))
        self._serial += 1
        self._access_code += 1
        self._call_tasks[body["called"]] += 1
        self._mark_processed(ex)
        data: dict[str, str] = {}
        if not self.omit_call_serial_no:
            data["callSerialNo"] = str(self._serial)
        data["sipServiceAddress"] = _SIP_SERVICE_ADDRESS
        data["accesscode"] = str(self._access_code)
        return web.json_response({"resultCode": "0", "resultDesc": "Success", "resultData": data})

    def _get_called_info(self, ex: _Exchange) -> web.Response:
        refusal = self._refuse(ex)
        if refusal is not None:
            return refusal
        called = _called_info_number(ex.body.get("called"))
        if called is None or _called_info_number(ex.body.get("caller")) is None:
            return self._called_info_answer("3")
        if called in self.unobtainable:
            return self._called_info_answer("4")
        party = self.called_parties.get(called)
        if party is None:
            return self._called_info_answer("5")
        result: dict[str, Any] = {"devType": party.dev_type, "called": party.called}
        if party.skill_id is not None:
            result["skillId"] = party.skill_id
        if party.skill_name is not None:
            result["skillName"] = party.skill_name
        self._mark_processed(ex)
        return self._called_info_answer("0", result)

    @staticmethod
    def _called_info_answer(code: str, result: Mapping[str, Any] | None = None) -> web.Response:
        answer: dict[str, Any] = {"retCode": code, "retMsg": _CALLED_INFO_MSGS[code]}
        if result is not None:
            answer["result"] = dict(result)
        return web.json_response(answer)

    def _midresult(self, ex: _Exchange) -> web.Response:
        refusal = self._refuse(ex, app_key=False)
        if refusal is not None:
            return refusal
        body = ex.body
        if not _midresult_valid(body):
            return web.json_response(dict(_MIDRESULT_BAD_PARAMS))
        self._write_backs[body["uniqueId"]] += 1
        self._mark_processed(ex)
        return web.json_response({"result": "0" if self.midresult_result_as_string else 0})
