"""The one cattrs converter: snake_case attrs fields <-> AICC's wire names.

A field's wire name is its camelCase form (``called_party`` -> ``calledParty``)
unless its metadata says otherwise (``wire_name("callBackUrl")``). A field whose
metadata carries ``to_wire`` has its value encoded on the way out (Base64 URLs,
numbers sent as strings). Fields defaulting to ``None`` are omitted while
``None``; all other fields are always sent. Result fields typed ``str`` accept
numbers and turn them into strings, so codes compare as strings.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, get_args

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "ResponseInfo",
    "code_of",
    "converter",
    "decode_json",
    "encode_json",
    "parse_aicc_time",
    "parse_retry_after",
    "structure_result",
    "to_wire",
    "wire_field",
]

T = TypeVar("T")

_WIRE = "aicc_wire_name"
_ENCODE = "aicc_to_wire"

converter = cattrs.Converter()

#: Headers never shown as sent: they carry credentials.
_HIDDEN_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "ccmessaging-token", "set-cookie", "cookie"}
)
#: Where a request/trace id is looked for, in this order.
REQUEST_ID_HEADERS = ("X-Request-Id", "X-Trace-Id", "X-B3-TraceId")


def _unmasked(text: str) -> str:
    return text


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, delta)


@attrs.frozen(repr=False)
class ResponseInfo:
    """The HTTP answer a result or an error came from.

    ``status`` is the HTTP status; ``headers`` a case-insensitive copy of the response
    headers in which credentials are masked (``ccmessaging-token``, ``Set-Cookie``
    ... read ``"***"``, and any known secret inside another value too);
    ``request_id`` the first of ``X-Request-Id``, ``X-Trace-Id`` or ``X-B3-TraceId``
    that AICC sent (``None`` if none), for AICC support.
    """

    status: int
    _raw_headers: Mapping[str, str] = attrs.field(alias="raw_headers", eq=False)
    _mask: Callable[[str], str] = attrs.field(alias="mask", default=_unmasked, eq=False)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The response headers, credentials masked."""
        masked: CIMultiDict[str] = CIMultiDict()
        for name, value in self._raw_headers.items():
            masked.add(name, "***" if name.lower() in _HIDDEN_HEADERS else self._mask(value))
        return CIMultiDictProxy(masked)

    @property
    def retry_after(self) -> float | None:
        """Seconds the answer's ``Retry-After`` asks to wait, if it has a readable one."""
        return parse_retry_after(self._raw_headers.get("Retry-After"))

    @property
    def request_id(self) -> str | None:
        """The request/trace id AICC sent, if any."""
        for name in REQUEST_ID_HEADERS:
            value = self._raw_headers.get(name)
            if value:
                return self._mask(value)[:200]
        return None

    def __repr__(self) -> str:
        return f"ResponseInfo(status={self.status!r}, request_id={self.request_id!r})"


