"""Token caches: the AccessToken (tokenByAkSk) shared by every coroutine of one
client, and ccmessaging-tokens (applyToken), one per messaging user.

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
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import attrs

from aicc_async.errors import AICCConnectionError

__all__ = ["AccessToken", "AccessTokenCache", "MessagingTokenCache", "SessionToken"]

logger = logging.getLogger("aicc_async")

_REFRESH_COOLDOWN = 5.0  # seconds between refresh-ahead attempts after one failed

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

    def usable(self, now: float) -> bool:
        """Whether it may still be sent at monotonic time ``now``."""
        return now < self.expires_at

    def __repr__(self) -> str:
        return f"AccessToken(value='***', lifetime={self.lifetime!r})"


class AccessTokenCache:
    """Hands out a valid AccessToken, fetching one via ``fetch`` when needed.

    Args:
        fetch: coroutine function that requests a token; it receives the clock
            reading taken before sending and raises ``AICCError`` on failure.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        fetch: Callable[[float], Awaitable[AccessToken]],
        clock: Callable[[], float],
    ) -> None:
        self._fetch = fetch
        self._clock = clock
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
            token = await self._fetch(self._clock())
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
