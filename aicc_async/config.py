"""Client configuration: where AICC is, how to authenticate, timeouts, pool, retries, limits."""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from aicc_async._constants import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MESSAGING_LOCALE,
    DEFAULT_REDIS_FALLBACK,
    DEFAULT_RETRY_BUDGET,
    DEFAULT_TIMEOUT_CONNECT,
    DEFAULT_TIMEOUT_TOTAL,
    DEFAULT_TOKEN_TTL,
    GROUPS,
    RETRY_COST,
    TOKEN_PATH,
)
from aicc_async.adaptive import AUTO, AutoRate
from aicc_async.errors import (
    AICCValidationError,
    check_flag,
    invalid,
    is_int,
    is_number,
    masked_url,
)
from aicc_async.retry import RetryPolicy

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "ENVIRONMENT",
    "GROUPS",
    "REQUIRED_ENVIRONMENT",
    "TOKEN_PATH",
    "ClientConfig",
    "Timeout",
]

#: The environment variable behind each setting ``ClientConfig.from_env`` reads (the
#: command line reads the same ones); the first three are required.
ENVIRONMENT: Mapping[str, str] = MappingProxyType(
    {
        "base_url": "AICC_BASE_URL",
        "app_key": "AICC_APP_KEY",
        "app_secret": "AICC_APP_SECRET",
        "token_url": "AICC_TOKEN_URL",
        "redis_url": "AICC_REDIS_URL",
        "redis_fallback": "AICC_REDIS_FALLBACK",
    }
)
REQUIRED_ENVIRONMENT = ("AICC_BASE_URL", "AICC_APP_KEY", "AICC_APP_SECRET")

#: What a CC-Messaging locale looks like: ``en``, ``en_US``, ``zh_CN``.
LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,4})?")


@attrs.frozen
class Timeout:
    """Per-attempt time limits in seconds.

    Args:
        total: one attempt, from asking for a connection to the last byte of the answer.
        connect: getting a connection (pool wait included). A connect timeout proves
            nothing was sent, so it is retried on every endpoint; a ``total`` timeout
            after sending is ambiguous (see the retry table).
    """

    total: float = DEFAULT_TIMEOUT_TOTAL
    connect: float = DEFAULT_TIMEOUT_CONNECT

    def __attrs_post_init__(self) -> None:
        for name in ("total", "connect"):
            value = getattr(self, name)
            if not is_number(value) or not value > 0:
                raise invalid(
                    f"timeout.{name}", f"must be a positive number of seconds, got {value!r}"
                )
        if not self.connect < self.total:
            # Otherwise a wait for a pooled connection could end in the total timeout,
            # which cannot prove that nothing was sent.
            raise invalid("timeout.connect", "must be shorter than timeout.total")


def _shown(value: object) -> str:
    """``value`` for an error message, unless it may hold a credential (never echoed)."""
    if isinstance(value, str) and ("@" in value or len(value) > 200):
        return "a value that is not shown (it may hold a password)"
    return repr(value)


@attrs.frozen
class _UrlKind:
    """What one kind of URL setting accepts.

    ``schemes``: its schemes; ``example``: what the error says it must be;
    ``credentials``: whether it may carry ``user:password@`` (then an error never
    shows the value, only its scheme); ``service``: an AICC URL (no query string or
    fragment, a trailing ``/`` dropped).
    """

    schemes: tuple[str, ...]
    example: str
    credentials: bool = False
    service: bool = False


_SERVICE = _UrlKind(
    ("http", "https"), "an http(s) URL such as 'https://service.besclouds.com'", service=True
)
_PROXY = _UrlKind(("http", "https"), "an http(s) proxy URL such as 'http://proxy:3128'", True)
_REDIS = _UrlKind(
    ("redis", "rediss"), "a redis:// or rediss:// URL such as 'redis://localhost:6379/0'", True
)


def _url(field: str, value: object, kind: _UrlKind = _SERVICE) -> str:
    """``value`` checked as a URL of ``kind``, stripped; raises ``AICCValidationError``
    naming ``field`` (never echoing a value that may hold a password)."""
    hint = f"must be {kind.example}"
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, f"{hint}, got {_shown(value)}")
    url = value.strip()
    if kind.service:
        url = url.rstrip("/")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise invalid(field, f"{hint} (its host or port is not valid)") from None
    if not kind.credentials and (parts.username is not None or parts.password is not None):
        raise invalid(field, "must not contain credentials; pass app_key and app_secret")
    if parts.scheme not in kind.schemes or not hostname:
        if not kind.credentials:
            shown = _shown(value)
        else:
            shown = parts.scheme + "://..." if parts.scheme else "a value that is not shown"
        raise invalid(field, f"{hint}, got {shown}")
    if kind.service and (parts.query or parts.fragment):
        raise invalid(field, "must not have a query string or fragment")
    return url


