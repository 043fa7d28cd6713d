"""The session manager and request pipeline: throttle -> token -> send -> classify ->
retry/replay -> decode.

Endpoint modules hand the transport an ``Endpoint`` descriptor and a wire dict;
they never touch aiohttp. One ``aiohttp.ClientSession`` (one ``TCPConnector``
pool, keep-alive on) serves every call of a client and of the clients derived from
it by ``with_options``; a caller-supplied session is used as is and never closed here.

The transport sends each attempt once and classifies what came back; tokens (and
the replay after a rejected one) are ``auth.TokenAuth``'s flow, retries
``retry.Retrying``'s loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import aiohttp
import attrs

from aicc_async._wire import (
    ResponseInfo,
    code_of,
    decode_json,
    encode_json,
    structure_result,
    to_wire,
)
from aicc_async.adaptive import AdaptiveRate, AutoRate
from aicc_async.auth import (
    TOKEN_ENDPOINT,
    AccessToken,
    AccessTokenCache,
    Answer,
    SessionToken,
    TokenAuth,
    read_token,
    token_for,
    token_request,
)
from aicc_async.config import ClientConfig, Timeout, to_timeout
from aicc_async.errors import (
    AICCBusinessError,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCRateLimitError,
    AICCValidationError,
    Sent,
)
from aicc_async.redis_state import RedisAdaptiveRate, RedisRateCap, RedisState
from aicc_async.retry import (
    Failure,
    RetryableAttempt,
    RetryBudget,
    Retrying,
    classify_exception,
    classify_status,
    may_retry,
)
from aicc_async.throttle import RateLimiter, Throttle

__all__ = ["Endpoint", "ResponseInfo", "Transport"]

T = TypeVar("T")
ResultT = TypeVar("ResultT")

logger = logging.getLogger("aicc_async")

_EXCERPT = 300
_MIN_SECRET = 6  # shorter values are not masked: they would mangle ordinary text
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_CHUNK = 65536
_REDIRECT_ADVICE = "AICC answered with a redirect, which the SDK never follows: check base_url"
_HTTP_ADVICE = {
    400: "AICC called the request incorrect: check the path and parameters",
    401: "AICC refused the authorisation: check that the app is subscribed to this service",
    403: "AICC refused the authorisation: check the app key and its permissions",
    404: "the path was not found: check base_url",
    500: "AICC reported a business failure: check the values of the request's parameters",
}


@attrs.frozen
class Endpoint(Generic[ResultT]):
    """What the transport needs to know about one AICC interface.

    Args:
        name: the interface name used in errors and logs (``"createVoiceNotification"``).
        path: URL path below ``base_url``.
        group: throttle group (``"voice_notification"`` ...); ``None``: not throttled
            (token flows the SDK runs for itself).
        idempotent: whether sending it twice is harmless (see the retry table).
        code_field / message_field: where the body carries its result code and text.
        codes: documented result codes and their meanings (for error messages).
        retry_codes: result codes meaning "not taken, try again later".
        app_key_header: header carrying the app key, spelled as the interface's page does.
        request_type / result_type: the attrs classes of its request and its result
            (``None`` for the token flows the SDK runs itself).
        result_at: where the result sits in the answer: a field name, ``BODY`` (the
            whole body) or ``None`` (no payload: the result is the code and ``raw``).
    """

    name: str
    path: str
    group: str | None
    idempotent: bool
    code_field: str
    message_field: str
    codes: Mapping[str, str] = attrs.field(factory=dict)
    retry_codes: frozenset[str] = frozenset()
    app_key_header: str | None = "X-APP-Key"
    request_type: type[Any] | None = None
    result_type: type[ResultT] | None = None
    result_at: str | None = None


#: ``Endpoint.result_at`` for a result read from the whole answer body.
BODY = "."


class _TooLarge(Exception):
    """An answer went past ``max_response_bytes`` (raised inside ``_exchange``)."""


def _escapes(ch: str) -> list[str]:
    """Regex alternatives for one character as JSON may write it."""
    code = ord(ch)
    if code > 0xFFFF:
        code -= 0x10000
        units = [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
    else:
        units = [code]
    forms = [re.escape(ch), "".join(f"\\\\u(?i:{unit:04x})" for unit in units)]
    short = {"/": "/", '"': '"', "\\": "\\\\", "\n": "n", "\r": "r", "\t": "t"}.get(ch)
    if short is not None:
        forms.append(re.escape("\\" + short))
    return forms


def _secret_pattern(secret: str) -> str:
    """A regex matching ``secret`` written plainly or with any JSON escapes."""
    return "".join("(?:" + "|".join(_escapes(ch)) + ")" for ch in secret)


class _Shared:
    """What a client shares with the clients derived from it (``with_options``): the
    connection pool, the AccessToken, the retry budget, its event loop and the
    secrets to mask. Closed by the client that created it."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        budget: RetryBudget | None,
        redis: RedisState | None = None,
    ) -> None:
        self.session = session
        #: The state shared with other processes (``redis_url``), if any.
        self.redis = redis
        self.owns_session = session is None
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.budget = budget
        #: ccmessaging-tokens sent or handed out lately, masked in error texts.
        self.secrets: deque[str] = deque(maxlen=64)


