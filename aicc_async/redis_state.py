"""State shared by every process of one tenant, in Redis (``redis_url=``): the
AccessToken and the ``rate_limits`` caps. Needs the ``aicc-async[redis]`` extra.

- **AccessToken**: cached under ``aicc-async:token:<hash of token URL and app key>``
  with the token's expiry as the key's TTL (the secret is never part of a key or a
  value). A process that needs a token reads it; when it is missing, past its
  refresh point or rejected, one process at a time (a Redis lock with a timeout)
  fetches a new one while the others wait and then read it. A rejected token is
  deleted only if Redis still holds that value (compare-and-delete), so a process
  reporting an old token never removes the fresh one another process just stored.
  The client's in-process single flight stays on top: one Redis round trip per
  refresh per process, not per call.
- **Rate caps**: :class:`RedisRateCap`, GCRA in a Lua script on Redis's own clock
  (atomic, one round trip per start), keyed by app key and endpoint group, so
  ``rate_limits`` hold for the tenant across processes.
- **Adaptive rates** (``rate_limits={group: "auto"}``): :class:`RedisAdaptiveRate`,
  the same GCRA at the rate ``adaptive.cubic_rate`` gives for the time since the
  tenant's last cut, all kept in Redis: a throttle answer in any process cuts the
  one rate every process paces with, so they converge on the tenant's limit
  together, not each on its own.
- **Redis down**: ``AICCConnectionError`` ("Redis at ... unreachable; nothing was
  sent", or "did not answer within N s" for a server that accepts connections but
  never replies, such as a frozen one), unless ``redis_fallback="local"``: then one
  WARNING and this process's own token and caps (re-trying Redis every 30 s). Either
  way one failure is enough: for the next 30 s every call of the client fails at once
  (or goes local) instead of waiting for Redis again, so a frozen Redis costs one
  timeout, not one per request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aicc_async.adaptive import BETA, WINDOW, AdaptiveRate, AutoRate, C
from aicc_async.auth import AccessToken
from aicc_async.errors import AICCConnectionError, AICCValidationError, masked_url
from aicc_async.throttle import RateCap

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["REDIS_FALLBACKS", "RedisAdaptiveRate", "RedisRateCap", "RedisState"]

logger = logging.getLogger(__name__)

#: What ``redis_fallback`` may be: fail clearly, or use this process's own state.
REDIS_FALLBACKS = ("fail", "local")
_PREFIX = "aicc-async"
_RETRY_REDIS_AFTER = 30.0  # seconds on local state before Redis is tried again
_LOCK_WAIT_SLACK = 2.0

# GCRA: KEYS[1] the theoretical arrival time (microseconds, Redis's clock);
# ARGV[1] the interval, ARGV[2] the burst tolerance (microseconds).
# Returns 0 when a start is granted (and counted), else the microseconds to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ready = tat - tolerance
if ready > now then return math.ceil(ready - now) end
local due = tat + interval
redis.call('SET', KEYS[1], string.format('%d', due), 'PX', math.ceil((due - now) / 1000) + 1000)
return 0
"""

# The adaptive rate (adaptive.cubic_rate, on Redis's clock): KEYS[1] a hash holding
# 'cut' (when the last cut, or the start, was; microseconds), 'limit' (the rate at the
# last cut; absent during slow start) and the window measuring the rate sent ('at',
# 'n', 'sent'); KEYS[2] the GCRA arrival time. ARGV: initial, ceiling (0: none), floor,
# doubling (s), C, beta, window (s), TTL (ms). Times and rates are stored formatted
# ('%d', '%.6f'): Lua would write a large number with too few digits.
_AUTO_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local initial, ceiling, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local doubling, c, beta = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local s = redis.call('HMGET', KEYS[1], 'cut', 'limit', 'at', 'n', 'sent')
local cut = tonumber(s[1])
if not cut then
  cut = now
  local started = string.format('%d', now)
  redis.call('HSET', KEYS[1], 'cut', started, 'at', started, 'n', 0)
end
local since = (now - cut) / 1000000
local rate
local limit = tonumber(s[2])
if limit then
  local k = (limit * (1 - beta) / c) ^ (1 / 3)
  rate = limit + c * (since - k) ^ 3
else
  rate = initial * 2 ^ math.min(since / doubling, 60)
