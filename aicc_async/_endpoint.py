"""The descriptor each endpoint module hands the transport: path, throttle group,
whether a replay is harmless, and how to read its result code and result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

__all__ = ["BODY", "Endpoint"]

ResultT = TypeVar("ResultT")


@attrs.frozen
class Endpoint(Generic[ResultT]):
    """What the transport needs to know about one AICC interface.

    Args:
        name: the interface name used in errors and logs (``"createVoiceNotification"``).
        path: URL path below ``base_url``.
        group: throttle group (``"voice_notification"`` ...); ``None``: not throttled
            (token flows the SDK runs for itself).
        idempotent: whether sending it twice is harmless (see the retry table).
        code_field / message_field: where the body carries its result code and text.
        codes: documented result codes and their meanings (for error messages).
        retry_codes: result codes meaning "not taken, try again later".
        app_key_header: header carrying the app key, spelled as the interface's page does.
        request_type / result_type: the attrs classes of its request and its result
            (``None`` for the token flows the SDK runs itself).
        result_at: where the result sits in the answer: a field name, ``BODY`` (the
            whole body) or ``None`` (no payload: the result is the code and ``raw``).
    """

    name: str
    path: str
    group: str | None
    idempotent: bool
    code_field: str
    message_field: str
    codes: Mapping[str, str] = attrs.field(factory=dict)
    retry_codes: frozenset[str] = frozenset()
    app_key_header: str | None = "X-APP-Key"
    request_type: type[Any] | None = None
    result_type: type[ResultT] | None = None
    result_at: str | None = None


#: ``Endpoint.result_at`` for a result read from the whole answer body.
BODY = "."
