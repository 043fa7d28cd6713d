"""Serving an ``aiohttp.web`` app on the open internet from the ``aicc`` command (the
release-event receiver of ``notify --listen`` and ``listen``), so that slow or
half-open clients cannot starve it:

* a connection must finish each request's headers within ``deadline`` seconds of
  opening (or of its previous answer), else it is closed (aiohttp's keep-alive timer,
  which runs from the start of a connection); the receiver bounds the body itself;
* at most ``max_connections`` are open: at the cap, the connection with no request
  under way that was quiet longest (a half-sent request, an idle keep-alive) is closed
  for the new one, and when every one is busy the new one is answered 503 and closed
  at once (never accepted and left waiting);
* the event loop's accept errors (e.g. "too many open files") are logged once per
  ``quiet`` seconds with a count, not once per accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["Served", "serve"]

logger = logging.getLogger(__name__)

_BUSY_BODY = b'{"retCode": "12", "retMsg": "too many connections; deliver it again later"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
) % (len(_BUSY_BODY), _BUSY_BODY)


class _Busy(asyncio.Protocol):
    """A connection over the cap: answered 503 and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


@attrs.define
class Served:
    """Where the app is served, and what the guard did so far."""

    host: str
    port: int
    closed_idle: int = 0
    """Connections closed at the cap because a newer one came (no request under way)."""
    refused: int = 0
    """Connections answered 503 at once: the cap was reached and every one was busy."""
    accept_errors: int = 0
    """Accept errors the event loop reported (logged once in a while)."""


class _Watched(asyncio.Protocol):
    """A connection's aiohttp handler, with when it was last heard from (or answered)."""

    def __init__(self, handler: RequestHandler, clock: Callable[[], float]) -> None:
        self.handler = handler
        self._clock = clock
        self.heard = clock()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.heard = self._clock()
        self.handler.data_received(data)

    def eof_received(self) -> None:
        self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    @property
    def open(self) -> bool:
        return not self.lost and not (self.transport is not None and self.transport.is_closing())


class _Guard:
    def __init__(
        self, server: web.Server, cap: int, served: Served, clock: Callable[[], float]
    ) -> None:
        self._server = server
        self._clock = clock
        self._cap = cap
        self._served = served
        self._busy: set[RequestHandler] = set()  # a request under way
        # Every connection made here (several are accepted in one go, before any of
        # them is told it is connected: they count from the start).
        self._made: dict[RequestHandler, _Watched] = {}

    def protocol(self) -> asyncio.BaseProtocol:
        for handler, watched in list(self._made.items()):
            if not watched.open:
                del self._made[handler]
        if len(self._made) >= self._cap:
            idle = [
                w for h, w in self._made.items() if w.transport is not None and h not in self._busy
            ]
            if not idle:
                self._served.refused += 1
                return _Busy()
            # The one quiet longest: a half-sent request, or a keep-alive left idle.
            quietest = min(idle, key=lambda w: w.heard)
            quietest.handler.force_close()
            del self._made[quietest.handler]
            self._served.closed_idle += 1
        watched = _Watched(self._server(), self._clock)
        self._made[watched.handler] = watched
        return watched

    def tracking(
        self, handler: Callable[[Any], Awaitable[web.StreamResponse]]
    ) -> Callable[[Any], Awaitable[web.StreamResponse]]:
        """``handler``, with its connection marked busy while a request is under way."""

        async def handle(request: Any) -> web.StreamResponse:
            protocol = request.protocol
            self._busy.add(protocol)
            try:
                return await handler(request)
            finally:
                self._busy.discard(protocol)
                watched = self._made.get(protocol)
                if watched is not None:
                    watched.heard = self._clock()

        return handle


class _QuietAccepts:
    """A loop exception handler that logs accept errors once per ``quiet`` seconds."""

    def __init__(self, served: Served, quiet: float, clock: Callable[[], float]) -> None:
        self._served = served
        self._quiet = quiet
        self._clock = clock
        self._logged_at = -float("inf")
        self._unlogged = 0
        self.previous: Any = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" not in message:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._served.accept_errors += 1
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at >= self._quiet:
            exc = context.get("exception")
            logger.error(
                "%s (%s): %d time(s) since the last report; new connections wait meanwhile",
                message,
                exc if exc is not None else "no detail",
                self._unlogged,
            )
            self._logged_at = now
            self._unlogged = 0


@contextlib.asynccontextmanager
async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_connections: int = 512,
    deadline: float = 10.0,
    quiet: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Served]:
    """Serve ``app`` on ``host:port`` (0: any free port) while the block runs, guarded
    as the module says. ``OSError`` if it cannot listen."""
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=deadline,
        lingering_time=deadline,  # an unread body after the answer: bounded too
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    served = Served(host, port)
    quiet_accepts = _QuietAccepts(served, quiet, clock)
    quiet_accepts.previous = loop.get_exception_handler()
    server: asyncio.Server | None = None
    try:
        web_server = runner.server
        assert web_server is not None
        guard = _Guard(web_server, max_connections, served, clock)
        web_server.request_handler = guard.tracking(web_server.request_handler)
        loop.set_exception_handler(quiet_accepts)
        server = await loop.create_server(guard.protocol, host, port)
        served.port = int(server.sockets[0].getsockname()[1])
        yield served
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()
        if server is not None:
            await server.wait_closed()
        if loop.get_exception_handler() is quiet_accepts:
            loop.set_exception_handler(quiet_accepts.previous)
