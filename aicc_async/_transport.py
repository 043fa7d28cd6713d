"""The request pipeline: throttle -> token -> send -> classify -> retry/replay -> decode.

Endpoint modules hand the transport an ``Endpoint`` descriptor (``_endpoint``) and
a request; they never touch aiohttp. The transport sends each attempt once over
the client's session (``_session``) and hands what came back to ``_decoding``;
what a failure means and the error it raises are ``_failures``'; tokens (and the
replay after a rejected one) are ``auth.TokenAuth``'s flow, retries
``retry.Retrying``'s loop, masking ``_masking``'s.

Where each step sits: :meth:`Transport.send` (check, encode, first attempt, retry
loop, result), :meth:`Transport._attempt` (tokens, throttle slot, auth flow),
:meth:`Transport._exchange` (one POST and its answer's body).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp

from aicc_async._decoding import TooLarge, decode, read_capped, result_of, sized
from aicc_async._endpoint import BODY, Endpoint
from aicc_async._failures import TRANSPORT_ERRORS, Failures, not_sent
from aicc_async._log import ATTEMPT, ROW
from aicc_async._masking import Redactor
from aicc_async._session import Shared, client_timeout, closed_error
from aicc_async._wire import ResponseInfo, encode_json, to_wire
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
from aicc_async.config import ClientConfig, Timeout, check_headers, to_timeout
from aicc_async.errors import AICCError, AICCValidationError, check_flag
from aicc_async.redis_state import RedisAdaptiveRate, RedisRateCap, RedisState
from aicc_async.retry import RetryableAttempt, RetryBudget, Retrying
from aicc_async.throttle import RateLimiter, Throttle

__all__ = ["BODY", "Endpoint", "ResponseInfo", "Transport"]

ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)


def _call_headers(
    endpoint: Endpoint[Any], headers: Mapping[str, str] | None
) -> Mapping[str, str] | None:
    """A call's ``headers=`` checked (``AICCValidationError`` before any I/O)."""
    if headers is None:
        return None
    try:
        return check_headers("headers", headers)
    except AICCValidationError as exc:
        raise AICCValidationError(exc.message, field="headers", endpoint=endpoint.name) from None


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
        self._timeout = client_timeout(config.timeout)
        self._default_headers = dict(config.default_headers)
        self._headers: dict[str | None, dict[str, str]] = {}
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
                    timeout=config.timeout.connect,
                )
            shared = self._shared = Shared(config, session, budget, redis)
            token_request = Retrying(
                config.retry, self._token_attempt, self._log_retry, config.clock, budget
            )
            shared.tokens = AccessTokenCache(token_request, config.clock, redis)
            shared.redactor = Redactor(config.app_secret, shared.tokens.recent)
            self.throttle = self._throttle(config)
        else:
            self._shared = parent._shared
            same = (config.limits, config.rate_limits) == (
                parent.config.limits,
                parent.config.rate_limits,
            )
            self.throttle = parent.throttle if same else self._throttle(config)
        self.tokens = self._shared.tokens
        self.redactor = self._shared.redactor
        self.auth = TokenAuth(self.tokens, config.clock, self.redactor)
        self.failures = Failures(self.redactor, config.retry.max_delay)
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
        return self._parent is None and self._shared.open

    async def close(self) -> None:
        """Stop token refreshes and close the session if this transport opened it.

        A derived transport only stops sending: what it shares is its parent's.
        """
        self._closed = True
        if self._parent is None:
            await self._shared.close()

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
        if retry_unsafe is not True and retry_unsafe is not False:  # no call per request
            check_flag("retry_unsafe", retry_unsafe, endpoint=endpoint.name)
        attempt_timeout = self._timeout
        if timeout is not None:
            try:
                attempt_timeout = client_timeout(to_timeout(timeout))
            except AICCValidationError as exc:
                raise AICCValidationError(
                    exc.message, field="timeout", endpoint=endpoint.name
                ) from None
        if self._closed:
            raise closed_error(endpoint.name)
        self._shared.enter(endpoint.name)
        return encode_json(body), attempt_timeout

    async def send(
        self,
        endpoint: Endpoint[ResultT],
        request: object,
        *,
        retry_unsafe: bool = False,
        session_token: SessionToken | None = None,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ResultT:
        """The one request path of every endpoint: check ``request`` is the endpoint's
        request class, send its wire form (as :meth:`call` does), and read the result
        where the endpoint says it sits.

        ``session_token`` supplies a second, per-call token header (ccmessaging-token):
        it is fetched before a throttle slot is taken, dropped with the AccessToken when
        AICC rejects the request, and replaced by a fresh one the response may carry.
        ``timeout`` overrides the client's per-attempt timeout for this call (token
        requests keep the client's); ``headers`` adds headers to this call only (those
        the SDK sets itself are refused). Raises ``AICCValidationError`` for another class,
        else the ``AICCError`` subclass that describes the failure (``_failures`` says
        what is retried); a success whose result cannot be read is reported like a
        2xx that is not JSON."""
        wanted = endpoint.request_type
        if wanted is None or not isinstance(request, wanted):
            raise AICCValidationError(
                f"send() takes a {getattr(wanted, '__name__', None)}, got {type(request).__name__}",
                field="request",
                endpoint=endpoint.name,
            )
        data, attempt_timeout = self._prepare(endpoint, to_wire(request), retry_unsafe, timeout)
        extra = _call_headers(endpoint, headers)
        # self._business(...) with its first attempt inline: one coroutine less per call.
        args = (endpoint, data, retry_unsafe, session_token, attempt_timeout, extra)
        try:
            body, response = await self._attempt(*args)
        except RetryableAttempt as first:
            body, response = await self._business.after(first, *args)
        else:
            self._business.succeeded()
        return result_of(endpoint, body, response, self.failures)

    async def _attempt(
        self,
        endpoint: Endpoint[Any],
        data: bytes,
        retry_unsafe: bool,
        session_token: SessionToken | None,
        timeout: aiohttp.ClientTimeout,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], ResponseInfo]:
        """One attempt: tokens, a throttle slot, then the auth flow (the request sent
        once with the headers it gives, once more if it rejects the answer's tokens);
        the answer that stands is decoded or classified. ``extra_headers``: the call's
        own (checked), on top of the client's."""
        name, group = endpoint.name, endpoint.group
        # Tokens before the slot: a slow or dead token endpoint must not hold slots, and
        # every caller waiting for one fetch gets its result (or its failure) at once.
        if session_token is not None:
            await token_for(name, session_token.get)
        token = self.tokens.fresh() or await token_for(name, self.tokens.get)
        headers = self._headers.get(endpoint.app_key_header)
        if headers is None:
            headers = self._base_headers(endpoint.app_key_header)
        if extra_headers:  # a call's own headers replace the client's of the same name
            replaced = {header.lower() for header in extra_headers}
            headers = {k: v for k, v in headers.items() if k.lower() not in replaced}
            headers.update(extra_headers)
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
                    answer = answer._replace(raw=self.redactor.mask_bytes(answer.raw, sent.second))
                if auth.answered(name, answer, session_token, sent, replay=replay):
                    break
                replay = True
        finally:
            if group is not None:
                self.throttle.release(group)
        info = ResponseInfo(answer.status, raw_headers=answer.headers, mask=self.redactor.mask)
        if heard is None:
            if 200 <= answer.status < 300:
                return decode(endpoint, info, answer.raw, retry_unsafe, self.failures), info
            raise self.failures.status(endpoint, info, answer.raw, retry_unsafe)
        # -- rate="auto" (adaptive.py): the answer, throttled or not, tunes the rate --
        try:
            if not 200 <= answer.status < 300:
                raise self.failures.status(endpoint, info, answer.raw, retry_unsafe)
            body = decode(endpoint, info, answer.raw, retry_unsafe, self.failures)
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
            raise closed_error(name)
        session = self._shared.session or self._shared.open_session()
        if not self._shared.owns_session and session.closed:
            raise not_sent(name, "the aiohttp session passed to AICCClient is closed")
        status, cap = 0, self.config.max_response_bytes
        started = time.perf_counter()  # for the request's DEBUG line
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
                raw = await resp.read() if sized(resp, cap) else await read_capped(resp, cap)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "POST %s -> HTTP %d, %d bytes in %.1f ms (%s)",
                        name, resp.status, len(raw), (time.perf_counter() - started) * 1000,
                        self._request_context(resp.headers),
                    )  # fmt: skip
                return Answer(resp.status, resp.headers, raw)
        except TooLarge as exc:
            raise self.failures.too_large(name, status, idempotent, exc.args[0]) from None
        except TRANSPORT_ERRORS as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "POST %s -> %s after %.1f ms (%s)",
                    name, type(exc).__name__, (time.perf_counter() - started) * 1000,
                    self._request_context(None),
                )  # fmt: skip
            failed = self.failures.no_answer(
                name, exc, idempotent=idempotent, retry_unsafe=retry_unsafe
            )
            raise failed from exc
        except ValueError as exc:
            # aiohttp refuses to build the request (a header it cannot send): not sent.
            why = f"the request could not be built ({type(exc).__name__})"
            raise not_sent(name, why) from None

    def _request_context(self, headers: Mapping[str, str] | None) -> str:
        """The attempt, AICC's request id (masked) and the campaign row of a request's
        DEBUG line."""
        parts = [f"attempt {ATTEMPT.get()}"]
        if headers is not None:
            request_id = ResponseInfo(0, raw_headers=headers, mask=self.redactor.mask).request_id
            if request_id:
                parts.append(f"request id {request_id}")
        row = ROW.get()
        if row is not None:
            parts.append(f"row {row}")
        return ", ".join(parts)

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
        info = ResponseInfo(answer.status, raw_headers=answer.headers, mask=self.redactor.mask)
        try:
            return read_token(
                info,
                answer.raw,
                requested=cfg.token_ttl,
                started_at=started_at,
                redactor=self.redactor,
            )
        except AICCError as error:
            raise self.failures.token_answer(error, answer.status) from None

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