def _is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine without asking DNS: exactly ``localhost``
    or a literal loopback address (``127.0.0.0/8``, ``::1``). A name that only looks
    local (``aicc.localhost``) is resolved like any other, so it does not count."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback


def _insecure(field: str, url: str) -> AICCValidationError:
    return invalid(
        field,
        "an http:// URL would send the app secret and tokens in cleartext; use https://, "
        "or pass allow_insecure_http=True if this network is trusted (loopback "
        "addresses are always allowed)",
    )


def _proxy(value: object) -> str | None:
    return None if value is None else _url("proxy", value, _PROXY)


def _redacted_url(value: str | None) -> str:
    """A URL for a repr: any ``user:password@`` is replaced by ``***@``."""
    return "None" if value is None else repr(masked_url(value))


#: Headers the SDK sets itself; ``default_headers`` may not set them.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "x-app-key",
        "ccmessaging-token",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "x-token-expire",
        "proxy-authorization",
        "x-access-token",
    }
)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def check_headers(field: str, value: object) -> Mapping[str, str]:
    """Extra request headers (``default_headers``, or a call's ``headers``) checked:
    valid names and values, none the SDK sets itself; raises ``AICCValidationError``
    naming ``field`` (never echoing a value: it may be a credential)."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise invalid(
            field, f"must be a mapping of header name to value, got {type(value).__name__}"
        )
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise invalid(field, f"{name!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise invalid(
                field,
                f"must not set {name}: the SDK sets it itself (it carries the credentials "
                "or frames the body)",
            )
        if not isinstance(text, str) or not _HEADER_VALUE.fullmatch(text):
            raise invalid(
                field,
                f"the value of {name} must be a string without line breaks or control characters",
            )
        headers[name] = text
    return MappingProxyType(headers)


def _default_headers(value: object) -> Mapping[str, str]:
    return check_headers("default_headers", value)


def _trace_configs(value: object) -> tuple[aiohttp.TraceConfig, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise invalid("trace_configs", f"must be a list of aiohttp.TraceConfig, got {value!r}")
    found = tuple(value)
    for item in found:
        if not isinstance(item, aiohttp.TraceConfig):
            raise invalid(
                "trace_configs",
                f"must hold aiohttp.TraceConfig objects, got {type(item).__name__}",
            )
    return found


def _redis_url(value: object) -> str | None:
    """A ``redis://`` / ``rediss://`` URL; errors never echo it (it may hold a password)."""
    return None if value is None else _url("redis_url", value, _REDIS)


def _redis_fallback(value: object) -> str:
    if value not in ("fail", "local"):
        raise invalid(
            "redis_fallback",
            f"must be 'fail' (raise when Redis is unreachable) or 'local' (use this "
            f"process's own token and rate caps meanwhile), got {value!r}",
        )
    return str(value)


def _max_response_bytes(value: object) -> int:
    if not is_int(value) or value < 1024:
        raise invalid("max_response_bytes", f"must be an integer >= 1024, got {value!r}")
    return value


def _retry_budget(value: object) -> int | None:
    if value is None:
        return None
    if not is_int(value) or value < RETRY_COST:
        raise invalid(
            "retry_budget",
            f"must be None (no budget) or an integer >= {RETRY_COST} (one retry costs "
            f"{RETRY_COST}), got {value!r}",
        )
    return value


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, "must be a non-empty string")
    if any(c in value for c in "\r\n\0"):
        raise invalid(field, "must not contain line breaks or NUL")
    return value


def _base_url(value: object) -> str:
    return _url("base_url", value)


def _app_key(value: object) -> str:
    return _text("app_key", value)


def _app_secret(value: object) -> str:
    return _text("app_secret", value)


def to_timeout(value: Timeout | float) -> Timeout:
    """A ``Timeout`` from a ``Timeout`` or a number of seconds (the total; connect is
    at most 5 s). Raises ``AICCValidationError``."""
    if isinstance(value, Timeout):
        return value
    if not is_number(value):
        raise invalid("timeout", f"must be a number of seconds or a Timeout, got {value!r}")
    return Timeout(total=float(value), connect=min(DEFAULT_TIMEOUT_CONNECT, float(value) / 2))


def _items(field: str, value: object) -> list[tuple[Any, Any]]:
    if not isinstance(value, Mapping):
        raise invalid(field, f"must be a mapping of endpoint group to number, got {value!r}")
    return list(value.items())


def _limits(value: Mapping[str, int]) -> Mapping[str, int]:
    merged = dict(DEFAULT_LIMITS)
    for group, limit in _items("limits", value):
        if group not in GROUPS:
            raise invalid(
                "limits", f"unknown endpoint group {group!r}; groups are {', '.join(GROUPS)}"
            )
        if not is_int(limit) or limit < 1:
            raise invalid(f"limits[{group!r}]", f"must be an integer >= 1, got {limit!r}")
        merged[group] = limit
    return MappingProxyType(merged)


