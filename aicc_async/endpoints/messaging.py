"""CC-Messaging: applyToken (a ccmessaging-token per user) and doLeaveMessage.

applyToken is safe to repeat (it only issues another token) and is retried after
ambiguous failures. doLeaveMessage is not: a replay leaves a duplicate message, so
after an ambiguous failure it raises ``AICCOutcomeUnknownError`` unless the call
passed ``retry_unsafe=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, overload

import attrs

from aicc_async._endpoint import BODY, Endpoint
from aicc_async._wire import ResponseInfo, wire_field
from aicc_async.auth import HEADER_TOKEN, MessagingTokenCache
from aicc_async.config import LOCALE, Timeout
from aicc_async.endpoints._validate import text
from aicc_async.errors import AICCAuthError, AICCValidationError, invalid

if TYPE_CHECKING:
    from aicc_async._transport import Transport
    from aicc_async.config import ClientConfig

__all__ = [
    "APPLY_TOKEN_CODES",
    "LEAVE_MESSAGE_CODES",
    "ApplyTokenRequest",
    "ApplyTokenResult",
    "LeaveMessageRequest",
    "LeaveMessageResult",
    "MessagingAPI",
]

MESSAGING_TOKEN_HEADER = "ccmessaging-token"  # noqa: S105 - a header name

#: Documented ``resultCode`` values of applyToken.
APPLY_TOKEN_CODES: Mapping[str, str] = {
    "0": "token issued",
    "1": "applying for a token failed: check userId, channelId (the channel configuration "
    "ID) and locale",
}

#: Documented ``resultCode`` values of doLeaveMessage.
LEAVE_MESSAGE_CODES: Mapping[str, str] = {
    "0": "message saved",
    "3": "the message parameters are wrong (leaveMessageParams is error)",
    "13": "saving the message failed on the platform",
}

_APPLY_TOKEN = "applyToken"  # noqa: S105 - an interface name
_LEAVE_MESSAGE = "doLeaveMessage"


def _locale(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not LOCALE.fullmatch(value):
        raise invalid(
            "locale",
            f"must look like 'en', 'en_US' or 'zh_CN', got {value!r}",
            endpoint=_APPLY_TOKEN,
        )


@attrs.frozen
class ApplyTokenRequest:
    """An application for a ccmessaging-token.

    Args:
        user_id: the customer's ID, 1..32 characters (doLeaveMessage's ``call_id``).
        user_name: the customer's display name.
        channel_id: the channel configuration ID.
        locale: ``"en"``, ``"en_US"``, ``"zh"``, ``"zh_CN"``, ...
    """

    user_id: str = attrs.field(validator=text(_APPLY_TOKEN, 32))
    user_name: str = attrs.field(validator=text(_APPLY_TOKEN, 256))
    channel_id: str = attrs.field(validator=text(_APPLY_TOKEN, 256))
    locale: str = attrs.field(validator=_locale)


@attrs.frozen(kw_only=True)
class ApplyTokenResult:
    """An issued ccmessaging-token (valid for 1 hour). Neither it nor ``raw`` is in the repr."""

    token: str | None = attrs.field(default=None, repr=False)
    raw: Mapping[str, Any] = attrs.field(repr=False)
    response: ResponseInfo = attrs.field(repr=False, eq=False)


@attrs.frozen
class LeaveMessageRequest:
    """A customer's message.

    Args:
        call_id: the customer's user ID, 1..32 characters.
        caller: the number leaving the message (may be masked, e.g. ``138****7777``).
        message: the text, non-empty.
        channel: the channel name; AICC documents ``"WEB"``.
    """

    call_id: str = attrs.field(validator=text(_LEAVE_MESSAGE, 32))
    caller: str = attrs.field(validator=text(_LEAVE_MESSAGE, 32))
    message: str = attrs.field(
        validator=text(_LEAVE_MESSAGE, single_line=False),
        metadata=wire_field("leaveMessage"),
    )
    channel: str = attrs.field(default="WEB", validator=text(_LEAVE_MESSAGE, 32))


@attrs.frozen(kw_only=True)
class LeaveMessageResult:
    """A saved message: ``description`` is AICC's ``resultDesc``."""

    description: str | None = attrs.field(default=None, metadata=wire_field("resultDesc"))
    raw: Mapping[str, Any] = attrs.field(repr=False)
    response: ResponseInfo = attrs.field(repr=False, eq=False)


APPLY_TOKEN: Endpoint[ApplyTokenResult] = Endpoint(
    name=_APPLY_TOKEN,
    path="/apiaccess/ccmessaging/applyToken",
    group="messaging",
    idempotent=True,
    code_field="resultCode",
    message_field="resultDesc",
    codes=APPLY_TOKEN_CODES,
    app_key_header="x-app-key",
    request_type=ApplyTokenRequest,
    result_type=ApplyTokenResult,
    result_at=BODY,
)
# The SDK's own applications (for leave_message) are not throttled: a message holding
# a "messaging" slot must never wait for another slot to get its token.
_APPLY_TOKEN_INTERNAL = attrs.evolve(APPLY_TOKEN, group=None)

LEAVE_MESSAGE: Endpoint[LeaveMessageResult] = Endpoint(
    name=_LEAVE_MESSAGE,
    path="/apiaccess/ccmessaging/doLeaveMessage",
    group="messaging",
    idempotent=False,
    code_field="resultCode",
    message_field="resultDesc",
    codes=LEAVE_MESSAGE_CODES,
    app_key_header="x-app-key",
    request_type=LeaveMessageRequest,
    result_type=LeaveMessageResult,
    result_at=BODY,
)


@attrs.frozen
class _UserToken:
    """The ccmessaging-token of one user, from the client's cache."""

    cache: MessagingTokenCache
    user_id: str
    header: str = MESSAGING_TOKEN_HEADER

    async def get(self) -> str:
        return await self.cache.get(self.user_id)

    def invalidate(self, value: str) -> None:
        self.cache.invalidate(self.user_id, value)

    def adopt(self, value: str) -> None:
        self.cache.adopt(self.user_id, value)


@attrs.frozen
class _GivenToken:
    """A ccmessaging-token the caller passed; used as is (never in the repr)."""

    value: str = attrs.field(repr=False)
    header: str = MESSAGING_TOKEN_HEADER

    async def get(self) -> str:
        return self.value

    def invalidate(self, value: str) -> None:
        pass

    def adopt(self, value: str) -> None:
        pass


class MessagingAPI:
    """``aicc.messaging``: ccmessaging-tokens and customers' messages."""

    def __init__(
        self, transport: Transport, config: ClientConfig, *, parent: MessagingAPI | None = None
    ) -> None:
        self._transport = transport
        self._config = config
        self._owns_cache = parent is None
        self._token_cache: MessagingTokenCache = (
            MessagingTokenCache(self._apply_for_user, config.clock)
            if parent is None
            else parent._token_cache  # one token per user, whichever client applied
        )

    async def close(self) -> None:
        """Cancel token applications in progress and forget the cached tokens (unless
        they are shared with the client this one is derived from)."""
        if self._owns_cache:
            await self._token_cache.close()

    async def apply_token(
        self,
        user_id: str,
        user_name: str,
        channel_id: str,
        locale: str,
        *,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApplyTokenResult:
        """Apply for a ccmessaging-token (arguments as for ``ApplyTokenRequest``).

        You rarely need this: ``leave_message`` applies for and caches tokens itself.
        Raises ``AICCValidationError`` before I/O, ``AICCBusinessError`` for
        ``resultCode`` "1". Retried after ambiguous failures (a second token is harmless).
        ``timeout`` (a ``Timeout`` or seconds) replaces the client's per-attempt timeout.
        ``headers``: extra HTTP headers for this call only (one the SDK sets itself,
        such as ``Authorization``, is refused).
        """
        request = ApplyTokenRequest(user_id, user_name, channel_id, locale)
        return await self.send(request, timeout=timeout, headers=headers)

    async def leave_message(
        self,
        call_id: str,
        caller: str,
        message: str,
        *,
        channel: str = "WEB",
        token: str | None = None,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> LeaveMessageResult:
        """Submit a customer's message (arguments as for ``LeaveMessageRequest``).

        Without ``token=`` the client applies for a ccmessaging-token with ``call_id``
        as the user ID and its ``messaging_channel_id`` / ``messaging_locale`` /
        ``messaging_user_name`` (default: the user ID), caches it per user for 50
        minutes, and on a 401 applies again and replays once.

        Raises ``AICCValidationError`` before I/O (also when ``messaging_channel_id``
        is not configured), ``AICCBusinessError`` for codes 3 and 13,
        ``AICCOutcomeUnknownError`` when it was sent but the outcome is unknown (not
        re-sent unless ``retry_unsafe=True``, which risks a duplicate message).
        ``timeout`` (a ``Timeout`` or seconds) replaces the client's per-attempt
        timeout for this call (an applyToken it needs keeps the client's, and goes
        without ``headers``).
        ``headers``: extra HTTP headers for this call only (one the SDK sets itself,
        such as ``Authorization``, is refused).
        """
        request = LeaveMessageRequest(call_id, caller, message, channel)
        return await self.send(
            request, token=token, retry_unsafe=retry_unsafe, timeout=timeout, headers=headers
        )

    @overload
    async def send(
        self,
        request: ApplyTokenRequest,
        *,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApplyTokenResult: ...

    @overload
    async def send(
        self,
        request: LeaveMessageRequest,
        *,
        token: str | None = None,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> LeaveMessageResult: ...

    async def send(
        self,
        request: ApplyTokenRequest | LeaveMessageRequest,
        *,
        token: str | None = None,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApplyTokenResult | LeaveMessageResult:
        """Send a prepared ``ApplyTokenRequest`` or ``LeaveMessageRequest``; raises as the
        keyword methods do."""
        if isinstance(request, ApplyTokenRequest):
            return await self._apply(request, APPLY_TOKEN, timeout, headers)
        if not isinstance(request, LeaveMessageRequest):
            raise AICCValidationError(
                "send() takes an ApplyTokenRequest or a LeaveMessageRequest, "
                f"got {type(request).__name__}",
                field="request",
                endpoint=f"{_APPLY_TOKEN} / {_LEAVE_MESSAGE}",
            )
        if token is not None and (not isinstance(token, str) or not HEADER_TOKEN.fullmatch(token)):
            # Never echo the value: it is a credential.
            raise invalid(
                "token",
                "must be a non-empty ccmessaging-token string without spaces, line breaks "
                "or non-ASCII characters",
                endpoint=_LEAVE_MESSAGE,
            )
        if token is not None:
            session_token: _UserToken | _GivenToken = _GivenToken(token)
        elif self._config.messaging_channel_id is None:
            raise AICCValidationError(
                "messaging_channel_id: leave_message needs a ccmessaging-token; pass "
                "token=..., or configure AICCClient(messaging_channel_id=...) with the "
                "channel configuration ID so the client can apply for one",
                field="messaging_channel_id",
                endpoint=_LEAVE_MESSAGE,
            )
        else:
            session_token = _UserToken(self._token_cache, request.call_id)
        return await self._transport.send(
            LEAVE_MESSAGE,
            request,
            retry_unsafe=retry_unsafe,
            session_token=session_token,
            timeout=timeout,
            headers=headers,
        )

    async def _apply(
        self,
        request: ApplyTokenRequest,
        endpoint: Endpoint[ApplyTokenResult],
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApplyTokenResult:
        result = await self._transport.send(endpoint, request, timeout=timeout, headers=headers)
        if not result.token:
            raise AICCAuthError(
                "applyToken answered resultCode 0 without a token",
                endpoint=_APPLY_TOKEN,
            )
        if not HEADER_TOKEN.fullmatch(result.token):
            raise AICCAuthError(
                "applyToken issued a token that cannot be sent in a header (spaces, line "
                "breaks, non-ASCII characters or over 8192 characters)",
                endpoint=_APPLY_TOKEN,
            )
        return result

    async def _apply_for_user(self, user_id: str) -> str:
        config = self._config
        assert config.messaging_channel_id is not None  # checked before any I/O
        request = ApplyTokenRequest(
            user_id=user_id,
            user_name=config.messaging_user_name or user_id,
            channel_id=config.messaging_channel_id,
            locale=config.messaging_locale,
        )
        token = (await self._apply(request, _APPLY_TOKEN_INTERNAL)).token
        assert token is not None  # _apply refuses an empty token
        return token
