"""``AICCClient``: one pooled session, one shared token, the endpoint namespaces."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
import attrs

from aicc_async._constants import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MESSAGING_LOCALE,
    DEFAULT_REDIS_FALLBACK,
    DEFAULT_RETRY_BUDGET,
    DEFAULT_TOKEN_TTL,
)
from aicc_async._transport import Transport
from aicc_async.adaptive import AdaptiveRate, AutoRate
from aicc_async.config import ClientConfig, Timeout
from aicc_async.endpoints.messaging import MessagingAPI
from aicc_async.endpoints.mobile_agent import MobileAgentAPI
from aicc_async.endpoints.outbound import OutboundAPI
from aicc_async.endpoints.voice_notification import VoiceNotificationAPI
from aicc_async.errors import AICCValidationError
from aicc_async.retry import RetryPolicy

__all__ = ["AICCClient"]

_DEFAULT_TIMEOUT = Timeout()


class AICCClient:
    """An asyncio client for Huawei Cloud AICC's open APIs.

    Use it as ``async with AICCClient(...) as aicc:`` (or call ``await aicc.close()``).
    All coroutines may share one client: it holds one connection pool and one
    AccessToken, fetched on first use and refreshed ahead of expiry.

    Args:
        base_url: tenant URL, e.g. ``"https://service.besclouds.com"``.
        app_key, app_secret: the API Fabric app credentials (the secret is never logged).
        token_url: where tokenByAkSk is served if not on ``base_url`` (e.g. port 28070).
        token_ttl: AccessToken lifetime to ask for, 60..3600 s.
        timeout: per-attempt limits, seconds (``float`` = total) or a ``Timeout``.
        max_connections: size of the connection pool.
        retry: a ``RetryPolicy`` for failures that are safe to retry.
        retry_budget: capacity of the client-wide retry budget (default 500; a retry
            costs 5, a first-attempt success gives 1 back): when most attempts fail,
            retries stop until requests succeed again, so an outage is not met with
            several times the load. ``None``: no budget.
        limits: requests in flight per endpoint group, merged over ``DEFAULT_LIMITS``.
        rate_limits: optional requests-per-second cap per endpoint group, or ``"auto"``
            (an ``AutoRate``, optionally with a ceiling): find the tenant's limit from its
            answers (HTTP 429 and "busy" answers slow down, successes probe upward).
        session: an ``aiohttp.ClientSession`` to use; it is never closed by the SDK.
        messaging_channel_id, messaging_locale, messaging_user_name: used when
            ``messaging.leave_message`` applies for a ccmessaging-token itself.
        max_response_bytes: the largest answer read, in bytes after decompression
            (default 1 MiB). A longer answer is dropped unread and never retried: for
            a non-idempotent call it raises ``AICCOutcomeUnknownError``, otherwise
            ``AICCHTTPError``.
        allow_insecure_http: accept an ``http://`` ``base_url`` / ``token_url`` that is
            not a loopback address (the app secret and tokens then travel in cleartext).
        proxy: an ``http(s)://[user:password@]host:port`` proxy for every request.
        trust_env: when the SDK creates the session, honour ``HTTP_PROXY`` /
            ``HTTPS_PROXY`` / ``NO_PROXY`` (and ``~/.netrc``) as aiohttp does. Off by
            default: the SDK reads no environment unless told to. A ``session=`` you
            pass keeps its own setting.
        default_headers: headers added to every request (e.g. a tracing header). They
            may not set ``Authorization``, the app-key headers, ``ccmessaging-token`` or
            the body's framing headers: the SDK's own always win.
        redis_url: ``redis://`` / ``rediss://`` URL of a Redis shared by every process
            of this tenant (needs ``aicc-async[redis]``): the AccessToken is fetched
            by one process and shared, and ``rate_limits`` hold for all processes
            together. ``limits`` (in flight) stay per process.
        redis_fallback: when that Redis is unreachable: ``"fail"`` (default; raise
            ``AICCConnectionError``, nothing is sent) or ``"local"`` (log a warning,
            use this process's own token and rate caps until Redis answers again).
        trace_configs: ``aiohttp.TraceConfig`` objects for the session the SDK
            creates, e.g. OpenTelemetry's ``create_trace_config()``: one client span
            per HTTP request, token requests included. With ``session=``, give them to
            that session instead.
        clock: monotonic clock for token lifetimes and the retry time budget (tests
            inject a fake one).

    Raises ``AICCValidationError`` for a bad argument.
    """

    def __init__(
        self,
        base_url: str,
        app_key: str,
        app_secret: str,
        *,
        token_url: str | None = None,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        timeout: Timeout | float = _DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry: RetryPolicy | None = None,
        retry_budget: int | None = DEFAULT_RETRY_BUDGET,
        limits: Mapping[str, int] | None = None,
        rate_limits: Mapping[str, float | str | AutoRate] | None = None,
        session: aiohttp.ClientSession | None = None,
        messaging_channel_id: str | None = None,
        messaging_locale: str = DEFAULT_MESSAGING_LOCALE,
        messaging_user_name: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        allow_insecure_http: bool = False,
        proxy: str | None = None,
        trust_env: bool = False,
        default_headers: Mapping[str, str] | None = None,
        redis_url: str | None = None,
        redis_fallback: str = DEFAULT_REDIS_FALLBACK,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = ClientConfig(
            base_url=base_url,
            app_key=app_key,
            app_secret=app_secret,
            token_url=token_url,
            token_ttl=token_ttl,
            timeout=timeout,
            max_connections=max_connections,
            retry=RetryPolicy() if retry is None else retry,
            retry_budget=retry_budget,
            limits={} if limits is None else limits,
            rate_limits={} if rate_limits is None else rate_limits,
            messaging_channel_id=messaging_channel_id,
            messaging_locale=messaging_locale,
            messaging_user_name=messaging_user_name,
            max_response_bytes=max_response_bytes,
            allow_insecure_http=allow_insecure_http,
            proxy=proxy,
            trust_env=trust_env,
            default_headers={} if default_headers is None else default_headers,
            redis_url=redis_url,
            redis_fallback=redis_fallback,
            trace_configs=trace_configs,
            clock=clock,
        )
        self._init(config, session)

    def _init(
        self,
        config: ClientConfig,
        session: aiohttp.ClientSession | None,
        parent: AICCClient | None = None,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if session is not None and config.trace_configs:
            raise AICCValidationError(
                "trace_configs: the SDK uses the session you pass as it is; create it with "
                "aiohttp.ClientSession(trace_configs=[...]) instead",
                field="trace_configs",
            )
        self.config = config
        self._parent = parent
        if parent is None:
            self._transport = Transport(config, session)
            self.messaging = MessagingAPI(self._transport, config)
        else:
            self._transport = Transport(config, parent=parent._transport)
            self.messaging = MessagingAPI(self._transport, config, parent=parent.messaging)
        self.voice_notification = VoiceNotificationAPI(self._transport)
        self.outbound = OutboundAPI(self._transport)
        self.mobile_agent = MobileAgentAPI(self._transport)

    def with_options(
        self,
        *,
        timeout: Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        limits: Mapping[str, int] | None = None,
        rate_limits: Mapping[str, float | str | AutoRate] | None = None,
        max_response_bytes: int | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> AICCClient:
        """A client with some options changed that shares this one's connection pool,
        AccessToken, ccmessaging-tokens and retry budget (openai's ``with_options``).

        Options not given keep this client's values; ``limits`` are merged over the
        defaults as in the constructor, and with other ``limits`` or ``rate_limits``
        the new client gets its own in-flight limits (otherwise it shares these).
        Closing it closes nothing shared; closing this client closes the pool for
        both. Raises ``AICCValidationError`` for a bad option.
        """
        changes: dict[str, Any] = {
            "timeout": timeout,
            "retry": retry,
            "limits": limits,
            "rate_limits": rate_limits,
            "max_response_bytes": max_response_bytes,
            "default_headers": default_headers,
        }
        changes = {name: value for name, value in changes.items() if value is not None}
        config = attrs.evolve(self.config, **changes)
        client = type(self).__new__(type(self))
        client._init(config, None, parent=self._parent or self)
        return client

    def rate_limiter(self, group: str) -> AdaptiveRate | None:
        """The adaptive limiter of endpoint ``group`` (``rate_limits={group: "auto"}``):
        its current ``rate``, ``throttled`` count and ``samples`` (rate over time)."""
        return self._transport.throttle.adaptive(group)

    def _observed(self, group: str, limiter: AdaptiveRate) -> AICCClient:
        """A client sharing this one's pool, token and limits whose answers of ``group``
        also tune ``limiter`` (a campaign paces its rows with it itself)."""
        client = self.with_options()
        client._transport.throttle = client._transport.throttle.observed(group, limiter)
        return client

    @classmethod
    def from_config(
        cls, config: ClientConfig, *, session: aiohttp.ClientSession | None = None
    ) -> AICCClient:
        """A client for a prepared ``ClientConfig``."""
        client = cls.__new__(cls)
        client._init(config, session)
        return client

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        **options: Any,
    ) -> AICCClient:
        """A client configured from ``AICC_BASE_URL``, ``AICC_APP_KEY``,
        ``AICC_APP_SECRET`` and optional ``AICC_TOKEN_URL``; ``options`` are the
        other constructor arguments. Raises ``AICCValidationError`` naming what is missing.
        """
        return cls.from_config(ClientConfig.from_env(environ, **options), session=session)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called; a closed client sends nothing."""
        return self._transport.closed

    async def close(self) -> None:
        """Close the connection pool (unless it was passed in) and stop token refreshes.

        A client made by :meth:`with_options` only stops sending: the pool and the
        tokens it shares stay open until the client it came from is closed. Safe to
        call more than once.
        """
        await self.messaging.close()
        await self._transport.close()

    async def __aenter__(self) -> AICCClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AICCClient(base_url={self.config.base_url!r}, app_key={self.config.app_key!r})"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        if transport is not None and transport.session_open:
            _warn(
                f"unclosed {self!r}: use 'async with AICCClient(...)' or 'await client.close()'",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )
