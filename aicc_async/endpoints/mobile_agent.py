"""Mobile agent: createcall (an anonymous outbound call task) and getCalledInfo.

createcall is not idempotent (a replay creates a second call task): after an
ambiguous failure it raises ``AICCOutcomeUnknownError`` unless the call passed
``retry_unsafe=True``. getCalledInfo is a read and is retried.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, overload

import attrs

from aicc_async._endpoint import Endpoint
from aicc_async._wire import ResponseInfo, wire_field
from aicc_async.config import Timeout
from aicc_async.endpoints._validate import text
from aicc_async.errors import AICCValidationError

if TYPE_CHECKING:
    from aicc_async._transport import Transport

__all__ = [
    "CREATE_CALL_CODES",
    "GET_CALLED_INFO_CODES",
    "CalledInfo",
    "CreateCallRequest",
    "CreateCallResult",
    "DevType",
    "GetCalledInfoRequest",
    "MobileAgentAPI",
]

#: Documented ``resultCode`` values of createcall.
CREATE_CALL_CODES: Mapping[str, str] = {
    "0": "success",
    "30010000001": "this feature is not enabled and cannot be used",
    "30010000002": "no SIP server information is found",
    "30010000003": "input parameter verification failed",
    "30010010001": "failed to add the outbound call task",
    "30010010002": "the VDN is unavailable",
    "30010010003": "the VDN configuration is incorrect; the record path could not be generated",
    "30010019999": "CCM: other exception",
    "30011010001": "failed to create a call without waiting for the call setup success event",
    "30011019999": "CCUCS: other exception",
    "30010009999": "Chat: other exception",
}

#: Documented ``retCode`` values of getCalledInfo.
GET_CALLED_INFO_CODES: Mapping[str, str] = {
    "0": "success",
    "4": "the called party ID cannot be obtained",
    "5": "the called party ID is not configured",
}

_CREATE_CALL = "createcall"
_GET_CALLED_INFO = "getCalledInfo"


class DevType(enum.IntEnum):
    """getCalledInfo's ``devType``: what the called party is."""

    SKILL_QUEUE = 0
    NUMBER = 1


@attrs.frozen
class CreateCallRequest:
    """An anonymous outbound call task.

    Args:
        called: the called number, 1..32 characters.
        caller_present: the number shown to the callee, 1..32 characters.
        call_data: optional call data, at most 1024 characters.
    """

    called: str = attrs.field(validator=text(_CREATE_CALL, 32))
    caller_present: str = attrs.field(validator=text(_CREATE_CALL, 32))
    call_data: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(text(_CREATE_CALL, 1024, single_line=False)),
    )


@attrs.frozen(kw_only=True)
class CreateCallResult:
    """A created call task.

    ``sip_service_address`` is ``ip:port`` of the SIP service; ``access_code`` (wire
    name ``accesscode``) the access code and UVID for the anonymous VoIP call;
    ``call_serial_no`` identifies the call and may be absent (``None``).
    """

    call_serial_no: str | None = None
    sip_service_address: str | None = None
    access_code: str | None = attrs.field(default=None, metadata=wire_field("accesscode"))
    raw: Mapping[str, Any] = attrs.field(repr=False)
    response: ResponseInfo = attrs.field(repr=False, eq=False)


@attrs.frozen
class GetCalledInfoRequest:
    """A look-up of where a call to ``called`` from ``caller`` goes (each 1..32 characters)."""

    called: str = attrs.field(validator=text(_GET_CALLED_INFO, 32))
    caller: str = attrs.field(validator=text(_GET_CALLED_INFO, 32))


@attrs.frozen(kw_only=True)
class CalledInfo:
    """The destination device of a call.

    ``dev_type`` is a ``DevType`` (``None`` if absent or undocumented; ``raw`` keeps
    what was sent), ``skill_id`` / ``skill_name`` the skill queue when there is one.
    """

    dev_type: DevType | None = None
    called: str | None = None
    skill_id: int | None = None
    skill_name: str | None = None
    raw: Mapping[str, Any] = attrs.field(repr=False)
    response: ResponseInfo = attrs.field(repr=False, eq=False)


