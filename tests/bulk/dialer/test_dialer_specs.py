"""--redial-after durations, --max-calls-per-number limits, --attempts."""

from __future__ import annotations

import pytest

from aicc_async.bulk.dialer.specs import check_attempts, parse_duration, parse_limit
from aicc_async.errors import AICCValidationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("7d", 604800),
        (" 45M ", 2700),
        ("2 h", 7200),
        ("366d", 366 * 86400),
        (120, 120),
    ],
)
def test_a_duration_is_read_in_seconds(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0s", "longer than 0"),
        ("0m", "longer than 0"),
        (0, "longer than 0"),
        (-5, "longer than 0"),
        ("-5m", "is not a duration"),
        ("30", "is not a duration"),
        ("m", "is not a duration"),
        ("30 minutes", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("30mm", "is not a duration"),
        ("\u0663\u0660m", "is not a duration"),  # Arabic-Indic 30
        ("30m\x1b[2J", "is not a duration"),
        ("", "is not a duration"),
        ("367d", "longer than a year"),
        ("9" * 200 + "s", "is not a duration"),
        (True, "got bool"),
        (1.5, "got float"),
    ],
)
def test_a_bad_duration_is_refused_naming_it_and_the_form(value: object, says: str) -> None:
    with pytest.raises(AICCValidationError) as caught:
        parse_duration(value, field="redial_after")  # type: ignore[arg-type]
    message = str(caught.value)
    assert caught.value.field == "redial_after"
    assert message.startswith("redial_after: ")
    assert says in message
    assert "\x1b" not in message
    assert len(message) < 200
    if says == "is not a duration":
        assert "90s, 30m, 2h, 1d or 7d" in message


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("1/1d", (1, 86400)),
        ("3/7d", (3, 604800)),
        (" 2 / 12h ", (2, 43200)),
        ("1000/1d", (1000, 86400)),
    ],
)
def test_a_limit_is_read_as_calls_and_seconds(text: str, limit: tuple[int, int]) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0/1d", "CALLS must be 1 to 1000"),
        ("1001/1d", "CALLS must be 1 to 1000"),
        ("-1/1d", "is not a limit"),
        ("3", "is not a limit"),
        ("3/", "is not a limit"),
        ("/7d", "is not a limit"),
        ("3/7", "PERIOD '7' is not a duration"),
        ("3/0d", "PERIOD '0d' is not a duration"),
        ("3/7d/1", "PERIOD '7d/1' is not a duration"),
        ("three/7d", "is not a limit"),
    ],
)
def test_a_bad_limit_is_refused_naming_it(text: str, says: str) -> None:
    with pytest.raises(AICCValidationError) as caught:
        parse_limit(text)
    assert caught.value.field == "max_calls_per_number"
    assert says in str(caught.value)
    assert "like 1/1d or 3/7d" in str(caught.value)


def test_a_limit_that_is_not_text_is_refused() -> None:
    with pytest.raises(AICCValidationError, match="got int"):
        parse_limit(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "number"), [(1, 1), (10, 10), ("3", 3), (" 2 ", 2)])
def test_attempts_from_1_to_10(value: object, number: int) -> None:
    assert check_attempts(value) == number


@pytest.mark.parametrize("value", [0, 11, -1, "0", "11", "two", "", 2.0, True, None, "\u0662"])
def test_attempts_outside_1_to_10_are_refused(value: object) -> None:
    with pytest.raises(AICCValidationError, match="whole number from 1 to 10") as caught:
        check_attempts(value)
    assert caught.value.field == "attempts"
