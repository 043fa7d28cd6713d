"""A small purpose-built AICC stand-in for faults FakeAICC cannot express.

``Hostile`` serves tokenByAkSk and any business path on 127.0.0.1 with handlers the
test chooses, and counts what it received per path (server side).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
VOICE_PATH = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
CALLED_INFO_PATH = "/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo"
LEAVE_MESSAGE_PATH = "/apiaccess/ccmessaging/doLeaveMessage"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_text(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering ``text`` (already-serialised JSON, escapes kept as written)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )

    return handle


def token(value: str = "tok-ABCDEFGH1234", expires: Any = "600") -> Handler:
    body: dict[str, Any] = {"AccessToken": value, "ApplyType": "Bearer"}
    if expires is not None:
        body["Expires"] = expires
    return json_text(json.dumps(body))


class Hostile:
    """``async with Hostile({path: handler}) as server``; ``server.url``, ``server.received``."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = {TOKEN_PATH: token(), **handlers}
        self.received: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received[request.path] += 1
        self.headers.append(dict(request.headers))
        handler = self.handlers.get(request.path)
        if handler is None:
            return web.json_response({"error": "no such path"}, status=404)
        return await handler(request)

    async def __aenter__(self) -> Hostile:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
