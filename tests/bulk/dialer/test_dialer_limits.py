"""Per-number contact limits: a sliding window over the calls a number had."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aicc_async.bulk.dialer.limits import ContactLimit
from aicc_async.errors import AICCValidationError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def test_under_the_limit_a_number_may_be_phoned_now() -> None:
    limit = ContactLimit.parse("3/7d")
    assert limit.allowed_at([], NOW) is None
    assert limit.allowed_at([NOW - DAY, NOW - 2 * DAY], NOW) is None


def test_at_the_limit_it_waits_until_the_oldest_counted_call_ages_out() -> None:
    limit = ContactLimit.parse("3/7d")
    placed = [NOW - 6 * DAY, NOW - DAY, NOW - 3 * DAY]  # any order
    assert limit.allowed_at(placed, NOW) == NOW + DAY
    assert limit.allowed_at(placed, NOW + DAY) is None  # exactly 7 days: no longer counted


def test_calls_older_than_the_period_do_not_count() -> None:
    limit = ContactLimit.parse("1/1d")
    assert limit.allowed_at([NOW - 2 * DAY, NOW - DAY - timedelta(seconds=1)], NOW) is None
    assert limit.allowed_at([NOW - timedelta(hours=2)], NOW) == NOW + timedelta(hours=22)


def test_more_calls_than_the_limit_wait_for_the_right_one() -> None:
    limit = ContactLimit(2, 86400)
    placed = [NOW - timedelta(hours=h) for h in (1, 2, 3, 20)]
    assert limit.allowed_at(placed, NOW) == NOW - timedelta(hours=2) + DAY


def test_the_limit_reads_back_for_messages() -> None:
    assert ContactLimit.parse("3/7d").describe() == "3 calls per 7 d"
    assert ContactLimit.parse("1/90s").describe() == "1 call per 90 s"
    assert ContactLimit.parse("2/90m").describe() == "2 calls per 90 min"
    assert ContactLimit.parse("1/36h").since(NOW) == NOW - timedelta(hours=36)


def test_a_bad_limit_is_refused_with_its_field() -> None:
    with pytest.raises(AICCValidationError, match="max_calls_per_number: '3/7'"):
        ContactLimit.parse("3/7")
