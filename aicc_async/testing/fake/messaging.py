"""CC-Messaging: applyToken and doLeaveMessage.

applyToken issues a ``ccmessaging-token`` for a ``userId`` (living 3600 s on the
fake's clock); doLeaveMessage needs that token in the ``ccmessaging-token`` header
and a ``callId`` equal to the userId it was issued for, else HTTP 401.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
from aiohttp import web

from aicc_async.testing.fake._common import Answer, Exchange, is_text

__all__ = ["APPLY_TOKEN", "APPLY_TOKEN_PATH", "LEAVE_MESSAGE", "LEAVE_MESSAGE_PATH", "Messaging"]

APPLY_TOKEN: Final = "applyToken"  # noqa: S105 - not a secret
APPLY_TOKEN_PATH: Final = "/apiaccess/ccmessaging/applyToken"  # noqa: S105 - not a secret
LEAVE_MESSAGE: Final = "doLeaveMessage"
LEAVE_MESSAGE_PATH: Final = "/apiaccess/ccmessaging/doLeaveMessage"

_TOKEN_HEADER: Final = "ccmessaging-token"  # noqa: S105 - a header name
_TOKEN_TTL: Final = 3600

_BAD_TOKEN: Final[Mapping[str, str]] = {
    "resultCode": "401",
    "resultDesc": "ccmessaging-token is invalid",
}
_SAVED: Final[Mapping[str, str]] = {
    "resultCode": "0",
    "resultDesc": "Save leaveMessage success!",
}
_BAD_PARAMS: Final[Mapping[str, str]] = {
    "resultCode": "3",
    "resultDesc": "the leaveMessageParams is error",
}
_FAILED: Final[Mapping[str, str]] = {
    "resultCode": "13",
    "resultDesc": "Save leaveMessage failed!",
}


@attrs.frozen
class _Token:
    user_id: str
    expires_at: float


def _apply_token_error(body: Mapping[str, Any], channels: set[str] | None) -> str | None:
    """The resultDesc refusing an applyToken body, or None if it is valid."""
    if not is_text(body.get("userId"), 1, 32):
        return "The userId is invalid"
    for name in ("userName", "channelId", "locale"):
        if not is_text(body.get(name)):
            return f"The {name} is invalid"
    if channels is not None and body["channelId"] not in channels:
        return "The channelId is not configured"
    return None


def _leave_message_valid(body: Mapping[str, Any]) -> bool:
    fields = ("callId", "caller", "leaveMessage", "channel")
    return all(is_text(body.get(name)) for name in fields) and body["channel"] == "WEB"


class Messaging:
    """The ccmessaging-tokens issued so far; ``rejected`` counts doLeaveMessage 401s."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self.rejected = 0

    def apply_token(self, ex: Exchange, channels: set[str] | None) -> Answer:
        """Answer an applyToken whose access token and body object were accepted.

        ``channels``: when a set, a ``channelId`` outside it answers resultCode 1.
        """
        error = _apply_token_error(ex.body, channels)
        if error is not None:
            return Answer(web.json_response({"resultCode": "1", "resultDesc": error}))
        token = self._issue(ex.body["userId"])
        return Answer(web.json_response({"resultCode": "0", "token": token}), processed=True)

    def leave_message(self, ex: Exchange, *, fails: bool, rotate: bool) -> Answer:
        """Answer a doLeaveMessage whose access token and body object were accepted.

        ``fails``: a valid message answers resultCode 13, not saved. ``rotate``: a saved
        message's answer carries a fresh ``ccmessaging-token`` header.
        """
        user_id = self._user(ex.headers.get(_TOKEN_HEADER))
        if user_id is None:
            return Answer(self._reject())
        body = ex.body
        if not _leave_message_valid(body):
            return Answer(web.json_response(dict(_BAD_PARAMS)))
        if body["callId"] != user_id:
            return Answer(self._reject())
        if fails:
            return Answer(web.json_response(dict(_FAILED)))
        headers: dict[str, str] = {}
        if rotate:
            headers[_TOKEN_HEADER] = self._issue(user_id)
        return Answer(web.json_response(dict(_SAVED), headers=headers), processed=True)

    def expire(self) -> None:
        """Make every ccmessaging-token issued so far invalid."""
        self._tokens.clear()

    def _issue(self, user_id: str) -> str:
        token = secrets.token_hex(16)
        self._tokens[token] = _Token(user_id, self._clock() + _TOKEN_TTL)
        return token

    def _user(self, token: str | None) -> str | None:
        """The userId a valid, unexpired ccmessaging-token was issued for, else None."""
        if token is None:
            return None
        entry = self._tokens.get(token)
        if entry is None:
            return None
        if self._clock() >= entry.expires_at:
            del self._tokens[token]
            return None
        return entry.user_id

    def _reject(self) -> web.Response:
        self.rejected += 1
        return web.json_response(dict(_BAD_TOKEN), status=401)
