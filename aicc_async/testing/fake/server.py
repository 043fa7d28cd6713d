"""FakeAICC: the server (app, routing, recording, stats, latency, in-flight count, lifecycle).

What each AICC service answers lives in the module named after it, as in
:mod:`aicc_async.endpoints` (:mod:`.tokens`, :mod:`.voice_notification`,
:mod:`.messaging`, :mod:`.mobile_agent`, :mod:`.outbound`); the faults in
:mod:`.faults`; the release events in :mod:`.release_events`.

Typical use::

    async with FakeAICC() as fake:
        fake.inject(Fault.RESET_AFTER_PROCESSING)
        ...  # drive the client against fake.url
        assert fake.calls_to("88880000") == 1
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from aicc_async.testing.fake import (
    faults,
    messaging,
    mobile_agent,
    outbound,
    tokens,
    voice_notification,
)
from aicc_async.testing.fake._common import Answer, Exchange
from aicc_async.testing.fake.answers import Answers
from aicc_async.testing.fake.faults import Chaos, Fault, FaultSpec, check_non_negative
from aicc_async.testing.fake.flow_control import HiddenLimit
from aicc_async.testing.fake.mobile_agent import CalledParty
from aicc_async.testing.fake.release_events import ReleaseEventSender, SentReleaseEvent

if TYPE_CHECKING:
    from aicc_async import AICCClient  # type: ignore[attr-defined,unused-ignore]

__all__ = ["FakeAICC", "RecordedRequest"]

_UNKNOWN_ENDPOINT: Final = "unknown"
_PATHS: Final[Mapping[str, str]] = {
    tokens.PATH: tokens.ENDPOINT,
    voice_notification.PATH: voice_notification.ENDPOINT,
    messaging.APPLY_TOKEN_PATH: messaging.APPLY_TOKEN,
    messaging.LEAVE_MESSAGE_PATH: messaging.LEAVE_MESSAGE,
    mobile_agent.CREATE_CALL_PATH: mobile_agent.CREATE_CALL,
    mobile_agent.CALLED_INFO_PATH: mobile_agent.CALLED_INFO,
    outbound.MIDRESULT_PATH: outbound.MIDRESULT,
}
_ENDPOINTS: Final = frozenset(_PATHS.values())
_ALL_ENDPOINTS: Final = (*_PATHS.values(), _UNKNOWN_ENDPOINT)
_STATS_PATH: Final = "/_fake/stats"

_FIRST_SERIAL: Final = 1182700000000000
_SHUTDOWN_TIMEOUT: Final = 0.5
_KEEPALIVE_TIMEOUT: Final = 75.0


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


def _check_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and endpoint not in _ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(_ENDPOINTS)}")


class FakeAICC:
    """An AICC simulator serving real HTTP on ``host:port`` (a free port by default).

    It serves ``tokenByAkSk``, ``createVoiceNotification``, the CC-Messaging
    ``applyToken`` / ``doLeaveMessage`` pair, the mobile-agent ``createcall`` and
    ``getCalledInfo``, and the outbound ``midresult`` write-back on 127.0.0.1 with the
    validation rules of the real platform, records what it received, and can inject
    faults (latency, hangs, connection resets, gateway HTML pages, throttling, busy
    answers, token rejections) either on demand (:meth:`inject`) or at random with a
    fixed seed (:meth:`chaos`).

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

    For tests that run FakeAICC in another process (``python -m aicc_async.testing``),
    ``GET /_fake/stats`` answers :meth:`stats` as JSON (HTTP 200, no token needed; any
    other method is answered 405). It is not a business request: it is not recorded,
    not counted, and never gets faults or latency.

    Release events: a processed createVoiceNotification with ``callBackUrl`` makes the
    fake POST a release event to that URL after ``release_delay`` seconds (real time),
    answered with probability ``answer_rate`` (``random.Random(release_seed)``, drawn
    in processing order), signed with ``callback_key`` (None: unsigned), retried
    ``release_retries`` times (0.05, 0.1, 0.2 ... s apart) until it gets HTTP 200,
    and sent once more after delivery with probability ``duplicate_rate``.
    ``answers`` chooses, per called number and per attempt, whether the person
    answers, is busy or never answers (``{"88880001": ["no_answer", "answered"],
    "88880002": "never", "88880003": "busy"}``, or a callable ``(number, attempt)``):
    see :mod:`aicc_async.testing.fake.answers`; numbers it leaves out keep
    ``answer_rate``. See
    :mod:`aicc_async.testing.fake.release_events`, :attr:`release_events`,
    :meth:`wait_release_events`; :meth:`close` cancels pending deliveries.

    Flow control: ``hidden_rate_limit`` (requests per second, default none) answers
    HTTP 429 at once, unprocessed, to business requests above that rate (a token
    bucket ``hidden_burst`` deep, default 0.2 s worth), as a tenant's gateway does;
    :meth:`set_hidden_limit` changes it mid-run, :attr:`throttled` counts the 429s.
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
        answers: Answers | None = None,
        hidden_rate_limit: float | None = None,
        hidden_burst: float | None = None,
    ) -> None:
        if not (math.isfinite(latency) and latency >= 0):
            raise ValueError(f"latency must be a finite number >= 0, got {latency!r}")
        self.app_key = app_key
        self.app_secret = app_secret
        self._host = host
        self._port = port
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._tokens = tokens.Tokens(self._clock)
        self.token_reject_status = token_reject_status
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
            answers=answers,
        )
        serials = itertools.count(_FIRST_SERIAL + 1)  # shared by notifications and call tasks
        self._voice = voice_notification.VoiceNotifications(serials, self._release_events)
        self._messaging = messaging.Messaging(self._clock)
        self._mobile_agent = mobile_agent.MobileAgent(serials)
        self._outbound = outbound.Outbound()

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
        self._received: Counter[str] = Counter()
        self._processed: Counter[str] = Counter()
        self._queued: list[FaultSpec] = []
        self._chaos: Chaos | None = None
        self._in_flight = 0
        self._max_in_flight = 0
        self._hidden: HiddenLimit | None = None
        self._throttled = 0
        self.set_hidden_limit(hidden_rate_limit, hidden_burst)

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
        check_non_negative("delay", delay)
        check_non_negative("retry_after", retry_after)
        spec = FaultSpec(fault, endpoint, delay, retry_after)
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
        chaos = Chaos.seeded(seed, probability, faults, endpoint, delay, retry_after)
        _check_endpoint(endpoint)
        check_non_negative("delay", delay)
        check_non_negative("retry_after", retry_after)
        self._chaos = chaos

    def clear_faults(self) -> None:
        """Drop every queued fault and stop chaos."""
        self._queued.clear()
        self._chaos = None

    def set_hidden_limit(self, rate: float | None, burst: float | None = None) -> None:
        """Answer HTTP 429 (unprocessed) to business requests above ``rate`` per second
        from now on (``None``: no limit). ``burst``: how many may arrive at once after
        a pause (default 0.2 s worth). Raises ValueError for a bad value."""
        if self._hidden is not None:
            self._throttled += self._hidden.throttled
        self._hidden = None if rate is None else HiddenLimit(rate, burst, self._clock)

    @property
    def throttled(self) -> int:
        """Business requests the hidden rate limit answered 429 (see ``hidden_rate_limit``)."""
        return self._throttled + (0 if self._hidden is None else self._hidden.throttled)

    # ------------------------------------------------------------------ tokens

    @property
    def token_reject_status(self) -> int:
        """How a bad token is answered: 401 (JSON ``APIGW.0301``) or 403 (``APIGW.0307``)."""
        return self._tokens.reject_status

    @token_reject_status.setter
    def token_reject_status(self, value: int) -> None:
        if value not in (401, 403):
            raise ValueError(f"token_reject_status must be 401 or 403, got {value!r}")
        self._tokens.reject_status = value

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid right now."""
        self._tokens.expire()

    def expire_messaging_tokens(self) -> None:
        """Make every ccmessaging-token issued so far invalid right now."""
        self._messaging.expire()

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
        return self._voice.calls[called]

    def call_tasks_to(self, called: str) -> int:
        """How many createcall tasks were created for ``called`` (``record=False`` too)."""
        return self._mobile_agent.call_tasks[called]

    @property
    def write_backs(self) -> dict[str, int]:
        """Processed midresult write-backs per ``uniqueId`` (a copy; ``record=False`` too)."""
        return dict(self._outbound.write_backs)

    @property
    def token_requests(self) -> int:
        """How many tokenByAkSk requests arrived (whatever their outcome)."""
        return self._received[tokens.ENDPOINT]

    @property
    def rejected_token_requests(self) -> int:
        """Business requests refused for a missing/invalid/expired token (TOKEN_EXPIRED too)."""
        return self._tokens.rejected

    @property
    def messaging_token_requests(self) -> int:
        """How many applyToken requests arrived (whatever their outcome)."""
        return self._received[messaging.APPLY_TOKEN]

    @property
    def rejected_messaging_tokens(self) -> int:
        """doLeaveMessage requests refused (HTTP 401) for their ccmessaging-token."""
        return self._messaging.rejected

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
            "calls": dict(self._voice.calls),
            "call_tasks": dict(self._mobile_agent.call_tasks),
            "write_backs": dict(self._outbound.write_backs),
            "received": {name: self._received[name] for name in _ALL_ENDPOINTS},
            "processed": {name: self._processed[name] for name in _ALL_ENDPOINTS},
            "token_requests": self.token_requests,
            "rejected_token_requests": self.rejected_token_requests,
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "throttled": self.throttled,
            "release_events": self._release_events.stats(),
        }

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == _STATS_PATH:
            return self._stats_response(request)
        endpoint = _PATHS.get(request.path, _UNKNOWN_ENDPOINT)
        if request.method != "POST":
            endpoint = _UNKNOWN_ENDPOINT
        business = endpoint not in (tokens.ENDPOINT, _UNKNOWN_ENDPOINT)
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
        spec = None
        over_limit = False  # answered 429 by the hidden rate limit: at once, unprocessed
        if endpoint != _UNKNOWN_ENDPOINT:
            spec = faults.pick(self._queued, self._chaos, endpoint)
            hidden = self._hidden
            if spec is None and hidden is not None and endpoint != tokens.ENDPOINT:
                over_limit = not hidden.admit()
                if over_limit:
                    spec = FaultSpec(Fault.HTTP_429, endpoint, None, None)
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
        ex = Exchange(request, endpoint, headers, body, index)
        if endpoint == _UNKNOWN_ENDPOINT:
            if request.path in _PATHS:
                return web.json_response(
                    {"error_code": "APIGW.0405", "error_msg": "Method not allowed"}, status=405
                )
            return web.json_response(
                {"error_code": "APIGW.0404", "error_msg": "The API does not exist"}, status=404
            )
        if (
            self._latency > 0
            and endpoint != tokens.ENDPOINT
            and not over_limit
            and await self._wait(self._latency)
        ):
            return self._abort(request)
        if spec is None:
            return self._process(ex)
        return await self._apply_fault(ex, spec)

    async def _apply_fault(self, ex: Exchange, spec: FaultSpec) -> web.StreamResponse:
        fault = spec.fault
        if fault is Fault.LATENCY:
            delay = spec.delay if spec.delay is not None else faults.DEFAULT_LATENCY
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
            return faults.http_500()
        if fault in (Fault.HTML_502, Fault.HTML_504):
            self._process(ex)
            return faults.html(502 if fault is Fault.HTML_502 else 504, None)
        if fault is Fault.HTML_503:
            return faults.html(503, spec.retry_after)
        if fault is Fault.HTML_503_AFTER_PROCESSING:
            self._process(ex)
            return faults.html(503, 0.0 if spec.retry_after is None else spec.retry_after)
        if fault is Fault.HTTP_429:
            return faults.http_429(spec.retry_after)
        if fault is Fault.BUSY:
            return faults.busy(ex.endpoint)
        # Fault.TOKEN_EXPIRED
        return self._tokens.reject(ex)

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

    def _process(self, ex: Exchange) -> web.Response:
        """Answer as the real platform would, marking the request processed if it was."""
        if ex.endpoint == tokens.ENDPOINT:
            answer = self._tokens.issue(ex, self.app_key, self.app_secret)
        else:
            # midresult is the one business endpoint that does not check X-APP-Key.
            app_key = None if ex.endpoint == outbound.MIDRESULT else self.app_key
            refusal = self._tokens.refuse(ex, app_key)
            if refusal is not None:
                return refusal
            answer = self._answer(ex)
        if answer.processed:
            self._processed[ex.endpoint] += 1
            if ex.index is not None:
                self._requests[ex.index] = attrs.evolve(self._requests[ex.index], processed=True)
        return answer.response

    def _answer(self, ex: Exchange) -> Answer:
        """The service's answer to a business request whose token and body were accepted."""
        endpoint = ex.endpoint
        if endpoint == voice_notification.ENDPOINT:
            return self._voice.create(ex, self.trial_trustlist)
        if endpoint == messaging.APPLY_TOKEN:
            return self._messaging.apply_token(ex, self.messaging_channels)
        if endpoint == messaging.LEAVE_MESSAGE:
            return self._messaging.leave_message(
                ex, fails=self.leave_message_fails, rotate=self.rotate_messaging_token
            )
        if endpoint == mobile_agent.CREATE_CALL:
            return self._mobile_agent.create_call(ex, omit_call_serial_no=self.omit_call_serial_no)
        if endpoint == mobile_agent.CALLED_INFO:
            return self._mobile_agent.called_info(ex, self.called_parties, self.unobtainable)
        return self._outbound.midresult(ex, result_as_string=self.midresult_result_as_string)
