"""createVoiceNotification: play a voice notification to one person by phoning them.

Not idempotent: each processed request phones a real person. After an ambiguous
failure (timeout, reset, 502/503/504) it raises ``AICCOutcomeUnknownError`` and
is never re-sent unless the call passed ``retry_unsafe=True``. ``retCode`` "1"
(busy: the platform did not take it) is retried with back-off.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from aicc_async._endpoint import Endpoint
from aicc_async._fanout import Outcome, fan_out
from aicc_async._wire import ResponseInfo, wire_field
from aicc_async.config import Timeout
from aicc_async.endpoints._validate import digits, phone_number, text
from aicc_async.errors import check_flag, invalid, is_int

if TYPE_CHECKING:
    from aicc_async._transport import Transport

__all__ = [
    "VOICE_NOTIFICATION_CODES",
    "CreateVoiceNotificationRequest",
    "VoiceContent",
    "VoiceNotificationAPI",
    "VoiceNotificationCode",
    "VoiceNotificationResult",
    "check_callback_url",
]

MAX_VOICE_CONTENT = 1000
_name = "createVoiceNotification"
_CALLBACK_CHARS = re.compile(r"https?://[A-Za-z0-9\-:./_#?&]{1,1000}")


#: Documented ``retCode`` values of createVoiceNotification and their meanings.
VOICE_NOTIFICATION_CODES: Mapping[str, str] = {
    "0": "created",
    "1": "a task is in progress; try again later (the call was not taken)",
    "2": "callData is longer than 1024 characters",
    "3": "creation failed; no call serial number was generated",
    "4": "the softphone number does not match the rule",
    "5": "caller or called is missing or malformed",
    "6": "the VDN is not enabled",
    "7": "callerPresent or agentPresent failed verification: use the tenant's access code",
    "8": "voiceContent is empty, too long or refers to a voice that does not exist",
    "9": "callBackUrl does not meet the requirements (format or trustlist)",
    "16": "the tenant is in trial commercial use and the called number is not on its trustlist",
    "36": "priority is not in the right format",
}


class VoiceNotificationCode(str, enum.Enum):
    """Names for the codes of ``VOICE_NOTIFICATION_CODES`` (which holds their meanings)."""

    SUCCESS = "0"
    BUSY = "1"
    CALL_DATA_TOO_LONG = "2"
    CREATION_FAILED = "3"
    SOFTPHONE_FORMAT = "4"
    CALLER_OR_CALLED_INVALID = "5"
    VDN_NOT_ENABLED = "6"
    CALLER_PRESENT_REJECTED = "7"
    VOICE_CONTENT_INVALID = "8"
    CALLBACK_URL_INVALID = "9"
    CALLED_NOT_TRUSTLISTED = "16"
    PRIORITY_INVALID = "36"

    @property
    def meaning(self) -> str:
        """The documented meaning of this code."""
        return VOICE_NOTIFICATION_CODES[self.value]


def _check_part(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(
            "voice_content",
            f"a {kind} part must be a non-empty string, got {value!r}",
            endpoint=_name,
        )
    if "~" in value or "$" in value:
        raise invalid(
            "voice_content",
            f"a {kind} part must not contain '~' or '$', got {value!r}",
            endpoint=_name,
        )
    return value


@attrs.frozen
class VoiceContent:
    """What is played, built part by part: recorded voices and text read aloud (TTS).

    ``VoiceContent().voice("1133999").text("Tom").voice("2225149")`` renders as
    ``1133999~$Tom$~2225149``. Each method returns a new object. Raises
    ``AICCValidationError`` for an empty part or one containing ``~`` or ``$``.
    """

    parts: tuple[str, ...] = ()

    def voice(self, voice_id: str) -> VoiceContent:
        """Append a recorded voice, by its voice ID."""
        return VoiceContent((*self.parts, _check_part("voice", voice_id)))

    def text(self, words: str) -> VoiceContent:
        """Append text to be read aloud."""
        return VoiceContent((*self.parts, f"${_check_part('text', words)}$"))

    def __str__(self) -> str:
        return "~".join(self.parts)


def _voice_content(value: object) -> object:
    """A ``VoiceContent`` becomes its string; anything else is left to the validator."""
    return str(value) if isinstance(value, VoiceContent) else value


def _callback_url(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _CALLBACK_CHARS.fullmatch(value):
        raise invalid(
            "callback_url",
            "must be an http(s) URL of letters, digits and -:./_#?& only "
            "(no '=', '%', '+' or spaces); pass it plain, the SDK Base64-encodes it",
            endpoint=_name,
        )


def check_callback_url(url: object) -> None:
    """Raise ``AICCValidationError`` unless ``url`` is a ``callback_url`` AICC accepts."""
    _callback_url(None, None, url)  # type: ignore[arg-type]


def _priority(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not is_int(value) or not 1 <= value <= 9:
        raise invalid(
            "priority",
            f"must be an integer from 1 (soonest) to 9 (default), got {value!r}",
            endpoint=_name,
        )


def _b64(url: str) -> str:
    return base64.b64encode(url.encode("utf-8")).decode("ascii")


@attrs.frozen
class CreateVoiceNotificationRequest:
    """One voice notification. Validated on construction (``AICCValidationError``).

    Args:
        called: the number to phone (digits, optional leading +).
        voice_content: a ``VoiceContent`` or its ``~``-joined string, 1..1000 characters.
        caller_present: number shown to the callee (the access code; digits only).
        callback_url: plain http(s) URL for release events; sent Base64-encoded.
        priority: 1 (soonest) .. 9 (AICC's default); sent as a string.
    """

    called: str = attrs.field(validator=phone_number(_name))
    voice_content: str = attrs.field(
        converter=_voice_content, validator=text(_name, MAX_VOICE_CONTENT)
    )
    caller_present: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            digits(_name, 32, "the tenant's access code or an 11-14 digit number")
        ),
    )
    callback_url: str | None = attrs.field(
        default=None, validator=_callback_url, metadata=wire_field("callBackUrl", encode=_b64)
    )
    priority: int | None = attrs.field(
        default=None, validator=_priority, metadata=wire_field(encode=str)
    )


@attrs.frozen(kw_only=True)
class VoiceNotificationResult:
    """A created voice notification.

    ``call_serial_no`` identifies the call (release callbacks carry it); ``None``
    only if AICC accepted the call without returning one. ``raw`` is the response
    body as received; ``response`` the HTTP status, headers and request id.
    """

    call_serial_no: str | None = None
    raw: Mapping[str, Any] = attrs.field(repr=False)
    response: ResponseInfo = attrs.field(repr=False, eq=False)


ENDPOINT: Endpoint[VoiceNotificationResult] = Endpoint(
    name=_name,
    path="/apiaccess/rest/voiceNotification/v1/createVoiceNotification",
    group="voice_notification",
    idempotent=False,
    code_field="retCode",
    message_field="retMsg",
    codes=VOICE_NOTIFICATION_CODES,
    retry_codes=frozenset({VoiceNotificationCode.BUSY.value}),
    request_type=CreateVoiceNotificationRequest,
    result_type=VoiceNotificationResult,
    result_at="result",
)


class VoiceNotificationAPI:
    """``aicc.voice_notification``: create voice notifications."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(
        self,
        called: str,
        voice_content: str | VoiceContent,
        *,
        caller_present: str | None = None,
        callback_url: str | None = None,
        priority: int | None = None,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> VoiceNotificationResult:
        """Phone ``called`` and play ``voice_content``. Arguments as for
        ``CreateVoiceNotificationRequest``.

        Raises ``AICCValidationError`` before any I/O for bad input,
        ``AICCBusinessError`` for a refusing ``retCode`` (``VoiceNotificationCode``),
        ``AICCOutcomeUnknownError`` when it was sent but the outcome is unknown (not
        re-sent unless ``retry_unsafe=True``, which risks phoning the person twice).
        ``timeout`` (a ``Timeout`` or seconds) replaces the client's per-attempt
        timeout for this call.
        ``headers``: extra HTTP headers for this call only (one the SDK sets itself,
        such as ``Authorization``, is refused).
        """
        request = CreateVoiceNotificationRequest(
            called=called,
            voice_content=voice_content,
            caller_present=caller_present,
            callback_url=callback_url,
            priority=priority,
        )
        return await self._transport.send(
            ENDPOINT, request, retry_unsafe=retry_unsafe, timeout=timeout, headers=headers
        )

    async def send(
        self,
        request: CreateVoiceNotificationRequest,
        *,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> VoiceNotificationResult:
        """Send a prepared request; raises as ``create`` does."""
        return await self._transport.send(
            ENDPOINT, request, retry_unsafe=retry_unsafe, timeout=timeout, headers=headers
        )

    def create_many(
        self,
        requests: Iterable[CreateVoiceNotificationRequest]
        | AsyncIterable[CreateVoiceNotificationRequest],
        *,
        concurrency: int | None = None,
        retry_unsafe: bool = False,
    ) -> AsyncGenerator[Outcome[CreateVoiceNotificationRequest, VoiceNotificationResult], None]:
        """Send many prepared requests; yield an ``Outcome`` per request as each completes.

        ``requests`` (any iterable or async iterable) is read only as fast as requests
        go out, so memory stays flat however long it is. ``concurrency`` (default: the
        client's ``voice_notification`` limit) bounds the requests in flight; the
        group's throttle applies as for ``send``. Each outcome holds the result or
        the error ``send`` would have raised. Leaving the loop early cancels the
        requests in flight (their outcome is unknown). For resumable campaigns with
        a record of every row, use ``aicc_async.bulk.Campaign``.
        """
        check_flag("retry_unsafe", retry_unsafe, endpoint=_name)
        return fan_out(
            lambda request: self.send(request, retry_unsafe=retry_unsafe),
            requests,
            concurrency=concurrency,
            default=self._transport.config.limits[ENDPOINT.group or ""],
            endpoint=_name,
        )
