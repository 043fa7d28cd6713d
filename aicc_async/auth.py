"""Authentication: getting an AccessToken (tokenByAkSk: the request, reading the
answer, the lifetime rules), the token caches (the AccessToken shared by every
coroutine of one client; ccmessaging-tokens, one per messaging user) and the auth
flow that puts tokens on a request and replays it once when AICC rejects one.

AccessToken:

- **Single flight**: however many coroutines need a token at once, one request
  fetches it and all of them get its result (or its error).
- **Refresh ahead**: once less than ``max(30 s, 10 %)`` of a token's lifetime is
  left (but not before half of it has passed) one background refresh starts;
  callers keep using the current token meanwhile.
- **Never an expired token**: a token is not handed out after its lifetime
  (minus a small safety margin) has passed; callers then wait for the new one.
- **Rejection**: ``invalidate(token)`` drops that token if it is still the
  current one, so a burst of 401s causes one refresh, not one per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

import attrs

from aicc_async._masking import Redactor
from aicc_async._wire import ResponseInfo
from aicc_async.errors import (
    AICCAuthError,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCTransportError,
)

__all__ = [
    "HEADER_TOKEN",
    "MIN_TOKEN_LIFETIME",
    "TOKEN_ENDPOINT",
    "AccessToken",
    "AccessTokenCache",
    "Answer",
    "Authorised",
    "MessagingTokenCache",
    "SessionToken",
    "SharedTokens",
    "TokenAuth",
    "read_token",
    "token_for",
    "token_lifetime",
    "token_request",
]

logger = logging.getLogger(__name__)

_REFRESH_COOLDOWN = 5.0  # seconds between refresh-ahead attempts after one failed

TOKEN_ENDPOINT = "tokenByAkSk"  # noqa: S105 - an interface name
#: AccessTokens living less than this many seconds are refused: they cannot be used.
MIN_TOKEN_LIFETIME = 30.0
#: What a token must look like to be sent in a header (visible ASCII, bounded).
HEADER_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
_NOT_SENT = "the request that needed it was not sent"

T = TypeVar("T")


def _spawn(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A shared fetch; a failure nobody awaits must not warn "exception never retrieved"."""
    task = asyncio.get_running_loop().create_task(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def _join(task: asyncio.Task[T], closed: Callable[[], bool], what: str) -> T:
    """Wait for a shared fetch without letting this caller's cancellation cancel it.

    If ``close()`` cancelled the fetch, say so with a typed error: the request that
    waited for the token was not sent.
    """
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if closed() and task.cancelled():
            raise AICCConnectionError(
                f"the client was closed while waiting for {what}; nothing was sent"
            ) from None
        raise


@attrs.frozen(repr=False)
class AccessToken:
    """A bearer token and the local monotonic times at which it ages.

    ``obtained_at`` is taken *before* the token request was sent, so the local
    expiry is never later than the server's. ``refresh_at``: when a background
    refresh starts; ``expires_at``: after it the token is not used (5 % or 5 s
    before the server's expiry, whichever is less).
    """

    value: str
    lifetime: float
    obtained_at: float
    refresh_at: float = attrs.field(init=False)
    expires_at: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        life, start = self.lifetime, self.obtained_at
        refresh = start + max(life / 2, life - max(30.0, 0.1 * life))
        object.__setattr__(self, "refresh_at", refresh)
        object.__setattr__(self, "expires_at", start + life - min(5.0, 0.05 * life))

    def __repr__(self) -> str:
        return f"AccessToken(value='***', lifetime={self.lifetime!r})"


class SharedTokens(Protocol):
    """Where several processes keep one AccessToken (``redis_state.RedisState``)."""

    async def token(
        self, started_at: float, fetch: Callable[[float], Awaitable[AccessToken]]
    ) -> AccessToken:
        """The shared token if still fresh, else one ``fetch`` obtains (and shares)."""
        ...

    def reject(self, value: str) -> None:
        """AICC rejected ``value``: drop it from the shared place if still there."""
        ...


class AccessTokenCache:
    """Hands out a valid AccessToken, fetching one via ``fetch`` when needed.

    Args:
        fetch: coroutine function that requests a token; it receives the clock
            reading taken before sending and raises ``AICCError`` on failure.
        clock: monotonic clock in seconds (injectable for tests).
        shared: where other processes keep the same token (``redis_url``): a fetch
            asks it first, a rejection is reported to it. The single flight here
            stays: one shared look-up per refresh, not per call.
    """

    def __init__(
        self,
        fetch: Callable[[float], Awaitable[AccessToken]],
        clock: Callable[[], float],
        shared: SharedTokens | None = None,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._shared = shared
        self._token: AccessToken | None = None
        self._inflight: asyncio.Task[AccessToken] | None = None
        self._closed = False
        self._no_refresh_before = -math.inf
        #: Recently issued token values, so error texts can mask them even once replaced.
        self.recent: deque[str] = deque(maxlen=8)

    @property
    def current(self) -> AccessToken | None:
        """The cached token, if any (it may be past its refresh point)."""
        return self._token

    def usable(self, value: str) -> bool:
        """Whether ``value`` is the cached token and may still be sent now."""
        token = self._token
        return token is not None and token.value == value and self._clock() < token.expires_at

    def fresh(self) -> str | None:
        """The cached token's value if it needs no refresh yet (no I/O), else ``None``:
        then :meth:`get` it."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    async def get(self) -> str:
        """A token value that is valid now. Raises what ``fetch`` raises."""
        token = self._token
        if token is not None:
            now = self._clock()
            if now < token.refresh_at:
                return token.value
            if now < token.expires_at:
                if now >= self._no_refresh_before:
                    self._start_fetch()  # refresh ahead; this caller keeps the current token
                return token.value
            self._token = None
        token = await _join(self._start_fetch(), lambda: self._closed, "an AccessToken")
        return token.value

    def invalidate(self, value: str) -> None:
        """Drop the token ``value`` (rejected by AICC) if it is still the cached one."""
        if self._shared is not None:
            self._shared.reject(value)
        if self._token is not None and self._token.value == value:
            logger.info("AccessToken rejected by AICC; fetching a new one")
            self._token = None

    def forget(self) -> None:
        """Close without waiting: for a client closed from another event loop, where
        a fetch in progress belongs to a loop that is gone."""
        self._closed = True
        self._inflight, self._token = None, None

    async def close(self) -> None:
        """Cancel a fetch in progress and forget the token."""
        self._closed = True
        task, self._inflight, self._token = self._inflight, None, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _start_fetch(self) -> asyncio.Task[AccessToken]:
        if self._inflight is None:
            self._inflight = _spawn(self._run_fetch())
        return self._inflight

    async def _run_fetch(self) -> AccessToken:
        try:
            if self._shared is None:
                token = await self._fetch(self._clock())
            else:
                token = await self._shared.token(self._clock(), self._fetch)
        except Exception as exc:
            # A failed refresh-ahead is not retried for a while: the current token is
            # still good, and a struggling token endpoint should not be hammered.
            self._no_refresh_before = self._clock() + _REFRESH_COOLDOWN
            logger.warning("AccessToken request failed: %s", exc)
            raise
        finally:
            self._inflight = None
        self.recent.append(token.value)
        self._token = token
        logger.debug("AccessToken obtained, valid for %.0f s", token.lifetime)
        return token


class SessionToken(Protocol):
    """A second token header a call carries (the ccmessaging-token of one user)."""

    @property
    def header(self) -> str:
        """The header it is sent in."""
        ...

    async def get(self) -> str:
        """A token to send now (may apply for one)."""
        ...

    def invalidate(self, value: str) -> None:
        """AICC refused ``value``: do not hand it out again."""
        ...

    def adopt(self, value: str) -> None:
        """AICC handed out ``value`` on a response: use it from now on."""
        ...


class MessagingTokenCache:
    """ccmessaging-tokens per user: single flight per user, a bounded LRU of users.

    Args:
        apply: coroutine function applying for a token for a user ID (applyToken).
        clock: monotonic clock in seconds.
        lifetime: seconds a token is used; AICC's tokens live 1 hour, so less.
        max_users: users kept; the least recently used is forgotten beyond it.
    """

    def __init__(
        self,
        apply: Callable[[str], Awaitable[str]],
        clock: Callable[[], float],
        *,
        lifetime: float = 50 * 60,
        max_users: int = 10_000,
    ) -> None:
        self._apply = apply
        self._clock = clock
        self._lifetime = lifetime
        self._max_users = max_users
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._tokens)

    async def get(self, user_id: str) -> str:
        """A valid token for ``user_id``; one applyToken however many callers wait."""
        entry = self._tokens.get(user_id)
        if entry is not None:
            if self._clock() < entry[1]:
                self._tokens.move_to_end(user_id)
                return entry[0]
            del self._tokens[user_id]
        task = self._inflight.get(user_id)
        if task is None:
            task = self._inflight[user_id] = _spawn(self._apply_for(user_id))
        return await _join(task, lambda: self._closed, "a ccmessaging-token")

    async def _apply_for(self, user_id: str) -> str:
        started = self._clock()
        try:
            value = await self._apply(user_id)
            self._store(user_id, value, started)
            logger.debug("ccmessaging-token obtained for a user")
            return value
        finally:
            self._inflight.pop(user_id, None)

    def _store(self, user_id: str, value: str, obtained_at: float) -> None:
        self._tokens[user_id] = (value, obtained_at + self._lifetime)
        self._tokens.move_to_end(user_id)
        while len(self._tokens) > self._max_users:
            self._tokens.popitem(last=False)

    def invalidate(self, user_id: str, value: str) -> None:
        """Drop ``value`` if it is still the token cached for ``user_id``."""
        entry = self._tokens.get(user_id)
        if entry is not None and entry[0] == value:
            del self._tokens[user_id]

    def adopt(self, user_id: str, value: str) -> None:
        """Use ``value`` for ``user_id`` from now on (a fresh token AICC handed out)."""
        entry = self._tokens.get(user_id)
        if entry is None or entry[0] != value:
            self._store(user_id, value, self._clock())

    async def close(self) -> None:
        """Cancel applications in progress and forget every token."""
        self._closed = True
        tasks, self._inflight = list(self._inflight.values()), {}
        self._tokens.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- getting an AccessToken ----------------------------------------------------------------


def token_request(
    app_key: str, app_secret: str, token_ttl: int, default_headers: Mapping[str, str]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a tokenByAkSk request asking for ``token_ttl`` seconds."""
    data = json.dumps({"app_key": app_key, "app_secret": app_secret}).encode()
    headers = {
        **default_headers,
        "Content-Type": "application/json",
        "X-Token-Expire": str(token_ttl),
    }
    return data, headers


def token_lifetime(expires: object, requested: int) -> float | None:
    """``Expires`` in seconds, read one way whether a number or a string; ``requested``
    (the ``token_ttl`` asked for) when absent; ``None`` when unreadable."""
    if expires is None:
        return float(requested)
    if isinstance(expires, bool) or not isinstance(expires, int | float | str):
        return None
    try:
        seconds = float(expires.strip() if isinstance(expires, str) else expires)
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) else None


def read_token(
    info: ResponseInfo,
    raw: bytes,
    *,
    requested: int,
    started_at: float,
    redactor: Redactor,
) -> AccessToken:
    """The AccessToken of a tokenByAkSk answer (``raw`` its body).

    Its lifetime is the server's ``Expires``, never more than ``requested``; the
    token is refused when it lives under ``MIN_TOKEN_LIFETIME`` or cannot be sent
    in a header. Raises ``AICCAuthError`` for a refusal or an unusable token (the
    request that needed it was not sent), ``AICCConnectionError`` when the service
    is unavailable (HTTP 429 or 5xx; ``status`` and ``retry_after`` say more).
    ``redactor`` masks secrets in what the errors quote.
    """
    excerpt = redactor.excerpt
    status = info.status
    if status >= 300:
        reason = excerpt(raw)
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
                status=status,
                retry_after=info.retry_after,
            )
        error.response = info
        raise error
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    value = body.get("AccessToken") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(value, str) or not value:
        raise _refused(
            f"tokenByAkSk answered HTTP {status} without a usable AccessToken ({excerpt(raw)!r})",
            info,
        )
    if not HEADER_TOKEN.fullmatch(value):
        raise _refused(
            "tokenByAkSk issued an AccessToken that cannot be sent in a header "
            "(spaces, line breaks, non-ASCII characters or over 8192 characters)",
            info,
        )
    lifetime = token_lifetime(body.get("Expires"), requested)
    if lifetime is None:
        shown = redactor.mask(repr(body.get("Expires")))[:40]
        raise _refused(
            f"tokenByAkSk answered HTTP {status} without a usable AccessToken lifetime "
            f"(Expires: {shown})",
            info,
        )
    if lifetime < MIN_TOKEN_LIFETIME:
        raise _refused(
            f"tokenByAkSk issued no usable AccessToken: its lifetime of {lifetime:g} s "
            f"is below the {MIN_TOKEN_LIFETIME:g} s a token must live to be used "
            f"(X-Token-Expire asked for {requested} s). Check the token service",
            info,
        )
    # The server's lifetime, but never longer than was asked for.
    return AccessToken(
        value=value, lifetime=min(lifetime, float(requested)), obtained_at=started_at
    )