def _rates(value: Mapping[str, float | str | AutoRate]) -> Mapping[str, float | AutoRate]:
    rates: dict[str, float | AutoRate] = {}
    for group, rate in _items("rate_limits", value):
        if group not in GROUPS:
            raise invalid(
                "rate_limits", f"unknown endpoint group {group!r}; groups are {', '.join(GROUPS)}"
            )
        if rate == AUTO or isinstance(rate, AutoRate):
            rates[group] = AutoRate() if rate == AUTO else rate
            continue
        if not is_number(rate) or not rate > 0:
            raise invalid(
                f"rate_limits[{group!r}]",
                f"must be a positive number of requests per second or 'auto', got {rate!r}",
            )
        rates[group] = float(rate)
    return MappingProxyType(rates)


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Everything an ``AICCClient`` is configured with, validated on construction.

    Raises ``AICCValidationError`` naming the bad field. ``app_secret`` never
    appears in ``repr``, nor does a password in ``proxy``. See ``AICCClient`` for
    what each option means.
    """

    base_url: str = attrs.field(converter=_base_url)
    app_key: str = attrs.field(converter=_app_key)
    app_secret: str = attrs.field(converter=_app_secret, repr=False)
    token_url: str | None = None
    token_ttl: int = DEFAULT_TOKEN_TTL
    timeout: Timeout = attrs.field(default=Timeout(), converter=to_timeout)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    retry_budget: int | None = attrs.field(default=DEFAULT_RETRY_BUDGET, converter=_retry_budget)
    limits: Mapping[str, int] = attrs.field(factory=dict, converter=_limits)
    rate_limits: Mapping[str, float | AutoRate] = attrs.field(factory=dict, converter=_rates)
    messaging_channel_id: str | None = None
    messaging_locale: str = DEFAULT_MESSAGING_LOCALE
    messaging_user_name: str | None = None
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, converter=_max_response_bytes
    )
    allow_insecure_http: bool = False
    proxy: str | None = attrs.field(default=None, converter=_proxy, repr=_redacted_url)
    trust_env: bool = False
    default_headers: Mapping[str, str] = attrs.field(factory=dict, converter=_default_headers)
    redis_url: str | None = attrs.field(default=None, converter=_redis_url, repr=_redacted_url)
    redis_fallback: str = attrs.field(default=DEFAULT_REDIS_FALLBACK, converter=_redis_fallback)
    trace_configs: tuple[aiohttp.TraceConfig, ...] = attrs.field(
        default=(), converter=_trace_configs, repr=False
    )
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    #: The full tokenByAkSk URL: ``token_url`` (or ``base_url``) + the token path.
    token_endpoint: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        check_flag("allow_insecure_http", self.allow_insecure_http)
        check_flag("trust_env", self.trust_env)
        token_url = self.base_url if self.token_url is None else _url("token_url", self.token_url)
        if not self.allow_insecure_http:
            for field, url in (("base_url", self.base_url), ("token_url", token_url)):
                if url.startswith("http://") and not _is_loopback(url):
                    raise _insecure(field, url)
        if not token_url.endswith(TOKEN_PATH):
            token_url += TOKEN_PATH
        object.__setattr__(self, "token_endpoint", token_url)
        ttl = self.token_ttl
        if not is_int(ttl) or not 60 <= ttl <= 3600:
            raise invalid("token_ttl", f"must be an integer from 60 to 3600 seconds, got {ttl!r}")
        n = self.max_connections
        if not is_int(n) or n < 1:
            raise invalid("max_connections", f"must be an integer >= 1, got {n!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise invalid("retry", f"must be a RetryPolicy, got {self.retry!r}")
        if self.messaging_channel_id is not None:
            _text("messaging_channel_id", self.messaging_channel_id)
        if not isinstance(self.messaging_locale, str) or not LOCALE.fullmatch(
            self.messaging_locale
        ):
            raise invalid(
                "messaging_locale",
                f"must look like 'en', 'en_US' or 'zh_CN', got {self.messaging_locale!r}",
            )
        if self.messaging_user_name is not None:
            _text("messaging_user_name", self.messaging_user_name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Build a config from ``AICC_BASE_URL``, ``AICC_APP_KEY``, ``AICC_APP_SECRET``
        and optional ``AICC_TOKEN_URL``, ``AICC_REDIS_URL`` (state shared across
        processes) and ``AICC_REDIS_FALLBACK``; keyword arguments set the other options.

        Raises ``AICCValidationError`` naming each missing variable.
        """
        env = os.environ if environ is None else environ
        missing = [var for var in REQUIRED_ENVIRONMENT if not env.get(var)]
        if missing:
            raise AICCValidationError(
                f"set the environment variable(s) {', '.join(missing)} "
                "(AICC_TOKEN_URL is optional) or pass them to AICCClient(...)",
                field=missing[0],
            )
        values: dict[str, Any] = {
            field: env[var] for field, var in ENVIRONMENT.items() if env.get(var)
        }
        values.update(overrides)
        return cls(**values)
