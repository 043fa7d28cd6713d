"""Outbound campaigns: writing back intermediate results (midresult).

Idempotent: AICC keys the row by ``uniqueId``, so a replay writes the same row
again. It is therefore retried after ambiguous failures (timeout, reset, 502/504).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from aicc_async._endpoint import Endpoint
from aicc_async._fanout import Outcome, fan_out
from aicc_async._wire import ResponseInfo, wire_field
from aicc_async.config import Timeout
from aicc_async.endpoints._validate import non_negative_int, string, text

if TYPE_CHECKING:
    from aicc_async._transport import Transport

__all__ = ["WRITE_BACK_CODES", "OutboundAPI", "WriteBackResult", "WriteBackResultRequest"]

_name = "midresult"

#: Documented ``result`` values of the midresult write-back.
WRITE_BACK_CODES: Mapping[str, str] = {"0": "written"}


def _optional_str() -> Any:
    # Optional result fields may be empty strings, as in AICC's own example.
    return attrs.field(default=None, validator=attrs.validators.optional(string(_name, 1024)))


@attrs.frozen
class WriteBackResultRequest:
    """One outbound-call result to write back.

    Args:
        sub_cc_no: call-centre ID (sent as an integer, wire name ``subCCNo``).
        vdn_id: VCC ID (integer).
        unique_id: the outbound call data's unique ID: AICC's key for this row.
        service_id: the outbound task's keyword.
        status, phone_number, fail_code, asr_result: optional strings (``""`` is sent as ``""``).
        fetch_time, write_start_time, end_call_time, call_id: optional strings, likewise.
        device_type: optional outbound device type (integer).
    """

    sub_cc_no: int = attrs.field(validator=non_negative_int(_name), metadata=wire_field("subCCNo"))
    vdn_id: int = attrs.field(validator=non_negative_int(_name))
    unique_id: str = attrs.field(validator=text(_name, 64))
    service_id: str = attrs.field(validator=text(_name, 64))
    status: str | None = _optional_str()
    device_type: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(non_negative_int(_name))
    )
    phone_number: str | None = _optional_str()
    fail_code: str | None = _optional_str()
    asr_result: str | None = _optional_str()
    fetch_time: str | None = _optional_str()
    write_start_time: str | None = _optional_str()
    end_call_time: str | None = _optional_str()
    call_id: str | None = _optional_str()


@attrs.frozen(kw_only=True)
class WriteBackResult:
    """A written-back result; ``raw`` is the response body (``{"result": 0}``)."""

    raw: Mapping[str, Any] = attrs.field(repr=False)
    response: ResponseInfo = attrs.field(repr=False, eq=False)


WRITE_BACK: Endpoint[WriteBackResult] = Endpoint(
    name=_name,
    path="/rest/isales/v1/openapi/obs/business/push/midresult",
    group="outbound",
    idempotent=True,
    code_field="result",
    message_field="resultDesc",
    codes=WRITE_BACK_CODES,
    app_key_header=None,  # the interface takes Authorization only
    request_type=WriteBackResultRequest,
    result_type=WriteBackResult,
)


class OutboundAPI:
    """``aicc.outbound``: outbound-call result write-back."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def write_back_result(
        self,
        sub_cc_no: int,
        vdn_id: int,
        unique_id: str,
        service_id: str,
        *,
        status: str | None = None,
        device_type: int | None = None,
        phone_number: str | None = None,
        fail_code: str | None = None,
        asr_result: str | None = None,
        fetch_time: str | None = None,
        write_start_time: str | None = None,
        end_call_time: str | None = None,
        call_id: str | None = None,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WriteBackResult:
        """Write back one result (arguments as for ``WriteBackResultRequest``).

        Raises ``AICCValidationError`` before I/O and ``AICCBusinessError`` for a
        non-zero ``result``. Retried after ambiguous failures: a replay rewrites the
        same row. ``timeout`` (a ``Timeout`` or seconds) replaces the client's
        per-attempt timeout for this call.
        ``headers``: extra HTTP headers for this call only (one the SDK sets itself,
        such as ``Authorization``, is refused).
        """
        return await self._transport.send(
            WRITE_BACK,
            WriteBackResultRequest(
                sub_cc_no=sub_cc_no,
                vdn_id=vdn_id,
                unique_id=unique_id,
                service_id=service_id,
                status=status,
                device_type=device_type,
                phone_number=phone_number,
                fail_code=fail_code,
                asr_result=asr_result,
                fetch_time=fetch_time,
                write_start_time=write_start_time,
                end_call_time=end_call_time,
                call_id=call_id,
            ),
            timeout=timeout,
            headers=headers,
        )

    async def send(
        self,
        request: WriteBackResultRequest,
        *,
        timeout: Timeout | float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WriteBackResult:
        """Send a prepared request; raises as ``write_back_result`` does."""
        return await self._transport.send(WRITE_BACK, request, timeout=timeout, headers=headers)

    def write_back_many(
        self,
        requests: Iterable[WriteBackResultRequest] | AsyncIterable[WriteBackResultRequest],
        *,
        concurrency: int | None = None,
    ) -> AsyncGenerator[Outcome[WriteBackResultRequest, WriteBackResult], None]:
        """Write back many prepared results; yield an ``Outcome`` per request as each
        completes.

        ``requests`` (any iterable or async iterable) is read only as fast as requests
        go out, so memory stays flat. ``concurrency`` (default: the client's
        ``outbound`` limit) bounds the requests in flight; the group's throttle
        applies as for ``send``. Each outcome holds the result or the error ``send``
        would have raised. Leaving the loop early cancels the requests in flight.
        """
        return fan_out(
            self.send,
            requests,
            concurrency=concurrency,
            default=self._transport.config.limits[WRITE_BACK.group or ""],
            endpoint=_name,
        )