def _refused(what: str, info: ResponseInfo) -> AICCAuthError:
    error = AICCAuthError(f"{what}; {_NOT_SENT}.", endpoint=TOKEN_ENDPOINT, status=info.status)
    error.response = info
    return error


async def token_for(name: str, get: Callable[[], Awaitable[str]]) -> str:
    """A token for a request to interface ``name``, from ``get``.

    A token request that could not be completed means that request was not sent:
    never report it as an unknown outcome. Raises ``AICCConnectionError`` (``sent``
    ``"not_sent"``, ``retry_safe``) or the ``AICCAuthError`` of a refusal.
    """
    try:
        return await get()
    except (AICCTransportError, AICCHTTPError) as exc:
        raise AICCConnectionError(
            f"{name} was not sent: no token could be obtained ({exc.message})",
            endpoint=name,
            retry_after=exc.retry_after,
        ) from exc


# -- the auth flow --------------------------------------------------------------------------


class Answer(NamedTuple):
    """One HTTP answer as the transport read it: status, headers and body (at most
    ``max_response_bytes``, with the request's own ccmessaging-token masked)."""

    status: int
    headers: Mapping[str, str]
    raw: bytes


class Authorised(NamedTuple):
    """The headers one attempt sends, and the tokens in them (for :meth:`TokenAuth.answered`)."""

    headers: dict[str, str]
    token: str
    second: str | None = None


