"""The dialer's small option values: durations (``--redial-after 30m``), contact
limits (``--max-calls-per-number 3/7d``) and the number of attempts (``--attempts``).

Each parser refuses a bad value with an AICCValidationError naming the option's
field, the value as written, and the form expected.
"""

from __future__ import annotations

import re
from typing import Final

from aicc_async.errors import invalid, is_int

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_DURATION",
    "MAX_LIMIT_COUNT",
    "check_attempts",
    "parse_duration",
    "parse_limit",
]

MAX_ATTEMPTS: Final = 10
"""Most calls a row may get in all (``--attempts``)."""
MAX_DURATION: Final = 366 * 86400
"""Longest duration accepted, in seconds (a year)."""
MAX_LIMIT_COUNT: Final = 1000
"""Largest N of ``N/PERIOD``."""

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION: Final = re.compile(r"([0-9]{1,9})\s*([smhd])", re.ASCII | re.IGNORECASE)
_LIMIT: Final = re.compile(r"([0-9]{1,9})\s*/\s*(\S.*)", re.ASCII)
_DURATION_FORM: Final = "expected a whole number and a unit: 90s, 30m, 2h, 1d or 7d"
_LIMIT_FORM: Final = "expected CALLS/PERIOD, like 1/1d or 3/7d"


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= 40 else text[:40] + "...")


def parse_duration(value: str | int, *, field: str = "redial_after") -> int:
    """Seconds in ``value``: ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"7d"`` (units
    s, m, h, d; any case), or an int of seconds from Python. Between 1 s and a year.

    Raises AICCValidationError (``field``) for 0, a negative, a missing unit or junk.
    """
    if is_int(value):
        seconds = value
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise invalid(field, f"{_shown(value)} is not a duration; {_DURATION_FORM}")
        seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        raise invalid(field, f"must be a duration like 30m, got {type(value).__name__}")
    if seconds <= 0:
        raise invalid(field, f"{_shown(value)} must be longer than 0; {_DURATION_FORM}")
    if seconds > MAX_DURATION:
        raise invalid(field, f"{_shown(value)} is longer than a year (366d)")
    return seconds


def parse_limit(value: str, *, field: str = "max_calls_per_number") -> tuple[int, int]:
    """``(calls, seconds)`` from ``"N/PERIOD"`` (``"3/7d"`` is ``(3, 604800)``): at
    most N calls to one number within any PERIOD. N is 1 to 1000; PERIOD as
    :func:`parse_duration`.

    Raises AICCValidationError (``field``) naming the value and the form expected.
    """
    if not isinstance(value, str):
        raise invalid(field, f"must be a text like 3/7d, got {type(value).__name__}")
    match = _LIMIT.fullmatch(value.strip())
    if match is None:
        raise invalid(field, f"{_shown(value)} is not a limit; {_LIMIT_FORM}")
    calls = int(match.group(1))
    if not 1 <= calls <= MAX_LIMIT_COUNT:
        raise invalid(
            field, f"{_shown(value)}: CALLS must be 1 to {MAX_LIMIT_COUNT}; {_LIMIT_FORM}"
        )
    try:
        seconds = parse_duration(match.group(2), field=field)
    except ValueError as exc:
        raise invalid(
            field,
            f"{_shown(value)}: PERIOD {_shown(match.group(2))} is not a duration; {_LIMIT_FORM}",
        ) from exc
    return calls, seconds


def check_attempts(value: object, *, field: str = "attempts") -> int:
    """``value`` when it is a whole number from 1 to 10 (calls a row may get in all).

    Raises AICCValidationError (``field``) otherwise. A string of digits (from a
    command line) is read as its number.
    """
    number: int | None = None
    if is_int(value):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,3}", value.strip(), re.ASCII):
        number = int(value.strip())
    if number is None or not 1 <= number <= MAX_ATTEMPTS:
        raise invalid(field, f"{_shown(value)} must be a whole number from 1 to {MAX_ATTEMPTS}")
    return number
