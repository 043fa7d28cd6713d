"""The session lifecycle: one ``aiohttp.ClientSession`` (one ``TCPConnector`` pool,
keep-alive on) per client, shared with the clients derived from it by
``with_options``, opened on first use and closed by the client that created it.

A caller-supplied session is used as is and never closed here. The same object
holds what else a client shares with its derived clients: the retry budget, the
Redis state, the secrets to mask and the event loop they all belong to.
"""

from __future__ import annotations

import asyncio

import aiohttp

from aicc_async._failures import not_sent
from aicc_async._masking import Redactor
from aicc_async.auth import AccessTokenCache
from aicc_async.config import ClientConfig, Timeout
from aicc_async.errors import AICCConnectionError
from aicc_async.redis_state import RedisState
from aicc_async.retry import RetryBudget

__all__ = ["Shared", "client_timeout"]


def client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    """aiohttp's form of a ``Timeout`` (seconds become a ``Timeout`` in ``config``)."""
    return aiohttp.ClientTimeout(total=timeout.total, connect=timeout.connect)


class Shared:
    """What a client shares with the clients derived from it: the connection pool,
    the AccessToken, the retry budget, the Redis state, the secrets to mask and the
    event loop they belong to. Closed by the client that created it."""

    def __init__(
        self,
        config: ClientConfig,
        session: aiohttp.ClientSession | None,
        budget: RetryBudget | None,
        redis: RedisState | None = None,
    ) -> None:
        self._config = config
        self.session = session
        #: The state shared with other processes (``redis_url``), if any.
        self.redis = redis
        self.owns_session = session is None
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.budget = budget
        #: The AccessToken cache and the masking of secrets (set once tokens exist).
        self.tokens: AccessTokenCache
        self.redactor: Redactor

    @property
    def open(self) -> bool:
        """True while this holds an open session it must close."""
        return self.owns_session and self.session is not None and not self.session.closed

    def open_session(self) -> aiohttp.ClientSession:
        """The session, created on first use (when the caller gave none)."""
        session = self.session
        if session is None:
            config = self._config
            connector = aiohttp.TCPConnector(
                limit=config.max_connections,  # connections in the pool, all hosts
                ttl_dns_cache=300,  # seconds a DNS answer is reused
                keepalive_timeout=30,  # seconds an idle connection is kept for reuse
            )
            session = self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=client_timeout(config.timeout),
                raise_for_status=False,
                trust_env=config.trust_env,  # HTTP(S)_PROXY / NO_PROXY only if asked
                trace_configs=list(config.trace_configs) or None,  # e.g. OpenTelemetry
            )
        return session

    def enter(self, name: str) -> None:
        """Check that a request to ``name`` may be sent from the running event loop
        (the first one to send owns everything here); raises ``AICCConnectionError``
        (not sent) for a closed client or another loop."""
        if self.closed:
            raise closed_error(name)
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            if self.loop is not None:
                raise not_sent(
                    name,
                    "this AICCClient was first used in another event loop (a second "
                    "asyncio.run()?) and its connections, token and limits belong to that "
                    "loop, so nothing was sent. Create one AICCClient per event loop, "
                    "inside the loop that uses it.",
                )
            self.loop = loop

    async def close(self) -> None:
        """Stop token refreshes, let go of Redis, and close the session if it was
        opened here."""
        self.closed = True
        try:
            foreign = self.loop is not None and self.loop is not asyncio.get_running_loop()
        except RuntimeError:
            foreign = True
        if foreign:
            # Closed from another loop than the one it ran in: what belonged to that
            # loop cannot be awaited here. Drop it; closing the pool marks it closed.
            self.tokens.forget()
            if self.redis is not None:
                self.redis.forget()
            if self.owns_session and self.session is not None:
                connector = self.session.connector
                try:
                    if connector is not None:
                        await connector.close()
                except RuntimeError:
                    pass  # its loop is gone, and its sockets with it
            return
        await self.tokens.close()
        if self.redis is not None:
            await self.redis.close()
        if self.owns_session and self.session is not None:
            await self.session.close()


def closed_error(name: str) -> AICCConnectionError:
    """The error of a request to ``name`` on a closed client."""
    return not_sent(
        name, "this AICCClient is closed, so nothing was sent. Create a new AICCClient."
    )