class TokenAuth:
    """Puts the client's AccessToken (and a call's second token) on a request, and
    replays it once with fresh tokens when AICC rejects one.

    The shape of httpx's ``Auth.auth_flow``, as two steps the transport drives:
    :meth:`authorise` gives the headers to send, :meth:`answered` reads the answer
    and says whether it stands or the request is replayed (once). The transport
    sends; this decides.

    Args:
        tokens: the client's AccessToken cache.
        clock: its monotonic clock.
        redactor: masks secrets in error texts and learns the second tokens sent.
    """

    def __init__(
        self, tokens: AccessTokenCache, clock: Callable[[], float], redactor: Redactor
    ) -> None:
        self.tokens = tokens
        self._clock = clock
        self._redactor = redactor
        #: The headers last built from each set of base headers (no session token).
        self._built: dict[int, tuple[Mapping[str, str], Authorised]] = {}

    async def authorise(
        self,
        name: str,
        headers: Mapping[str, str],
        session_token: SessionToken | None,
        token: str,
        *,
        replay: bool = False,
    ) -> Authorised:
        """The headers for a request to interface ``name``: ``headers`` plus the tokens.

        ``token`` is the AccessToken fetched before the throttle slot was taken; if it
        expired meanwhile (or this is the replay), a valid one is used. Raises as
        :func:`token_for`, or ``AICCAuthError`` for a second token no header can carry.
        """
        if replay or not self.tokens.usable(token):
            token = await token_for(name, self.tokens.get)
        if session_token is None:
            built = self._built.get(id(headers))
            if built is None or built[0] is not headers or built[1].token != token:
                sending = {**headers, "Authorization": f"Bearer {token}"}
                built = self._built[id(headers)] = (headers, Authorised(sending, token))
            return built[1]
        sending = {**headers, "Authorization": f"Bearer {token}"}
        second = await token_for(name, session_token.get)
        if not HEADER_TOKEN.fullmatch(second):
            raise AICCAuthError(
                f"{name} was not sent: its {session_token.header} cannot be "
                "sent in a header (spaces, line breaks or non-ASCII characters)",
                endpoint=name,
            )
        self._redactor.remember(second)
        sending[session_token.header] = second
        return Authorised(sending, token, second)

    def answered(
        self,
        name: str,
        answer: Answer,
        session_token: SessionToken | None,
        sent: Authorised,
        *,
        replay: bool = False,
    ) -> bool:
        """Whether ``answer`` stands (``False``: replay the request once, fresh tokens).

        Adopts a fresh second token the answer carries. A 401, or a 403 saying "auth
        fail", rejects the tokens: both are dropped (a 401 does not say which), and a
        rejection of the replay raises ``AICCAuthError`` (nothing was processed).
        """
        if session_token is not None:
            fresh = answer.headers.get(session_token.header)
            if fresh and HEADER_TOKEN.fullmatch(fresh):
                self._redactor.remember(fresh)
                session_token.adopt(fresh)
        status = answer.status
        if status != 401 and (status != 403 or b"auth fail" not in answer.raw.lower()):
            return True
        self.tokens.invalidate(sent.token)
        if session_token is not None and sent.second is not None:
            session_token.invalidate(sent.second)
        if not replay:
            logger.debug("%s: token rejected (HTTP %d), replaying once", name, status)
            return False
        which = "AccessToken"
        if session_token is not None:
            which += f" or {session_token.header} (check one you passed)"
        error = AICCAuthError(
            f"AICC rejected a fresh {which} for {name} (HTTP {status}): "
            "check that the app key is subscribed to this service and that the "
            "account is active. Nothing was processed.",
            endpoint=name,
            status=status,
            reason=self._redactor.excerpt(answer.raw),
        )
        error.response = ResponseInfo(status, raw_headers=answer.headers, mask=self._redactor.mask)
        raise error