end
local sent = tonumber(s[5])
if sent then rate = math.min(rate, 2 * sent + floor) end
if ceiling > 0 then rate = math.min(rate, ceiling) end
rate = math.max(rate, floor)
return {cut, rate, now}
"""

# One start at the adaptive rate: as _AUTO_RATE, then GCRA on KEYS[2]. Returns
# {wait in microseconds (0: granted and counted), rate in millis per second, cut}.
_AUTO_GCRA = _AUTO_RATE.replace(
    "return {cut, rate, now}",
    """
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
if tat > now then return {math.ceil(tat - now), math.floor(rate * 1000), cut} end
redis.call('SET', KEYS[2], string.format('%d', tat + interval), 'PX', tonumber(ARGV[8]))
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local at = tonumber(s[3]) or now
local window = tonumber(ARGV[7]) * 1000000
if now - at >= window then
  local sent_now = string.format('%.6f', n * 1000000 / (now - at))
  redis.call('HSET', KEYS[1], 'sent', sent_now, 'at', string.format('%d', now), 'n', 0)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[8]))
return {0, math.floor(rate * 1000), cut}
""",
)

# A throttle answer to a request started when the last cut was ARGV[9]: if no cut
# came since, cut now (the limit is the rate now). Returns the cut now in force.
_AUTO_CUT = _AUTO_RATE.replace(
    "return {cut, rate, now}",
    """
if cut ~= tonumber(ARGV[9]) then return {cut} end
redis.call('HSET', KEYS[1], 'limit', string.format('%.6f', rate), 'cut', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[8]))
return {now}
""",
)

# The token entry and its remaining lifetime in milliseconds, in one round trip.
_READ = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}
"""

