"""The session manager and request pipeline: throttle -> token -> send -> classify ->
retry/replay -> decode.

Endpoint modules hand the transport an ``Endpoint`` descriptor and a wire dict;
they never touch aiohttp. One ``aiohttp.ClientSession`` (one ``TCPConnector``
pool, keep-alive on) serves every call of a client; a caller-supplied session is
used as is and never closed here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs

from aicc_async._wire import code_of
from aicc_async.auth import AccessToken, AccessTokenCache, SessionToken
from aicc_async.config import ClientConfig
from aicc_async.errors import (
    AICCAuthError,
    AICCBusinessError,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCValidationError,
)
from aicc_async.retry import (
    Failure,
    RetryableAttempt,
    classify_exception,
    classify_status,
    may_retry,
    parse_retry_after,
    with_retries,
)
from aicc_async.throttle import Throttle

__all__ = ["Endpoint", "Transport"]

logger = logging.getLogger("aicc_async")

TOKEN_ENDPOINT = "tokenByAkSk"  # noqa: S105 - an interface name
_EXCERPT = 300
_MIN_SECRET = 6  # shorter values are not masked: they would mangle ordinary text
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_REDIRECT_ADVICE = "AICC answered with a redirect, which the SDK never follows: check base_url"
_HTTP_ADVICE = {
    400: "AICC called the request incorrect: check the path and parameters",
    401: "AICC refused the authorisation: check that the app is subscribed to this service",
    403: "AICC refused the authorisation: check the app key and its permissions",
    404: "the path was not found: check base_url",
    500: "AICC reported a business failure: check the values of the request's parameters",
}


@attrs.frozen
class Endpoint:
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


class Transport:
    """Owns the HTTP session, the token cache and the throttle of one client."""

    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout.total, connect=config.timeout.connect
        )
        self.tokens = AccessTokenCache(self._fetch_token, config.clock)
        self.throttle = Throttle(config.limits, config.rate_limits)
        self._business = with_retries(config.retry, self._attempt, self._log_retry)
        self._token_request = with_retries(config.retry, self._token_attempt, self._log_retry)

    # -- session -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def session_open(self) -> bool:
        """True while this transport holds an open session it must close."""
        return self._owns_session and self._session is not None and not self._session.closed

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections,  # connections in the pool, all hosts
                ttl_dns_cache=300,  # seconds a DNS answer is reused
                keepalive_timeout=30,  # seconds an idle connection is kept for reuse
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, raise_for_status=False
            )
        return session

    async def close(self) -> None:
        """Stop token refreshes and close the session if this transport opened it."""
        self._closed = True
        await self.tokens.close()
        if self._owns_session and self._session is not None:
            await self._session.close()

    # -- business calls ------------------------------------------------------------------

    async def call(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        *,
        retry_unsafe: bool = False,
        session_token: SessionToken | None = None,
    ) -> dict[str, Any]:
        """Send ``body`` to ``endpoint`` and return the decoded response body on success.

        ``session_token`` supplies a second, per-call token header (ccmessaging-token):
        it is fetched before a throttle slot is taken, dropped with the AccessToken when
        AICC rejects the request, and replaced by a fresh one the response may carry.
        Raises the ``AICCError`` subclass that describes the failure (see ``retry.py``
        for what is retried).
        """
        if self._closed:
            raise RuntimeError("this AICCClient is closed; create a new one")
        if not isinstance(retry_unsafe, bool):
            raise AICCValidationError(
                f"retry_unsafe must be True or False, got {retry_unsafe!r}",
                field="retry_unsafe",
                endpoint=endpoint.name,
            )
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            return await self._business(endpoint, data, retry_unsafe, session_token)
        except RetryableAttempt as exc:
            raise exc.error from exc.__cause__

    async def _attempt(
        self,
        endpoint: Endpoint,
        data: bytes,
        retry_unsafe: bool,
        session_token: SessionToken | None,
    ) -> dict[str, Any]:
        group = endpoint.group
        if session_token is not None:
            # Before the slot: applying for it may itself be a request.
            await self._token_for(endpoint, session_token.get)
        if group is not None:
            await self.throttle.acquire(group)
        try:
            status, headers, raw = await self._send_authorised(
                endpoint, data, retry_unsafe, session_token
            )
        finally:
            if group is not None:
                self.throttle.release(group)
        if 200 <= status < 300:
            return self._decode(endpoint, status, raw, retry_unsafe)
        raise self._status_error(endpoint, status, headers, raw, retry_unsafe)

    async def _send_authorised(
        self,
        endpoint: Endpoint,
        data: bytes,
        retry_unsafe: bool,
        session_token: SessionToken | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send with the current token(s); on a rejection refresh once and replay once.

        A 401 does not say which token was refused, so both are dropped.
        """
        for replay in (False, True):
            token = await self._token_for(endpoint, self.tokens.get)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            if endpoint.app_key_header:
                headers[endpoint.app_key_header] = self.config.app_key
            second = None
            if session_token is not None:
                second = await self._token_for(endpoint, session_token.get)
                headers[session_token.header] = second
            status, resp_headers, raw = await self._exchange(
                endpoint.name, self.config.base_url + endpoint.path, data, headers,
                idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe,
            )  # fmt: skip
            if session_token is not None:
                fresh = resp_headers.get(session_token.header)
                if fresh:
                    session_token.adopt(fresh)
                if second is not None and len(second) >= _MIN_SECRET and second.encode() in raw:
                    raw = raw.replace(second.encode(), b"***")  # never in an error message
            if not (status == 401 or (status == 403 and b"auth fail" in raw.lower())):
                return status, resp_headers, raw
            self.tokens.invalidate(token)
            if session_token is not None and second is not None:
                session_token.invalidate(second)
            if replay:
                which = "AccessToken"
                if session_token is not None:
                    which += f" or {session_token.header} (check one you passed)"
                raise AICCAuthError(
                    f"AICC rejected a fresh {which} for {endpoint.name} (HTTP {status}): "
                    "check that the app key is subscribed to this service and that the "
                    "account is active. Nothing was processed.",
                    endpoint=endpoint.name,
                    status=status,
                    reason=self._excerpt(raw),
                )
            logger.debug("%s: token rejected (HTTP %d), replaying once", endpoint.name, status)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _token_for(endpoint: Endpoint, get: Callable[[], Awaitable[str]]) -> str:
        """A token for ``endpoint``. A token request that could not be completed means
        ``endpoint`` was not sent: never report that as an unknown outcome."""
        try:
            return await get()
        except (AICCConnectionError, AICCHTTPError) as exc:
            raise AICCConnectionError(
                f"{endpoint.name} was not sent: no token could be obtained ({exc.message})",
                endpoint=endpoint.name,
            ) from exc

    def _decode(
        self, endpoint: Endpoint, status: int, raw: bytes, retry_unsafe: bool
    ) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        code = code_of(body, endpoint.code_field) if isinstance(body, dict) else None
        if code is None or not isinstance(body, dict):
            error = self._ambiguous(
                endpoint,
                f"answered HTTP {status} without a readable {endpoint.code_field}",
                status=status,
                raw=raw,
            )
            raise self._maybe_retry(error, Failure.AMBIGUOUS, endpoint, retry_unsafe)
        if code == "0":
            return body
        description = body.get(endpoint.message_field)
        description = None if description is None else str(description)
        meaning = endpoint.codes.get(code)
        explained = f" ({meaning})" if meaning else ""
        said = f": {description}" if description else ""
        error = AICCBusinessError(
            f"{endpoint.name} was refused with {endpoint.code_field} {code}{explained}{said}",
            endpoint=endpoint.name,
            code=code,
            description=description,
            meaning=meaning,
            raw=body,
        )
        if code in endpoint.retry_codes:
            raise RetryableAttempt(error)
        raise error

    def _status_error(
        self,
        endpoint: Endpoint,
        status: int,
        headers: Mapping[str, str],
        raw: bytes,
        retry_unsafe: bool,
    ) -> Exception:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        failure = classify_status(status, retry_after)
        if failure is Failure.AMBIGUOUS:
            error: AICCError = self._ambiguous(
                endpoint, f"got HTTP {status} from the gateway", status=status, raw=raw
            )
            return self._maybe_retry(error, failure, endpoint, retry_unsafe)
        advice = _HTTP_ADVICE.get(status, "see the body for details")
        if 300 <= status < 400:
            advice = _REDIRECT_ADVICE
        if failure is Failure.NOT_SENT:
            advice = "AICC is throttling; it did not process the request, so send it again later"
        excerpt = self._excerpt(raw)
        error = AICCHTTPError(
            f"{endpoint.name} failed with HTTP {status}: {advice}. Body: {excerpt!r}",
            endpoint=endpoint.name,
            status=status,
            body=excerpt,
        )
        if failure is Failure.NOT_SENT and (
            retry_after is None or retry_after <= self.config.retry.max_delay
        ):
            return RetryableAttempt(error, retry_after)
        return error

    def _ambiguous(self, endpoint: Endpoint, what: str, *, status: int, raw: bytes) -> AICCError:
        excerpt = self._excerpt(raw)
        if endpoint.idempotent:
            return AICCHTTPError(
                f"{endpoint.name} {what}; sending it again is harmless. Body: {excerpt!r}",
                endpoint=endpoint.name,
                status=status,
                body=excerpt,
            )
        return AICCOutcomeUnknownError(
            f"{endpoint.name} {what} (body: {excerpt!r}); AICC may have processed it. "
            "It was not sent again: check its outcome before sending it again.",
            endpoint=endpoint.name,
            status=status,
        )

    @staticmethod
    def _maybe_retry(
        error: AICCError, failure: Failure, endpoint: Endpoint, retry_unsafe: bool
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
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST once; return status, headers and body, or raise a classified error."""
        if self._closed:
            raise AICCConnectionError(f"{name} was not sent: the client was closed", endpoint=name)
        session = self._get_session()
        if session.closed:
            raise AICCConnectionError(
                f"{name} was not sent: the aiohttp session passed to AICCClient is closed",
                endpoint=name,
            )
        try:
            # Never follow a redirect (it would re-send the body, secret included, to
            # another URL) and never run a caller session's middlewares (one might retry).
            async with session.post(
                url,
                data=data,
                headers=headers,
                timeout=self._timeout,
                raise_for_status=False,
                allow_redirects=False,
                middlewares=(),
            ) as resp:
                raw = await resp.read()
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("POST %s -> HTTP %d, %d bytes", name, resp.status, len(raw))
                return resp.status, resp.headers, raw
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            failure = classify_exception(exc)
            reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
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

    # -- tokens --------------------------------------------------------------------------

    async def _fetch_token(self, started_at: float) -> AccessToken:
        try:
            return await self._token_request(started_at)
        except RetryableAttempt as exc:
            raise exc.error from exc.__cause__

    async def _token_attempt(self, started_at: float) -> AccessToken:
        cfg = self.config
        data = json.dumps({"app_key": cfg.app_key, "app_secret": cfg.app_secret}).encode()
        headers = {"Content-Type": "application/json", "X-Token-Expire": str(cfg.token_ttl)}
        status, resp_headers, raw = await self._exchange(
            TOKEN_ENDPOINT, cfg.token_endpoint, data, headers, idempotent=True, retry_unsafe=False
        )
        if status >= 300:
            retry_after = parse_retry_after(resp_headers.get("Retry-After"))
            reason = self._excerpt(raw)
            failure = classify_status(status, retry_after)
            error: AICCError
            if status < 500 and status != 429:
                error = AICCAuthError(
                    f"tokenByAkSk refused to issue an AccessToken (HTTP {status}: {reason!r}); "
                    "check AICC_APP_KEY / AICC_APP_SECRET and the token URL",
                    endpoint=TOKEN_ENDPOINT,
                    status=status,
                    reason=reason,
                )
            else:
                error = AICCConnectionError(
                    f"tokenByAkSk is unavailable (HTTP {status}: {reason!r}); try again later",
                    endpoint=TOKEN_ENDPOINT,
                )
            if failure is not None:
                raise RetryableAttempt(error, retry_after)
            raise error
        value: object = None
        try:
            body = json.loads(raw)
            value = body["AccessToken"]
            lifetime = float(body.get("Expires") or cfg.token_ttl)
        except (ValueError, TypeError, KeyError, AttributeError):
            lifetime = math.nan
        if not isinstance(value, str) or not value or not 0 < lifetime < math.inf:
            excerpt = self._excerpt(raw, value if isinstance(value, str) else None)
            raise AICCAuthError(
                f"tokenByAkSk answered HTTP {status} without a usable AccessToken and "
                f"lifetime: {excerpt!r}",
                endpoint=TOKEN_ENDPOINT,
                status=status,
            )
        # The server's lifetime, but never longer than was asked for.
        lifetime = min(lifetime, float(cfg.token_ttl))
        return AccessToken(value=value, lifetime=lifetime, obtained_at=started_at)

    # -- helpers -------------------------------------------------------------------------

    def _excerpt(self, body: bytes, *secrets: str | None) -> str:
        """A short, tag-free excerpt of a server's answer, with the app secret, recent
        AccessTokens and ``secrets`` masked (masked before cutting, so no prefix leaks)."""
        text = body[:65536].decode("utf-8", errors="replace")
        for secret in (self.config.app_secret, *self.tokens.recent, *secrets):
            if secret and len(secret) >= _MIN_SECRET:
                text = text.replace(secret, "***")
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