CREATE_CALL: Endpoint[CreateCallResult] = Endpoint(
    name=_CREATE_CALL,
    path="/apiaccess/ccmessaging/v1/mobileagent/createcall",
    group="mobile_agent",
    idempotent=False,
    code_field="resultCode",
    message_field="resultDesc",
    codes=CREATE_CALL_CODES,
    request_type=CreateCallRequest,
    result_type=CreateCallResult,
    result_at="resultData",
)

GET_CALLED_INFO: Endpoint[CalledInfo] = Endpoint(
    name=_GET_CALLED_INFO,
    path="/apiaccess/CC-Management/v1/mobileAgent/getCalledInfo",
    group="mobile_agent",
    idempotent=True,
    code_field="retCode",
    message_field="retMsg",
    codes=GET_CALLED_INFO_CODES,
    request_type=GetCalledInfoRequest,
    result_type=CalledInfo,
    result_at="result",
)


class MobileAgentAPI:
    """``aicc.mobile_agent``: anonymous call tasks and called-party look-ups."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create_call(
        self,
        called: str,
        caller_present: str,
        *,
        call_data: str | None = None,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CreateCallResult:
        """Create an anonymous outbound call task (arguments as for ``CreateCallRequest``).

        Raises ``AICCValidationError`` before I/O, ``AICCBusinessError`` for a refusing
        ``resultCode`` (``CREATE_CALL_CODES``), ``AICCOutcomeUnknownError`` when it was
        sent but the outcome is unknown (not re-sent unless ``retry_unsafe=True``,
        which risks a second call task). ``timeout`` (a ``Timeout`` or seconds) replaces
        the client's per-attempt timeout for this call.
        ``headers``: extra HTTP headers for this call only (one the SDK sets itself,
        such as ``Authorization``, is refused).
        """
        request = CreateCallRequest(called, caller_present, call_data)
        return await self.send(request, retry_unsafe=retry_unsafe, timeout=timeout, headers=headers)

    async def get_called_info(
        self,
        called: str,
        caller: str,
        *,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CalledInfo:
        """Where a call to ``called`` goes. Raises ``AICCBusinessError`` with code "4"
        (cannot be obtained) or "5" (not configured); retried after ambiguous failures.
        ``timeout`` replaces the client's per-attempt timeout for this call.
        ``headers``: extra HTTP headers for this call only (one the SDK sets itself,
        such as ``Authorization``, is refused)."""
        return await self.send(
            GetCalledInfoRequest(called, caller), timeout=timeout, headers=headers
        )

    @overload
    async def send(
        self,
        request: CreateCallRequest,
        *,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CreateCallResult: ...

    @overload
    async def send(
        self,
        request: GetCalledInfoRequest,
        *,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CalledInfo: ...

    async def send(
        self,
        request: CreateCallRequest | GetCalledInfoRequest,
        *,
        retry_unsafe: bool = False,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> CreateCallResult | CalledInfo:
        """Send a prepared ``CreateCallRequest`` or ``GetCalledInfoRequest``; ``timeout``
        replaces the client's per-attempt timeout for this call; ``headers`` are sent
        with this call only."""
        if isinstance(request, CreateCallRequest):
            return await self._transport.send(
                CREATE_CALL, request, retry_unsafe=retry_unsafe, timeout=timeout, headers=headers
            )
        if isinstance(request, GetCalledInfoRequest):
            return await self._transport.send(
                GET_CALLED_INFO, request, timeout=timeout, headers=headers
            )
        raise AICCValidationError(
            "send() takes a CreateCallRequest or a GetCalledInfoRequest, "
            f"got {type(request).__name__}",
            field="request",
            endpoint=f"{_CREATE_CALL} / {_GET_CALLED_INFO}",
        )
