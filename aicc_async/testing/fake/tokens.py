"""tokenByAkSk, and the access-token / app-key checks every business endpoint makes.

Tokens live for the ``X-Token-Expire`` seconds asked for (60..3600, default 600) on
the fake's clock. A missing, unknown or expired token is answered 401 (``APIGW.0301``)
or 403 (``APIGW.0307``), as ``reject_status`` says.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web

from aicc_async.testing.fake._common import Answer, Exchange

__all__ = ["ENDPOINT", "PATH", "Tokens"]

ENDPOINT: Final = "tokenByAkSk"
PATH: Final = "/apigovernance/api/oauth/tokenByAkSk"

_DEFAULT_TTL: Final = 600
_MIN_TTL: Final = 60
_MAX_TTL: Final = 3600

BAD_CREDENTIALS: Final[Mapping[str, str]] = {
    "error_code": "APIGW.0101",
    "error_msg": "The app key or app secret is incorrect",
}
_BAD_TOKEN_401: Final[Mapping[str, str]] = {
    "error_code": "APIGW.0301",
    "error_msg": "Incorrect token",
}
_BAD_TOKEN_403: Final[Mapping[str, str]] = {
    "errorCode": "APIGW.0307",
    "exceptionInfo": (
        "auth fail! illegal or expired token info. please apply or refresh the access token "
        "from the server!"
    ),
}


def _same_secret(given: object, expected: str) -> bool:
    if not isinstance(given, str):
        return False
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _parse_ttl(raw: str | None) -> int | None:
    if raw is None:
        return _DEFAULT_TTL
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        return None
    ttl = int(text)
    return ttl if _MIN_TTL <= ttl <= _MAX_TTL else None


class Tokens:
    """The access tokens issued so far, and how a bad one is answered."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self.reject_status = 401
        """401 or 403 (checked by FakeAICC.token_reject_status)."""
        self.rejected = 0
        """Business requests refused for their token (the TOKEN_EXPIRED fault included)."""

    def issue(self, ex: Exchange, app_key: str, app_secret: str) -> Answer:
        """Answer tokenByAkSk: 400 for a bad body or X-Token-Expire, 401 for bad credentials."""
        body = ex.body
        if not isinstance(body, dict):
            return Answer(
                web.json_response(
                    {"error_code": "APIGW.0201", "error_msg": "The request body must be JSON"},
                    status=400,
                )
            )
        ttl = _parse_ttl(ex.headers.get("X-Token-Expire"))
        if ttl is None:
            return Answer(
                web.json_response(
                    {
                        "error_code": "APIGW.0201",
                        "error_msg": f"X-Token-Expire must be an integer in {_MIN_TTL}..{_MAX_TTL}",
                    },
                    status=400,
                )
            )
        if not (
            _same_secret(body.get("app_key"), app_key)
            and _same_secret(body.get("app_secret"), app_secret)
        ):
            return Answer(web.json_response(dict(BAD_CREDENTIALS), status=401))
        token = secrets.token_hex(16)
        self._expiry[token] = self._clock() + ttl
        answer = {
            "AccessToken": token,
            "ApplyType": "Bearer",
            "CreateTime": str(int(time.time())),
            "Expires": str(ttl),
            "Scope": "default",
            "AppKey": app_key,
            "UserID": "Anonymous",
        }
        return Answer(web.json_response(answer), processed=True)

    def expire(self) -> None:
        """Make every token issued so far invalid."""
        self._expiry.clear()

    def reject(self, ex: Exchange) -> web.Response:
        """The answer to a request whose token is missing, unknown or expired."""
        if ex.endpoint != ENDPOINT:
            self.rejected += 1
        if self.reject_status == 403:
            return web.json_response(dict(_BAD_TOKEN_403), status=403)
        return web.json_response(dict(_BAD_TOKEN_401), status=401)

    def refuse(self, ex: Exchange, app_key: str | None) -> web.Response | None:
        """The answer refusing a business request's token, app key (unless ``app_key`` is
        None: not checked) or non-object body; None if all are fine."""
        if not self._valid(ex.headers.get("Authorization")):
            return self.reject(ex)
        if app_key is not None and ex.headers.get("X-APP-Key") != app_key:
            return web.json_response(dict(BAD_CREDENTIALS), status=401)
        if not isinstance(ex.body, dict):
            return web.json_response(
                {"error_code": "APIGW.0201", "error_msg": "The request body must be a JSON object"},
                status=400,
            )
        return None

    def _valid(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        token = authorization[len("Bearer ") :]
        if not token or token != token.strip() or " " in token:
            return False
        expires_at = self._expiry.get(token)
        if expires_at is None:
            return False
        if self._clock() >= expires_at:
            del self._expiry[token]
            return False
        return True