def wire_field(
    name: str | None = None, encode: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """Metadata for an attrs field: its wire ``name`` and an ``encode`` for outgoing values."""
    meta: dict[str, Any] = {}
    if name is not None:
        meta[_WIRE] = name
    if encode is not None:
        meta[_ENCODE] = encode
    return meta


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _wire_name(field: attrs.Attribute[Any]) -> str:
    return str(field.metadata.get(_WIRE, _camel(field.name)))


def _unstructure_factory(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
    overrides: dict[str, Any] = {
        f.name: override(
            rename=_wire_name(f),
            omit_if_default=f.default is None,
            unstruct_hook=f.metadata.get(_ENCODE),
        )
        for f in attrs.fields(cls)
    }
    return make_dict_unstructure_fn(cls, converter, _cattrs_omit_if_default=False, **overrides)


def _structure_factory(cls: type[Any]) -> Callable[[Mapping[str, Any], Any], Any]:
    overrides: dict[str, Any] = {f.name: override(rename=_wire_name(f)) for f in attrs.fields(cls)}
    return make_dict_structure_fn(cls, converter, **overrides)


converter.register_unstructure_hook_factory(attrs.has, _unstructure_factory)


def _optional_int_target(t: Any) -> type[int] | None:
    """``int`` or the IntEnum ``X`` when ``t`` is ``X | None``; else ``None``."""
    args = [a for a in get_args(t) if a is not type(None)]
    if len(args) == 1 and len(get_args(t)) == 2 and isinstance(args[0], type):
        target = args[0]
        if target is int or issubclass(target, enum.IntEnum):
            return target
    return None


def _lenient_optional_int(t: Any) -> Callable[[Any, Any], Any]:
    target = _optional_int_target(t)
    assert target is not None

    def structure(value: Any, _: Any) -> Any:
        # ``0``, ``"0"`` and ``0.0`` all read as 0; anything unreadable (or an
        # undocumented enum value) as None, so a successful answer never fails to decode.
        try:
            return None if value is None else target(int(value))
        except (TypeError, ValueError, OverflowError):  # Infinity is not an int
            return None

    return structure


converter.register_structure_hook_factory(
    lambda t: _optional_int_target(t) is not None, _lenient_optional_int
)
# ``raw`` fields (the only ``Mapping[str, Any]`` fields) keep the body as received, uncopied.
converter.register_structure_hook_func(lambda t: t == Mapping[str, Any], lambda value, _: value)
# ``response`` fields get the transport's ResponseInfo as is.
converter.register_structure_hook(ResponseInfo, lambda value, _: value)
# ``str | None`` as cattrs would (``str(value)``), without its generic Optional dispatch.
converter.register_structure_hook(
    str | None, lambda value, _: None if value is None else str(value)
)

# AICC's times: ``2022/02/17,13:10:06:836`` (tenant local time, milliseconds last, optional).
_AICC_TIME = re.compile(
    r"(\d{4})/(\d{1,2})/(\d{1,2}),(\d{1,2}):(\d{1,2}):(\d{1,2})(?::(\d{1,3}))?", re.ASCII
)


def parse_aicc_time(value: object) -> datetime | None:
    """A naive ``datetime`` from AICC's ``2022/02/17,13:10:06:836``; anything else is None."""
    if not isinstance(value, str):
        return None
    match = _AICC_TIME.fullmatch(value.strip())
    if match is None:
        return None
    *parts, millis = match.groups()
    try:
        y, mo, d, h, mi, s = (int(p) for p in parts)
        return datetime(y, mo, d, h, mi, s, int(millis or 0) * 1000)
    except ValueError:  # 2022/02/30, 25:00:00 ...
        return None


# ``datetime | None`` fields read AICC's time format; unreadable values become None.
converter.register_structure_hook(datetime | None, lambda value, _: parse_aicc_time(value))
converter.register_structure_hook_factory(attrs.has, _structure_factory)


def to_wire(request: attrs.AttrsInstance) -> dict[str, Any]:
    """The JSON body of a request object, with wire names and ``None``s omitted."""
    body: dict[str, Any] = converter.unstructure(request)
    return body


_ENCODER = json.JSONEncoder(ensure_ascii=False)  # one encoder, not one per request


def encode_json(body: Mapping[str, Any]) -> bytes:
    """A request body as UTF-8 JSON bytes (non-ASCII text sent as is, not escaped)."""
    return _ENCODER.encode(body).encode()


def decode_json(raw: bytes) -> Any:
    """An answer body as JSON: UTF-8 read directly; a BOM or another encoding JSON
    allows (UTF-16/32) detected. Raises ``ValueError`` for a body that is not JSON,
    ``RecursionError`` for one nested beyond reason."""
    try:
        return json.loads(raw.decode())
    except ValueError:  # a BOM, UTF-16/32 (json detects them), or not JSON at all
        return json.loads(raw)


def structure_result(
    cls: type[T],
    payload: object,
    raw: Mapping[str, Any],
    response: ResponseInfo,
) -> T:
    """Build a result object from its wire ``payload`` (a non-mapping counts as empty).

    ``raw`` is the whole response body, kept on the result's ``raw`` field, and
    ``response`` the HTTP answer, kept on its ``response`` field.
    """
    fields = dict(payload) if isinstance(payload, Mapping) else {}
    fields["raw"] = raw
    fields["response"] = response
    return converter.structure(fields, cls)


def code_of(body: Mapping[str, Any], field: str) -> str | None:
    """A result code as a string, whether the server sent ``0`` or ``"0"``; ``None`` if absent."""
    value = body.get(field)
    if value.__class__ is str:  # the common case
        return value.strip()
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
