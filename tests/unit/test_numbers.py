"""One way to compare phone numbers: separators dropped, a leading + read as 00."""

from __future__ import annotations

import pytest

from aicc_async._numbers import normalise_number


@pytest.mark.parametrize(
    "written",
    [
        "+8613812345678",
        "008613812345678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "(0086) 138.1234.5678",
    ],
)
def test_the_forms_of_one_number_compare_equal(written: str) -> None:
    assert normalise_number(written) == "008613812345678"


def test_different_numbers_stay_different() -> None:
    assert normalise_number("8613812345678") != normalise_number("+8613812345678")
    assert normalise_number("88880000") == "88880000"


def test_a_value_that_is_not_a_number_is_only_equal_to_itself() -> None:
    assert normalise_number("12+34") == "12+34"
    assert normalise_number("abc") == "abc"


@pytest.mark.parametrize("digits", ["13812345678", "0", "١٣٨١٢٣٤٥٦٧٨"])
def test_a_number_of_digits_alone_comes_back_as_it_is(digits: str) -> None:
    # Digits of another script are not separators: they stay, and never equal the
    # ASCII number (a do-not-call list or a row check refuses them as not a number).
    assert normalise_number(digits) == digits
    assert normalise_number(" 1381234 ") == "1381234"