class Transport:
    """Owns the HTTP session, the token cache and the throttle of one client.

    ``parent``: the transport of the client this one is derived from; the session,
    the token, the retry budget (and the throttle, unless ``limits`` / ``rate_limits``
    differ) are then the parent's, and closing this transport closes none of them.
    """

    def __init__(
        self,
        config: ClientConfig,
        session: aiohttp.ClientSession | None = None,
        *,
        parent: Transport | None = None,
    ) -> None:
        self.config = config
        self._parent = parent
        self._closed = False
        self._timeout = self._client_timeout(config.timeout)
        self._default_headers = dict(config.default_headers)
        self._headers: dict[str | None, dict[str, str]] = {}
        self._mask_key: tuple[str, ...] = ()
        self._mask_re: re.Pattern[str] | None = None
        if parent is None:
            budget = None if config.retry_budget is None else RetryBudget(config.retry_budget)
            redis = None
            if config.redis_url is not None:
                redis = RedisState(
                    config.redis_url,
                    token_endpoint=config.token_endpoint,
                    app_key=config.app_key,
                    fallback=config.redis_fallback,
                    clock=config.clock,
                    lock_timeout=2 * config.timeout.total + 5.0,
                )
            self._shared = _Shared(session, budget, redis)
            token_request = Retrying(
                config.retry, self._token_attempt, self._log_retry, config.clock, budget
            )
            self.tokens = AccessTokenCache(token_request, config.clock, redis)
            self.throttle = self._throttle(config)
        else:
            self._shared = parent._shared
            self.tokens = parent.tokens
            same = (config.limits, config.rate_limits) == (
                parent.config.limits,
                parent.config.rate_limits,
            )
            self.throttle = parent.throttle if same else self._throttle(config)
        self.auth = TokenAuth(self.tokens, config.clock, self)
        self._business = Retrying(
            config.retry, self._attempt, self._log_retry, config.clock, self._shared.budget
        )

    def _throttle(self, config: ClientConfig) -> Throttle:
        """The in-flight limits (always this process's) and the rate caps (tenant-wide
        in Redis with ``redis_url``)."""
        redis = self._shared.redis
        if redis is None:
            return Throttle(
                config.limits,
                config.rate_limits,
                auto=lambda group, spec: AdaptiveRate.from_spec(spec, clock=config.clock),
            )

        def cap(group: str, rate: float) -> RateLimiter:
            return RedisRateCap(redis, group, rate)

        def auto(group: str, spec: AutoRate) -> AdaptiveRate:
            return RedisAdaptiveRate(redis, group, spec, clock=config.clock)

        return Throttle(config.limits, config.rate_limits, cap, auto)

    @staticmethod
    def _client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=timeout.total, connect=timeout.connect)

    # -- session -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (here, or on the client this one is
        derived from)."""
        return self._closed or self._shared.closed

    @property
    def budget(self) -> RetryBudget | None:
        """The client-wide retry budget (``None``: no budget)."""
        return self._shared.budget

    @property
    def session_open(self) -> bool:
        """True while this transport holds an open session it must close."""
        shared = self._shared
        return (
            self._parent is None
            and shared.owns_session
            and shared.session is not None
            and not shared.session.closed
        )

    def _get_session(self) -> aiohttp.ClientSession:
        shared = self._shared
        session = shared.session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections,  # connections in the pool, all hosts
                ttl_dns_cache=300,  # seconds a DNS answer is reused
                keepalive_timeout=30,  # seconds an idle connection is kept for reuse
            )
            session = shared.session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                trust_env=self.config.trust_env,  # HTTP(S)_PROXY / NO_PROXY only if asked
            )
        return session

    @staticmethod
    def _closed_error(name: str) -> AICCConnectionError:
        return AICCConnectionError(
            f"{name} was not sent: this AICCClient is closed, so nothing was sent. "
            "Create a new AICCClient.",
            endpoint=name,
            retry_safe=False,
        )

    async def close(self) -> None:
        """Stop token refreshes and close the session if this transport opened it.

        A derived transport only stops sending: what it shares is its parent's.
        """
        self._closed = True
        if self._parent is not None:
            return
        shared = self._shared
        shared.closed = True
        try:
            foreign = shared.loop is not None and shared.loop is not asyncio.get_running_loop()
        except RuntimeError:
            foreign = True
        if foreign:
            # Closed from another loop than the one it ran in: what belonged to that
            # loop cannot be awaited here. Drop it; closing the pool marks it closed.
            self.tokens.forget()
            if shared.redis is not None:
                shared.redis.forget()
            if shared.owns_session and shared.session is not None:
                connector = shared.session.connector
                try:
                    if connector is not None:
                        await connector.close()
                except RuntimeError:
                    pass  # its loop is gone, and its sockets with it
            return
        await self.tokens.close()
        if shared.redis is not None:
            await shared.redis.close()
        if shared.owns_session and shared.session is not None:
            await shared.session.close()

    # -- business calls ------------------------------------------------------------------

    def _prepare(
        self,
        endpoint: Endpoint[Any],
        body: Mapping[str, Any],
        retry_unsafe: bool,
        timeout: Timeout | float | None,
    ) -> tuple[bytes, aiohttp.ClientTimeout]:
        """Check a call's options and that this client may send; the body as bytes
        and the per-attempt timeout. Raises ``AICCValidationError`` or (closed client,
        another event loop) ``AICCConnectionError``: nothing was sent."""
        if not isinstance(retry_unsafe, bool):
            raise AICCValidationError(
                f"retry_unsafe must be True or False, got {retry_unsafe!r}",
                field="retry_unsafe",
                endpoint=endpoint.name,
            )
        client_timeout = self._timeout
        if timeout is not None:
            try:
                client_timeout = self._client_timeout(to_timeout(timeout))
            except AICCValidationError as exc:
                raise AICCValidationError(
                    exc.message, field="timeout", endpoint=endpoint.name
                ) from None
        shared = self._shared
        if self._closed or shared.closed:
            raise self._closed_error(endpoint.name)
        loop = asyncio.get_running_loop()
        if loop is not shared.loop:
            if shared.loop is not None:
                raise AICCConnectionError(
                    f"{endpoint.name} was not sent: this AICCClient was first used in another "
                    "event loop (a second asyncio.run()?) and its connections, token and "
                    "limits belong to that loop, so nothing was sent. Create one AICCClient "
                    "per event loop, inside the loop that uses it.",
                    endpoint=endpoint.name,
                    retry_safe=False,
                )
            shared.loop = loop
        return encode_json(body), client_timeout

    async def call(
        self,
        endpoint: Endpoint[Any],
        body: Mapping[str, Any],
        *,
        retry_unsafe: bool = False,
        session_token: SessionToken | None = None,
        timeout: Timeout | float | None = None,
    ) -> tuple[dict[str, Any], ResponseInfo]:
        """Send ``body`` to ``endpoint``; return the decoded response body and the HTTP
        answer's metadata on success.

        ``session_token`` supplies a second, per-call token header (ccmessaging-token):
        it is fetched before a throttle slot is taken, dropped with the AccessToken when
        AICC rejects the request, and replaced by a fresh one the response may carry.
        ``timeout`` overrides the client's per-attempt timeout for this call (token
        requests keep the client's). Raises the ``AICCError`` subclass that describes
        the failure (see ``retry.py`` for what is retried).
        """
        data, client_timeout = self._prepare(endpoint, body, retry_unsafe, timeout)
        return await self._business(endpoint, data, retry_unsafe, session_token, client_timeout)

    async def send(
        self,
        endpoint: Endpoint[ResultT],
        request: object,
        *,
        retry_unsafe: bool = False,
        session_token: SessionToken | None = None,
        timeout: Timeout | float | None = None,
    ) -> ResultT:
        """The one request path of every endpoint: check ``request`` is the endpoint's
        request class, send its wire form (as :meth:`call` does), and read the result
        where the endpoint says it sits. Raises ``AICCValidationError`` for another
        class, else as :meth:`call` does; a success whose result cannot be read is
        reported like a 2xx that is not JSON."""
        wanted = endpoint.request_type
        if wanted is None or not isinstance(request, wanted):
            raise AICCValidationError(
                f"send() takes a {getattr(wanted, '__name__', None)}, got {type(request).__name__}",
                field="request",
                endpoint=endpoint.name,
            )
        data, client_timeout = self._prepare(endpoint, to_wire(request), retry_unsafe, timeout)
        # self._business(...) with its first attempt inline: one coroutine less per call.
        args = (endpoint, data, retry_unsafe, session_token, client_timeout)
        try:
            body, response = await self._attempt(*args)
        except RetryableAttempt as first:
            body, response = await self._business.after(first, *args)
        else:
            self._business.succeeded()
        at = endpoint.result_at
        payload = None if at is None else body if at == BODY else body.get(at)
        assert endpoint.result_type is not None
        try:
            return structure_result(endpoint.result_type, payload, body, response)
        except Exception:
            error = self._ambiguous(
                endpoint, "answered success with a result the SDK cannot read",
                status=response.status, raw=b"",
            )  # fmt: skip
            error.response = response
            raise error from None

    async def _attempt(
        self,
        endpoint: Endpoint[Any],
        data: bytes,
        retry_unsafe: bool,
        session_token: SessionToken | None,
        timeout: aiohttp.ClientTimeout,
    ) -> tuple[dict[str, Any], ResponseInfo]:
        """One attempt: tokens, a throttle slot, then the auth flow (the request sent
        once with the headers it gives, once more if it rejects the answer's tokens);
        the answer that stands is decoded or classified."""
        name, group = endpoint.name, endpoint.group
        # Tokens before the slot: a slow or dead token endpoint must not hold slots, and
        # every caller waiting for one fetch gets its result (or its failure) at once.
        if session_token is not None:
            await token_for(name, session_token.get)
        token = self.tokens.fresh() or await token_for(name, self.tokens.get)
        headers = self._headers.get(endpoint.app_key_header)
        if headers is None:
            headers = self._base_headers(endpoint.app_key_header)
        auth, replay = self.auth, False
        if group is not None:
            await self.throttle.acquire(group)
        heard = self.throttle.feedback(group)  # rate="auto" (adaptive.py) hears the answer
        try:
            while True:  # at most twice: a rejected replay raises
                if replay and group is not None:
                    await self.throttle.pace(group)  # the replay is a start: the rate cap counts it
                sent = await auth.authorise(name, headers, session_token, token, replay=replay)
                answer = await self._exchange(
                    name, self.config.base_url + endpoint.path, data, sent.headers,
                    idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe, timeout=timeout,
                )  # fmt: skip
                if sent.second is not None:
                    # The call's own token is never shown in an error message.
                    answer = answer._replace(raw=self._mask_bytes(answer.raw, sent.second))
                if auth.answered(name, answer, session_token, sent, replay=replay):
                    break
                replay = True
        finally:
            if group is not None:
                self.throttle.release(group)
        info = ResponseInfo(answer.status, raw_headers=answer.headers, mask=self.mask)
        if heard is None:
            if 200 <= answer.status < 300:
                return self._decode(endpoint, info, answer.raw, retry_unsafe), info
            raise self._status_error(endpoint, info, answer.raw, retry_unsafe)
        # -- rate="auto" hook (keep small): the answer, throttled or not, tunes the rate --
        try:
            if not 200 <= answer.status < 300:
                raise self._status_error(endpoint, info, answer.raw, retry_unsafe)
            body = self._decode(endpoint, info, answer.raw, retry_unsafe)
        except Exception as exc:
            heard(exc)
            raise
        heard(None)
        return body, info

    def _base_headers(self, app_key_header: str | None) -> dict[str, str]:
        """The headers of every request to an interface taking ``app_key_header``
        (built once, kept in ``self._headers``)."""
        headers = {**self._default_headers, "Content-Type": "application/json"}
        if app_key_header:
            headers[app_key_header] = self.config.app_key
        self._headers[app_key_header] = headers
        return headers

    def _decode(
        self, endpoint: Endpoint[Any], info: ResponseInfo, raw: bytes, retry_unsafe: bool
    ) -> dict[str, Any]:
        try:
            body = decode_json(raw)
        except (ValueError, RecursionError):  # not JSON, or nested beyond reason
            body = None
        code = code_of(body, endpoint.code_field) if isinstance(body, dict) else None
        if code is None or not isinstance(body, dict):
            error = self._ambiguous(
                endpoint,
                f"answered HTTP {info.status} without a readable {endpoint.code_field}",
                status=info.status,
                raw=raw,
            )
            error.response = info
            raise self._maybe_retry(error, Failure.AMBIGUOUS, endpoint, retry_unsafe)
        if code == "0":
            return body
        body = self._masked_body(raw, body)
        description = body.get(endpoint.message_field)
        description = None if description is None else str(description)
        meaning = endpoint.codes.get(code)
        explained = f" ({meaning})" if meaning else ""
        said = f": {description}" if description else ""
        busy = code in endpoint.retry_codes
        business = AICCBusinessError(
            f"{endpoint.name} was refused with {endpoint.code_field} {code}{explained}{said}",
            endpoint=endpoint.name,
            code=code,
            description=description,
            meaning=meaning,
            raw=body,
            retry_safe=busy,
            status=info.status,
        )
        business.response = info
        if busy:
            raise RetryableAttempt(business)
        raise business

    def _status_error(
        self, endpoint: Endpoint[Any], info: ResponseInfo, raw: bytes, retry_unsafe: bool
    ) -> Exception:
        status = info.status
        retry_after = info.retry_after
        waitable = retry_after is None or retry_after <= self.config.retry.max_delay
        failure = classify_status(status)
        if failure is Failure.AMBIGUOUS:
            error: AICCError = self._ambiguous(
                endpoint,
                f"got HTTP {status} from the gateway",
                status=status,
                raw=raw,
                retry_after=retry_after,
            )
            error.response = info
            if waitable and may_retry(
                failure, idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe
            ):
                return RetryableAttempt(error, retry_after)
            return error
        advice = _HTTP_ADVICE.get(status, "see the body for details")
        if 300 <= status < 400:
            advice = _REDIRECT_ADVICE
        if failure is Failure.NOT_SENT:
            advice = "AICC is throttling; it did not process the request, so send it again later"
        excerpt = self.excerpt(raw)
        message = f"{endpoint.name} failed with HTTP {status}: {advice}. Body: {excerpt!r}"
        if failure is Failure.NOT_SENT:
            error = AICCRateLimitError(
                message, endpoint=endpoint.name, status=status, body=excerpt,
                retry_after=retry_after,
            )  # fmt: skip
        else:
            error = AICCHTTPError(message, endpoint=endpoint.name, status=status, body=excerpt)
        error.response = info
        if failure is Failure.NOT_SENT and waitable:
            return RetryableAttempt(error, retry_after)
        return error

    def _ambiguous(
        self,
        endpoint: Endpoint[Any],
        what: str,
        *,
        status: int,
        raw: bytes,
        retry_after: float | None = None,
    ) -> AICCError:
        excerpt = self.excerpt(raw)
        if endpoint.idempotent:
            shown = f"Body: {excerpt!r}" if raw else "No body shown."
            return AICCHTTPError(
                f"{endpoint.name} {what}; sending it again is harmless. {shown}",
                endpoint=endpoint.name,
                status=status,
                body=excerpt,
                sent=Sent.MAYBE_PROCESSED,
                retry_safe=True,
                retry_after=retry_after,
            )
        return AICCOutcomeUnknownError(
            f"{endpoint.name} {what} ({f'body: {excerpt!r}' if raw else 'no body shown'}); "
            "AICC may have processed it. "
            "It was not sent again: check its outcome before sending it again.",
            endpoint=endpoint.name,
            status=status,
            retry_after=retry_after,
        )

    @staticmethod
    def _maybe_retry(
        error: AICCError, failure: Failure, endpoint: Endpoint[Any], retry_unsafe: bool
    ) -> Exception:
        if may_retry(failure, idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe):
            return RetryableAttempt(error)
        return error

    # -- the wire ------------------------------------------------------------------------

    async def _exchange(
        self,
        name: str,
        url: str,
        data: bytes,
        headers: Mapping[str, str],
        *,
        idempotent: bool,
        retry_unsafe: bool,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Answer:
        """POST once; return the answer, or raise a classified error.

        The body is read up to ``max_response_bytes`` (after decompression); a longer
        answer is abandoned at once and never retried.
        """
        if self._closed or self._shared.closed:
            raise self._closed_error(name)
        session = self._shared.session or self._get_session()
        if not self._shared.owns_session and session.closed:
            raise AICCConnectionError(
                f"{name} was not sent: the aiohttp session passed to AICCClient is closed",
                endpoint=name,
                retry_safe=False,
            )
        status, cap = 0, self.config.max_response_bytes
        try:
            # Never follow a redirect (it would re-send the body, secret included, to
            # another URL) and never run a caller session's middlewares (one might retry).
            async with session.post(
                url,
                data=data,
                headers=headers,
                timeout=timeout or self._timeout,
                raise_for_status=False,
                allow_redirects=False,
                middlewares=(),
                proxy=self.config.proxy,
            ) as resp:
                status = resp.status
                length = resp.headers.get("Content-Length", "")
                if not length.isdigit() or int(length) > cap or "Content-Encoding" in resp.headers:
                    raw = await self._read_capped(resp, cap)
                else:  # the common case: a small, plain, sized answer
                    raw = await resp.read()
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("POST %s -> HTTP %d, %d bytes", name, resp.status, len(raw))
                return Answer(resp.status, resp.headers, raw)
        except _TooLarge as exc:
            raise self._too_large(name, status, idempotent, exc.args[0]) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            failure = classify_exception(exc)
            reason = self.mask(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
            error: AICCError
            if failure is Failure.NOT_SENT:
                error = AICCConnectionError(
                    f"{name} could not reach AICC ({reason}); nothing was sent. "
                    "Check base_url and the network.",
                    endpoint=name,
                )
            elif idempotent:
                error = AICCOutcomeUnknownError(
                    f"{name} got no answer ({reason}); sending it again is harmless.",
                    endpoint=name,
                    retry_safe=True,
                )
            else:
                error = AICCOutcomeUnknownError(
                    f"{name} was sent but no answer came back ({reason}); AICC may have "
                    "processed it. It was not sent again: check its outcome before sending "
                    "it again.",
                    endpoint=name,
                )
            if may_retry(failure, idempotent=idempotent, retry_unsafe=retry_unsafe):
                raise RetryableAttempt(error) from exc
            raise error from exc
        except ValueError as exc:
            # aiohttp refuses to build the request (a header it cannot send): not sent.
            raise AICCConnectionError(
                f"{name} was not sent: the request could not be built ({type(exc).__name__})",
                endpoint=name,
                retry_safe=False,
            ) from None

    @staticmethod
    async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
        """The body, at most ``cap`` bytes of it (decompressed); raises ``_TooLarge``
        (closing the connection) beyond that."""
        chunks: list[bytes] = []
        total = 0
        while chunk := await resp.content.read(_CHUNK):
            total += len(chunk)
            if total > cap:
                resp.close()  # drops the connection: nothing more is read
                raise _TooLarge(cap)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _too_large(name: str, status: int, idempotent: bool, cap: int) -> AICCError:
        if idempotent:
            return AICCHTTPError(
                f"{name} answered HTTP {status} with more than max_response_bytes ({cap} "
                "bytes); the answer was dropped unread and the request was not retried. "
                "Raise max_response_bytes if answers this large are expected.",
                endpoint=name,
                status=status,
                body="",
                sent=Sent.MAYBE_PROCESSED,
                retry_safe=True,
            )
        return AICCOutcomeUnknownError(
            f"{name} was sent, but its answer (HTTP {status}) is larger than "
            f"max_response_bytes ({cap} bytes) and was dropped unread; AICC may have "
            "processed it. It was not sent again: check its outcome before sending it again.",
            endpoint=name,
            status=status,
        )

    # -- tokens --------------------------------------------------------------------------

    async def _token_attempt(self, started_at: float) -> AccessToken:
        """One tokenByAkSk request (``auth`` builds it and reads the answer); a 429 or
        an ambiguous 5xx is retried."""
        cfg = self.config
        data, headers = token_request(
            cfg.app_key, cfg.app_secret, cfg.token_ttl, self._default_headers
        )
        answer = await self._exchange(
            TOKEN_ENDPOINT, cfg.token_endpoint, data, headers, idempotent=True, retry_unsafe=False
        )
        info = ResponseInfo(answer.status, raw_headers=answer.headers, mask=self.mask)
        try:
            return read_token(
                info, answer.raw, requested=cfg.token_ttl, started_at=started_at, redactor=self
            )
        except AICCError as error:
            retry_after = error.retry_after
            if classify_status(answer.status) is not None and (
                retry_after is None or retry_after <= cfg.retry.max_delay
            ):
                raise RetryableAttempt(error, retry_after) from None
            raise

    # -- masking -------------------------------------------------------------------------

    def remember(self, value: str) -> None:
        """Mask ``value`` (a ccmessaging-token) in error texts from now on."""
        secrets = self._shared.secrets
        if value not in secrets:
            secrets.append(value)

    def _pattern(self, *extra: str) -> re.Pattern[str] | None:
        secrets = sorted(
            {
                s
                for s in (
                    self.config.app_secret,
                    *self.tokens.recent,
                    *self._shared.secrets,
                    *extra,
                )
                if s and len(s) >= _MIN_SECRET
            },
            key=len,
            reverse=True,
        )
        key = tuple(secrets)
        if key != self._mask_key:
            self._mask_key = key
            self._mask_re = re.compile("|".join(map(_secret_pattern, secrets))) if key else None
        return self._mask_re

    def mask(self, text: str) -> str:
        """``text`` with the app secret and every recent token masked, whether written
        plainly or JSON-escaped (``\\u00e9``, ``\\/``)."""
        pattern = self._pattern()
        return text if pattern is None else pattern.sub("***", text)

    def _mask_bytes(self, raw: bytes, secret: str) -> bytes:
        """``raw`` with ``secret`` (and every other known secret) masked."""
        pattern = self._pattern(secret)
        if pattern is None:
            return raw
        text = raw.decode("utf-8", errors="replace")
        masked = pattern.sub("***", text)
        return raw if masked == text else masked.encode()

    def _masked_body(self, raw: bytes, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as parsed from ``raw`` with every known secret masked in it."""
        text = raw.decode("utf-8", errors="replace")
        masked = self.mask(text)
        if masked == text:
            return body
        try:
            again = json.loads(masked)
        except (ValueError, RecursionError):
            again = None
        return again if isinstance(again, dict) else {"masked": self.excerpt(raw)}

    def excerpt(self, body: bytes, *secrets: str | None) -> str:
        """A short, tag-free excerpt of a server's answer, with the app secret, recent
        tokens and ``secrets`` masked (masked before cutting, so no prefix leaks)."""
        text = body[:65536].decode("utf-8", errors="replace")
        pattern = self._pattern(*(s for s in secrets if s))
        if pattern is not None:
            text = pattern.sub("***", text)
        text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
        return text[:_EXCERPT]

    @staticmethod
    def _log_retry(details: dict[str, Any]) -> None:
        # Only what the SDK itself knows: server text could echo a phone number.
        error = details["exception"].error
        detail = getattr(error, "code", None) or getattr(error, "status", None)
        logger.info(
            "%s: attempt %d failed (%s%s), retrying in %.2f s",
            error.endpoint,
            details["tries"],
            type(error).__name__,
            f" {detail}" if detail else "",
            details["wait"],
        )
