"""createVoiceNotification: validation codes as the real platform answers them.

A valid notification places a call (counted per ``called`` number), takes the next
call serial number and, when it carries ``callBackUrl``, schedules a release event.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from aicc_async.testing.fake._common import Answer, Exchange
from aicc_async.testing.fake.release_events import ReleaseEventSender

__all__ = ["ENDPOINT", "PATH", "RET_MSGS", "VoiceNotifications"]

ENDPOINT: Final = "createVoiceNotification"
PATH: Final = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"

_CALLED_RE: Final = re.compile(r"\+?[0-9]{1,32}")
_CALLER_RE: Final = re.compile(r"[0-9]{1,32}")
_CALLBACK_CHARS_RE: Final = re.compile(r"[A-Za-z0-9\-:./_#?&]+")
_PRIORITIES: Final = frozenset(str(n) for n in range(1, 10))

RET_MSGS: Final[Mapping[str, str]] = {
    "0": "Created successfully.",
    "1": "A task is in progress. Try again later.",
    "5": "The value of caller or called is not transferred, or the format does not match the rule.",
    "7": "callerPresent or agentPresent fails to pass the verification.",
    "8": "The value of voiceContent is empty, exceeds the upper limit, or does not exist.",
    "9": "The value of callBackUrl does not meet the requirements.",
    "16": (
        "The tenant is in trial commercial use state, and the called number is not in the "
        "trustlist."
    ),
    "36": "The value of priority is in an incorrect format.",
}


def _valid_callback_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        url = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    if not _CALLBACK_CHARS_RE.fullmatch(url):
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _ret_code(body: Mapping[str, Any], trustlist: set[str] | None) -> str | None:
    """The failing retCode for a createVoiceNotification body, or None if it is valid."""
    called = body.get("called")
    if not isinstance(called, str) or not _CALLED_RE.fullmatch(called):
        return "5"
    content = body.get("voiceContent")
    if not isinstance(content, str) or not content or len(content) > 1000:
        return "8"
    caller = body.get("callerPresent")
    if caller is not None and (not isinstance(caller, str) or not _CALLER_RE.fullmatch(caller)):
        return "7"
    callback = body.get("callBackUrl")
    if callback is not None and not _valid_callback_url(callback):
        return "9"
    priority = body.get("priority")
    if priority is not None and priority not in _PRIORITIES:
        return "36"
    if trustlist is not None and called not in trustlist:
        return "16"
    return None


class VoiceNotifications:
    """Places the calls; ``calls`` counts them per called number."""

    def __init__(self, serials: Iterator[int], release_events: ReleaseEventSender) -> None:
        self._serials = serials
        self._release_events = release_events
        self.calls: Counter[str] = Counter()

    def create(self, ex: Exchange, trustlist: set[str] | None) -> Answer:
        """Answer a createVoiceNotification whose token and body object were accepted.

        ``trustlist``: when a set, a ``called`` number outside it answers retCode 16.
        """
        body = ex.body
        code = _ret_code(body, trustlist)
        if code is not None:
            return Answer(web.json_response({"retCode": code, "retMsg": RET_MSGS[code]}))
        serial = str(next(self._serials))
        self.calls[body["called"]] += 1
        self._release_events.schedule(body, serial)
        answer = {"result": {"callSerialNo": serial}, "retCode": "0", "retMsg": RET_MSGS["0"]}
        return Answer(web.json_response(answer), processed=True)
