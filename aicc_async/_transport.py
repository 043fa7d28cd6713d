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
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import attrs

from aicc_async._wire import ResponseInfo, code_of, structure_result
from aicc_async.auth import AccessToken, AccessTokenCache, SessionToken
from aicc_async.config import ClientConfig, Timeout, to_timeout
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

__all__ = ["MIN_TOKEN_LIFETIME", "Endpoint", "ResponseInfo", "Transport"]

T = TypeVar("T")

logger = logging.getLogger("aicc_async")

TOKEN_ENDPOINT = "tokenByAkSk"  # noqa: S105 - an interface name
_EXCERPT = 300
_MIN_SECRET = 6  # shorter values are not masked: they would mangle ordinary text
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_CHUNK = 65536
#: AccessTokens living less than this many seconds are refused: they cannot be used.
MIN_TOKEN_LIFETIME = 30.0
#: What a token must look like to be sent in a header (visible ASCII, bounded).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
_NOT_SENT = "the request that needed it was not sent"
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


class Transport:
    """Owns the HTTP session, the token cache and the throttle of one client."""

    def __init__(self, config: ClientConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout = self._client_timeout(config.timeout)
        self._default_headers = dict(config.default_headers)
        self.tokens = AccessTokenCache(self._fetch_token, config.clock)
        self.throttle = Throttle(config.limits, config.rate_limits)
        self._business = with_retries(
            config.retry, self._attempt, self._log_retry, clock=config.clock
        )
        self._token_request = with_retries(
            config.retry, self._token_attempt, self._log_retry, clock=config.clock
        )
        #: ccmessaging-tokens sent or handed out lately, masked in error texts.
        self._session_secrets: deque[str] = deque(maxlen=64)
        self._mask_key: tuple[str, ...] = ()
        self._mask_re: re.Pattern[str] | None = None

    @staticmethod
    def _client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=timeout.total, connect=timeout.connect)

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
                connector=connector,
                timeout=self._timeout,
                raise_for_status=False,
                trust_env=self.config.trust_env,  # HTTP(S)_PROXY / NO_PROXY only if asked
            )
        return session

    def _check_usable(self, name: str) -> None:
        """Refuse to send from a closed client or from another event loop than the first."""
        if self._closed:
            raise AICCConnectionError(
                f"{name} was not sent: this AICCClient is closed, so nothing was sent. "
                "Create a new AICCClient.",
                endpoint=name,
            )
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise AICCConnectionError(
                f"{name} was not sent: this AICCClient was first used in another event loop "
                "(a second asyncio.run()?) and its connections, token and limits belong to "
                "that loop, so nothing was sent. Create one AICCClient per event loop, "
                "inside the loop that uses it.",
                endpoint=name,
            )

    async def close(self) -> None:
        """Stop token refreshes and close the session if this transport opened it."""
        self._closed = True
        try:
            foreign = self._loop is not None and self._loop is not asyncio.get_running_loop()
        except RuntimeError:
            foreign = True
        if foreign:
            # Closed from another loop than the one it ran in: what belonged to that
            # loop cannot be awaited here. Drop it; closing the pool marks it closed.
            self.tokens.forget()
            if self._owns_session and self._session is not None:
                connector = self._session.connector
                try:
                    if connector is not None:
                        await connector.close()
                except RuntimeError:
                    pass  # its loop is gone, and its sockets with it
            return
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
        self._check_usable(endpoint.name)
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            return await self._business(endpoint, data, retry_unsafe, session_token, client_timeout)
        except RetryableAttempt as exc:
            raise exc.error from exc.__cause__

    def result(
        self,
        endpoint: Endpoint,
        cls: type[T],
        payload: object,
        body: Mapping[str, Any],
        response: ResponseInfo,
    ) -> T:
        """The result object of a successful answer. A success the SDK cannot read is
        reported like a 2xx that is not JSON (never a bare decoding exception)."""
        try:
            return structure_result(cls, payload, body, response)
        except Exception:
            error = self._ambiguous(
                endpoint, "answered success with a result the SDK cannot read",
                status=response.status, raw=b"",
            )  # fmt: skip
            error.response = response
            raise error from None

    async def _attempt(
        self,
        endpoint: Endpoint,
        data: bytes,
        retry_unsafe: bool,
        session_token: SessionToken | None,
        timeout: aiohttp.ClientTimeout,
    ) -> tuple[dict[str, Any], ResponseInfo]:
        group = endpoint.group
        # Tokens before the slot: a slow or dead token endpoint must not hold slots, and
        # every caller waiting for one fetch gets its result (or its failure) at once.
        if session_token is not None:
            await self._token_for(endpoint, session_token.get)
        token = await self._token_for(endpoint, self.tokens.get)
        if group is not None:
            await self.throttle.acquire(group)
        try:
            status, headers, raw = await self._send_authorised(
                endpoint, data, retry_unsafe, session_token, timeout, token
            )
        finally:
            if group is not None:
                self.throttle.release(group)
        info = ResponseInfo(status, raw_headers=headers, mask=self.mask)
        if 200 <= status < 300:
            return self._decode(endpoint, info, raw, retry_unsafe), info
        raise self._status_error(endpoint, info, headers, raw, retry_unsafe)

    async def _send_authorised(
        self,
        endpoint: Endpoint,
        data: bytes,
        retry_unsafe: bool,
        session_token: SessionToken | None,
        timeout: aiohttp.ClientTimeout,
        token: str,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send with the current token(s); on a rejection refresh once and replay once.

        ``token`` is the AccessToken fetched before the throttle slot was taken; if it
        expired meanwhile, a valid one is used. A 401 does not say which token was
        refused, so both are dropped.
        """
        for replay in (False, True):
            current = self.tokens.current
            if (
                replay
                or current is None
                or current.value != token
                or not current.usable(self.config.clock())
            ):
                token = await self._token_for(endpoint, self.tokens.get)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            if self._default_headers:
                headers = {**self._default_headers, **headers}
            if endpoint.app_key_header:
                headers[endpoint.app_key_header] = self.config.app_key
            second = None
            if session_token is not None:
                second = await self._token_for(endpoint, session_token.get)
                if not _HEADER_TOKEN.fullmatch(second):
                    raise AICCAuthError(
                        f"{endpoint.name} was not sent: its {session_token.header} cannot be "
                        "sent in a header (spaces, line breaks or non-ASCII characters)",
                        endpoint=endpoint.name,
                    )
                self._remember_secret(second)
                headers[session_token.header] = second
            status, resp_headers, raw = await self._exchange(
                endpoint.name, self.config.base_url + endpoint.path, data, headers,
                idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe, timeout=timeout,
            )  # fmt: skip
            if session_token is not None:
                fresh = resp_headers.get(session_token.header)
                if fresh and _HEADER_TOKEN.fullmatch(fresh):
                    self._remember_secret(fresh)
                    session_token.adopt(fresh)
                if second is not None:
                    raw = self._mask_bytes(raw, second)  # never in an error message
            if not (status == 401 or (status == 403 and b"auth fail" in raw.lower())):
                return status, resp_headers, raw
            self.tokens.invalidate(token)
            if session_token is not None and second is not None:
                session_token.invalidate(second)
            if replay:
                which = "AccessToken"
                if session_token is not None:
                    which += f" or {session_token.header} (check one you passed)"
                error = AICCAuthError(
                    f"AICC rejected a fresh {which} for {endpoint.name} (HTTP {status}): "
                    "check that the app key is subscribed to this service and that the "
                    "account is active. Nothing was processed.",
                    endpoint=endpoint.name,
                    status=status,
                    reason=self._excerpt(raw),
                )
                error.response = ResponseInfo(status, raw_headers=resp_headers, mask=self.mask)
                raise error
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
        self, endpoint: Endpoint, info: ResponseInfo, raw: bytes, retry_unsafe: bool
    ) -> dict[str, Any]:
        try:
            body = json.loads(raw)
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
        business = AICCBusinessError(
            f"{endpoint.name} was refused with {endpoint.code_field} {code}{explained}{said}",
            endpoint=endpoint.name,
            code=code,
            description=description,
            meaning=meaning,
            raw=body,
        )
        business.response = info
        if code in endpoint.retry_codes:
            raise RetryableAttempt(business)
        raise business

    def _status_error(
        self,
        endpoint: Endpoint,
        info: ResponseInfo,
        headers: Mapping[str, str],
        raw: bytes,
        retry_unsafe: bool,
    ) -> Exception:
        status = info.status
        retry_after = parse_retry_after(headers.get("Retry-After"))
        waitable = retry_after is None or retry_after <= self.config.retry.max_delay
        failure = classify_status(status)
        if failure is Failure.AMBIGUOUS:
            error: AICCError = self._ambiguous(
                endpoint, f"got HTTP {status} from the gateway", status=status, raw=raw
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
        excerpt = self._excerpt(raw)
        error = AICCHTTPError(
            f"{endpoint.name} failed with HTTP {status}: {advice}. Body: {excerpt!r}",
            endpoint=endpoint.name,
            status=status,
            body=excerpt,
        )
        error.response = info
        if failure is Failure.NOT_SENT and waitable:
            return RetryableAttempt(error, retry_after)
        return error

    def _ambiguous(self, endpoint: Endpoint, what: str, *, status: int, raw: bytes) -> AICCError:
        excerpt = self._excerpt(raw)
        if endpoint.idempotent:
            shown = f"Body: {excerpt!r}" if raw else "No body shown."
            return AICCHTTPError(
                f"{endpoint.name} {what}; sending it again is harmless. {shown}",
                endpoint=endpoint.name,
                status=status,
                body=excerpt,
            )
        return AICCOutcomeUnknownError(
            f"{endpoint.name} {what} ({f'body: {excerpt!r}' if raw else 'no body shown'}); "
            "AICC may have processed it. "
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
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST once; return status, headers and body, or raise a classified error.

        The body is read up to ``max_response_bytes`` (after decompression); a longer
        answer is abandoned at once and never retried.
        """
        if self._closed:
            raise AICCConnectionError(
                f"{name} was not sent: the client was closed, so nothing was sent",
                endpoint=name,
            )
        session = self._get_session()
        if session.closed:
            raise AICCConnectionError(
                f"{name} was not sent: the aiohttp session passed to AICCClient is closed",
                endpoint=name,
            )
        status = 0
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
                raw = await self._read(resp)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("POST %s -> HTTP %d, %d bytes", name, resp.status, len(raw))
                return resp.status, resp.headers, raw
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
            ) from None

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, at most ``max_response_bytes`` of it (decompressed); raises
        ``_TooLarge`` (closing the connection) beyond that."""
        cap = self.config.max_response_bytes
        length = resp.content_length
        if length is not None and length <= cap and "Content-Encoding" not in resp.headers:
            return await resp.read()  # the common case: a small, plain, sized answer
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
            )
        return AICCOutcomeUnknownError(
            f"{name} was sent, but its answer (HTTP {status}) is larger than "
            f"max_response_bytes ({cap} bytes) and was dropped unread; AICC may have "
            "processed it. It was not sent again: check its outcome before sending it again.",
            endpoint=name,
            status=status,
        )

    # -- tokens --------------------------------------------------------------------------

    async def _fetch_token(self, started_at: float) -> AccessToken:
        try:
            return await self._token_request(started_at)
        except RetryableAttempt as exc:
            raise exc.error from exc.__cause__

    async def _token_attempt(self, started_at: float) -> AccessToken:
        cfg = self.config
        data = json.dumps({"app_key": cfg.app_key, "app_secret": cfg.app_secret}).encode()
        headers = {
            **self._default_headers,
            "Content-Type": "application/json",
            "X-Token-Expire": str(cfg.token_ttl),
        }
        status, resp_headers, raw = await self._exchange(
            TOKEN_ENDPOINT, cfg.token_endpoint, data, headers, idempotent=True, retry_unsafe=False
        )
        info = ResponseInfo(status, raw_headers=resp_headers, mask=self.mask)
        if status >= 300:
            retry_after = parse_retry_after(resp_headers.get("Retry-After"))
            reason = self._excerpt(raw)
            failure = classify_status(status)
            error: AICCError
            if status < 500 and status != 429:
                error = AICCAuthError(
                    f"tokenByAkSk refused to issue an AccessToken (HTTP {status}: {reason!r}), "
                    f"so {_NOT_SENT}; check AICC_APP_KEY / AICC_APP_SECRET and the token URL",
                    endpoint=TOKEN_ENDPOINT,
                    status=status,
                    reason=reason,
                )
            else:
                error = AICCConnectionError(
                    f"tokenByAkSk is unavailable (HTTP {status}: {reason!r}); try again later",
                    endpoint=TOKEN_ENDPOINT,
                )
            error.response = info
            if failure is not None and (retry_after is None or retry_after <= cfg.retry.max_delay):
                raise RetryableAttempt(error, retry_after)
            raise error
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        value = body.get("AccessToken") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            self._token_refused(
                f"tokenByAkSk answered HTTP {status} without a usable AccessToken "
                f"({self._excerpt(raw)!r})",
                info,
            )
        assert isinstance(body, dict)
        assert isinstance(value, str)
        if not _HEADER_TOKEN.fullmatch(value):
            self._token_refused(
                "tokenByAkSk issued an AccessToken that cannot be sent in a header "
                "(spaces, line breaks, non-ASCII characters or over 8192 characters)",
                info,
            )
        lifetime = self._lifetime(body.get("Expires"))
        if lifetime is None:
            self._token_refused(
                f"tokenByAkSk answered HTTP {status} without a usable AccessToken lifetime "
                f"(Expires: {self.mask(repr(body.get('Expires')))[:40]})",
                info,
            )
        assert lifetime is not None
        if lifetime < MIN_TOKEN_LIFETIME:
            self._token_refused(
                f"tokenByAkSk issued no usable AccessToken: its lifetime of {lifetime:g} s "
                f"is below the {MIN_TOKEN_LIFETIME:g} s a token must live to be used "
                f"(X-Token-Expire asked for {cfg.token_ttl} s). Check the token service",
                info,
            )
        # The server's lifetime, but never longer than was asked for.
        lifetime = min(lifetime, float(cfg.token_ttl))
        return AccessToken(value=value, lifetime=lifetime, obtained_at=started_at)

    def _lifetime(self, expires: object) -> float | None:
        """``Expires`` in seconds, read one way whether a number or a string; the
        requested ``token_ttl`` when absent; ``None`` when unreadable."""
        if expires is None:
            return float(self.config.token_ttl)
        if isinstance(expires, bool) or not isinstance(expires, int | float | str):
            return None
        try:
            seconds = float(expires.strip() if isinstance(expires, str) else expires)
        except (ValueError, OverflowError):
            return None
        return seconds if math.isfinite(seconds) else None

    @staticmethod
    def _token_refused(what: str, info: ResponseInfo) -> None:
        error = AICCAuthError(
            f"{what}; {_NOT_SENT}.",
            endpoint=TOKEN_ENDPOINT,
            status=info.status,
        )
        error.response = info
        raise error

    # -- masking -------------------------------------------------------------------------

    def _remember_secret(self, value: str) -> None:
        if value not in self._session_secrets:
            self._session_secrets.append(value)

    def _pattern(self, *extra: str) -> re.Pattern[str] | None:
        secrets = sorted(
            {
                s
                for s in (
                    self.config.app_secret,
                    *self.tokens.recent,
                    *self._session_secrets,
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
        return again if isinstance(again, dict) else {"masked": self._excerpt(raw)}

    def _excerpt(self, body: bytes, *secrets: str | None) -> str:
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
