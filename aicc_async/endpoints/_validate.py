"""attrs validators shared by the request classes. Each raises ``AICCValidationError``
naming the field (and the endpoint), before anything is sent. For an optional field
wrap one in ``attrs.validators.optional``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from aicc_async.errors import invalid, is_int

__all__ = ["digits", "non_negative_int", "phone_number", "string", "text", "utf8"]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_PHONE = re.compile(r"\+?[0-9]{1,32}")
_DIGITS = re.compile(r"[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(endpoint: str, max_len: int | None = None, *, single_line: bool = True) -> Validator:
    """A non-blank ``str`` of at most ``max_len`` characters (no control characters if
    ``single_line``)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        field = attribute.name
        if not isinstance(value, str) or not value or value.isspace():
            raise invalid(field, f"must be a non-empty string, got {value!r}", endpoint=endpoint)
        if max_len is not None and len(value) > max_len:
            raise invalid(
                field, f"is {len(value)} characters; at most {max_len} allowed", endpoint=endpoint
            )
        if single_line and _CONTROL.search(value):
            raise invalid(field, "must not contain line breaks or control chars", endpoint=endpoint)
        if not value.isascii():
            utf8(endpoint, field, value)

    return check


def utf8(endpoint: str, field: str, value: str) -> None:
    """Refuse text that cannot be sent as UTF-8 (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(
            field, "must be valid Unicode text (no lone surrogates)", endpoint=endpoint
        ) from None


def string(endpoint: str, max_len: int) -> Validator:
    """Any ``str`` (empty allowed) of at most ``max_len`` characters."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or len(value) > max_len:
            raise invalid(
                attribute.name,
                f"must be a string of at most {max_len} characters, got {type(value).__name__}",
                endpoint=endpoint,
            )
        utf8(endpoint, attribute.name, value)

    return check


def phone_number(endpoint: str) -> Validator:
    """Digits (1..32), an optional leading ``+``."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not _PHONE.fullmatch(value):
            raise invalid(
                attribute.name,
                "must be a phone number of 1 to 32 digits (a leading + is allowed)",
                endpoint=endpoint,
            )

    return check


def digits(endpoint: str, max_len: int, hint: str) -> Validator:
    """A string of 1..``max_len`` digits; ``hint`` says what it should be."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not _DIGITS.fullmatch(value) or len(value) > max_len:
            raise invalid(attribute.name, f"must be {hint} (digits only)", endpoint=endpoint)

    return check


def non_negative_int(endpoint: str) -> Validator:
    """An ``int`` >= 0 (``bool`` refused)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not is_int(value) or value < 0:
            raise invalid(
                attribute.name, f"must be an integer >= 0, got {value!r}", endpoint=endpoint
            )

    return check