# Compare-and-delete: drop KEYS[1] only if it still holds the token ARGV[1].
_DROP = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, entry = pcall(cjson.decode, v)
if ok and type(entry) == 'table' and entry['token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class RedisState:
    """One client's connection to the shared state (created on first use, in the
    event loop that uses it) and what to do when Redis is unreachable.

    Args:
        url: ``redis://`` or ``rediss://`` URL (validated by ``ClientConfig``).
        token_endpoint, app_key: what the AccessToken key is derived from.
        fallback: ``"fail"`` or ``"local"`` (see the module docstring).
        clock: monotonic clock, seconds.
        lock_timeout: seconds a process may hold the token-fetch lock.
        timeout: seconds Redis has to accept a connection and to answer a command.

    Raises ``AICCValidationError`` when the ``redis`` package is not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        token_endpoint: str,
        app_key: str,
        fallback: str = "fail",
        clock: Callable[[], float] = time.monotonic,
        lock_timeout: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401 - only checks the extra is there
        except ImportError:
            raise AICCValidationError(
                "redis_url needs the redis extra: pip install 'aicc-async[redis]'",
                field="redis_url",
            ) from None
        self.url = url
        self.shown = masked_url(url)
        self._fallback = fallback
        self._clock = clock
        self._lock_timeout = lock_timeout
        self._timeout = timeout
        self.token_key = f"{_PREFIX}:token:{_digest(token_endpoint, app_key)}"
        self.rate_prefix = f"{_PREFIX}:rate:{_digest(app_key)}"
        self._client: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._local_until = -float("inf")
        self._warned = False
        #: Until when calls fail at once (``redis_fallback="fail"``), and with what.
        self._down_until = -float("inf")
        self._down = ""
        #: Token values AICC rejected, to compare-and-delete at the next fetch.
        self._rejected: set[str] = set()

    # -- connection and failure --------------------------------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis

            self._client = Redis.from_url(
                self.url,
                socket_connect_timeout=self._timeout,
                socket_timeout=self._timeout,
                decode_responses=True,
            )
            self._scripts = {
                name: self._client.register_script(text)
                for name, text in (
                    ("gcra", _GCRA),
                    ("read", _READ),
                    ("drop", _DROP),
                    ("auto_gcra", _AUTO_GCRA),
                    ("auto_cut", _AUTO_CUT),
                )
            }
        return self._client

    @property
    def local(self) -> bool:
        """True while Redis was unreachable and ``redis_fallback="local"`` applies."""
        return self._clock() < self._local_until

    def check(self) -> None:
        """Raise the ``AICCConnectionError`` of Redis's last failure while calls fail at
        once (``redis_fallback="fail"``, for ``_RETRY_REDIS_AFTER`` seconds after it)."""
        if self._clock() < self._down_until:
            raise AICCConnectionError(self._down)

    def _failed(self, exc: Exception) -> None:
        """Redis failed: go local (opted in) or raise ``AICCConnectionError``; either way
        for the next ``_RETRY_REDIS_AFTER`` seconds, without trying Redis again."""
        from redis.exceptions import TimeoutError as RedisTimeout

        reason = type(exc).__name__
        if isinstance(exc, RedisTimeout | TimeoutError):
            what = f"did not answer within {self._timeout:g} s"
        else:
            what = "unreachable"
        if self._fallback != "local":
            self._down_until = self._clock() + _RETRY_REDIS_AFTER
            self._down = (
                f"Redis at {self.shown} {what}; nothing was sent ({reason}). Every call "
                f"of this client fails at once for {_RETRY_REDIS_AFTER:g} s, then Redis is "
                "tried again. Check that Redis is running and answering (redis-cli ping; "
                "a server stopped, frozen or out of memory answers nothing) and redis_url "
                "/ AICC_REDIS_URL, or pass redis_fallback='local' (AICC_REDIS_FALLBACK="
                "local) to use this process's own token and rate caps while Redis is down"
            )
            raise AICCConnectionError(self._down) from exc
        self._local_until = self._clock() + _RETRY_REDIS_AFTER
        if not self._warned:
            self._warned = True
            logger.warning(
                "Redis at %s %s (%s): using this process's own AccessToken and "
                "rate caps (redis_fallback='local'); the caps are no longer tenant-wide",
                self.shown,
                what,
                reason,
            )

    def forget(self) -> None:
        """Drop the connection pool without awaiting it (its event loop is gone)."""
        self._client = None

    async def close(self) -> None:
        """Close the connection pool (the shared state stays in Redis)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- the AccessToken -----------------------------------------------------------------

    def reject(self, value: str) -> None:
        """AICC rejected ``value``: never take it from Redis again; the next fetch deletes
        it there if Redis still holds it."""
        self._rejected.add(value)

    async def token(
        self, started_at: float, fetch: Callable[[float], Awaitable[AccessToken]]
    ) -> AccessToken:
        """A fresh AccessToken: Redis's if it is usable and not past its refresh point,
        else one ``fetch`` obtains under the shared lock (and stores).

        Raises what ``fetch`` raises, or ``AICCConnectionError`` when Redis is
        unreachable (without ``redis_fallback="local"``).
        """
        if self.local:
            return await fetch(started_at)
        self.check()
        from redis.exceptions import LockError, RedisError

        try:
            token = await self._read(started_at)
            if token is not None:
                return token
            lock = self._redis().lock(
                self.token_key + ":lock",
                timeout=self._lock_timeout,
                blocking_timeout=self._lock_timeout + _LOCK_WAIT_SLACK,
            )
            acquired = await lock.acquire()
        except RedisError as exc:
            self._failed(exc)
            return await fetch(started_at)
        try:
            if acquired:
                try:
                    await self._drop_rejected()
                    token = await self._read(started_at)
                except RedisError as exc:
                    self._failed(exc)
                    return await fetch(started_at)
                if token is not None:
                    return token  # another process fetched it while this one waited
            else:
                logger.warning("waited too long for the shared AccessToken lock; fetching")
            token = await fetch(started_at)
            try:
                await self._store(token)
            except RedisError as exc:
                logger.warning("could not store the AccessToken in Redis (%s)", type(exc).__name__)
            return token
        finally:
            if acquired:
                # Expired (its timeout) or Redis gone: either way it frees itself.
                with contextlib.suppress(LockError, RedisError):
                    await lock.release()

    async def _read(self, started_at: float) -> AccessToken | None:
        self._redis()
        found = await self._scripts["read"](keys=[self.token_key])
        if not found:
            return None
        raw, remaining_ms = found
        try:
            entry = json.loads(raw)
            value, lifetime = str(entry["token"]), float(entry["lifetime"])
        except (ValueError, KeyError, TypeError):
            return None
        remaining = int(remaining_ms) / 1000
        if value in self._rejected or remaining <= 0:
            return None
        # As if obtained when its lifetime began: it ages (refresh, expiry) in step with
        # the copy every other process holds, and never outlives Redis's expiry.
        token = AccessToken(
            value=value,
            lifetime=lifetime,
            obtained_at=started_at - max(0.0, lifetime - remaining),
        )
        return token if started_at < token.refresh_at else None

    async def _store(self, token: AccessToken) -> None:
        remaining = token.obtained_at + token.lifetime - self._clock()
        if remaining <= 1:
            return
        entry = json.dumps({"token": token.value, "lifetime": token.lifetime})
        await self._redis().set(self.token_key, entry, px=int(remaining * 1000))

    async def _drop_rejected(self) -> None:
        for value in list(self._rejected):
            if await self._scripts["drop"](keys=[self.token_key], args=[value]):
                logger.debug("rejected AccessToken removed from Redis")
            self._rejected.discard(value)

    # -- rate caps ----------------------------------------------------------------------

    def script(self, name: str) -> Any:
        """The registered Lua script ``name`` (connecting if needed)."""
        self._redis()
        return self._scripts[name]

    async def gcra(self, key: str, interval: float, tolerance: float) -> float:
        """One GCRA step on ``key``: 0 when a start is granted, else seconds to wait.
        Raises ``redis.exceptions.RedisError``."""
        self._redis()
        wait = await self._scripts["gcra"](
            keys=[key], args=[int(interval * 1e6), int(tolerance * 1e6)]
        )
        return int(wait) / 1e6


class RedisRateCap:
    """At most ``rate`` starts per second for the whole tenant, across every process
    using the same Redis (GCRA; see :class:`~aicc_async.throttle.RateCap`).

    Callers of :meth:`wait` in this process queue in arrival order, so one Redis round
    trip serves one start. With ``redis_fallback="local"`` it paces with a local
    ``RateCap`` while Redis is unreachable.

    Args:
        state: the client's :class:`RedisState`.
        group: endpoint group (part of the key).
        rate: starts per second; ``burst`` as for ``RateCap``.
        sleep: coroutine function sleeping a number of seconds (tests inject one).
    """

    def __init__(
        self,
        state: RedisState,
        group: str,
        rate: float,
        *,
        burst: int = 1,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._state = state
        self.key = f"{state.rate_prefix}:{group}"
        self.interval = 1.0 / rate
        self._tolerance = (max(1, burst) - 1) * self.interval
        self._sleep = sleep or asyncio.sleep
        self._local = RateCap(rate, burst=burst, sleep=sleep)
        self._queue = asyncio.Lock()

    async def wait(self) -> None:
        """Return when this caller may start a request (counted in Redis).

        Raises ``AICCConnectionError`` when Redis is unreachable (nothing was sent),
        unless ``redis_fallback="local"``.
        """
        from redis.exceptions import RedisError

        async with self._queue:
            while not self._state.local:
                self._state.check()  # failed at once after a failure, not once per caller
                try:
                    delay = await self._state.gcra(self.key, self.interval, self._tolerance)
                except RedisError as exc:
                    self._state._failed(exc)
                    break
                if delay <= 0:
                    return
                await self._sleep(delay)
        await self._local.wait()


_AUTO_TTL_MS = 3_600_000  # the learnt rate is forgotten after an hour without a start


class RedisAdaptiveRate(AdaptiveRate):
    """``rate="auto"`` for the whole tenant: the rate lives in Redis, every process paces
    its starts by it (GCRA on Redis's clock, one round trip per start) and a throttle
    answer in any process cuts it for all (see :mod:`aicc_async.adaptive`).

    :attr:`rate` and :attr:`samples` show the rate this process last read; ``sent`` and
    ``throttled`` count this process's answers. With ``redis_fallback="local"`` it
    paces locally (its own adaptive rate) while Redis is unreachable.
    """

    def __init__(
        self,
        state: RedisState,
        group: str,
        spec: AutoRate,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(ceiling=spec.ceiling, initial=spec.initial, clock=clock, sleep=sleep)
        self._state = state
        self.keys = [f"{state.rate_prefix}:{group}:auto", f"{state.rate_prefix}:{group}:auto:tat"]
        self._args = [
            self._initial, spec.ceiling or 0, self._floor, self._doubling,
            C, BETA, WINDOW, _AUTO_TTL_MS,
        ]  # fmt: skip
        self._shared_rate = self._initial
        self._cuts: set[asyncio.Task[None]] = set()

    def ready(self) -> bool:
        """Never: each start is counted in Redis (:meth:`wait`)."""
        return False

    def _current(self, now: float) -> float:
        if self._state.local:
            return super()._current(now)
        if now - self._sampled_at >= self._sample_every:
            self._sample(now, self._shared_rate)
        return self._shared_rate

    async def wait(self) -> None:
        """Return when one start may happen for the tenant (counted in Redis).

        Raises ``AICCConnectionError`` when Redis is unreachable (nothing was sent),
        unless ``redis_fallback="local"``.
        """
        from redis.exceptions import RedisError

        sleep = self._sleep or asyncio.sleep
        async with self._queue:
            while not self._state.local:
                try:
                    script = self._state.script("auto_gcra")
                    wait, rate, cut = await script(keys=self.keys, args=self._args)
                except RedisError as exc:
                    self._state._failed(exc)
                    break
                self._shared_rate = int(rate) / 1000
                self.epoch = int(cut)
                if int(wait) <= 0:
                    return
                await sleep(int(wait) / 1e6)
        await super().wait()

    def answered(self, epoch: int, throttled: bool) -> None:
        """As ``AdaptiveRate.answered``; a cut is made in Redis, for every process."""
        if self._state.local:
            super().answered(epoch, throttled)
            return
        self.sent += 1
        if throttled:
            self.throttled += 1
            task = asyncio.ensure_future(self._cut(epoch))
            self._cuts.add(task)
            task.add_done_callback(self._cuts.discard)

    async def _cut(self, epoch: int) -> None:
        from redis.exceptions import RedisError

        try:
            script = self._state.script("auto_cut")
            (cut,) = await script(keys=self.keys, args=[*self._args, epoch])
        except RedisError as exc:  # the next start reports Redis's state
            logger.debug("could not cut the shared adaptive rate (%s)", type(exc).__name__)
            return
        self.epoch = int(cut)
