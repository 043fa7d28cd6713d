"""Calling hours: the SPEC, zones, is_open / next_open (summer time included) and the
wait text. Every moment is given: nothing reads the clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aicc_async.bulk.dialer.hours import (
    CallingHours,
    ZoneResolver,
    describe_wait,
    describe_waiting,
    machine_zone,
    parse_calling_hours,
    resolve_zone,
    zone_name,
)
from aicc_async.errors import AICCValidationError

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
UTC = timezone.utc
OFFICE = "mon-fri 09:00-20:00, sat 10:00-16:00"


def at(zone: tzinfo, *parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=zone, fold=fold)  # type: ignore[arg-type,misc]


def refusal(spec: str) -> str:
    with pytest.raises(AICCValidationError) as caught:
        parse_calling_hours(spec)
    assert caught.value.field == "calling_hours"
    return str(caught.value)


# --------------------------------------------------------------------- the SPEC


def test_office_hours_open_on_weekdays_and_saturday_only() -> None:
    hours = parse_calling_hours(OFFICE)
    # 2026-12-07 is a Monday.
    assert hours.is_open(at(SHANGHAI, 2026, 12, 7, 9, 0), SHANGHAI)
    assert hours.is_open(at(SHANGHAI, 2026, 12, 11, 19, 59, 59), SHANGHAI)
    assert not hours.is_open(at(SHANGHAI, 2026, 12, 11, 20, 0), SHANGHAI)  # end excluded
    assert not hours.is_open(at(SHANGHAI, 2026, 12, 7, 8, 59, 59), SHANGHAI)
    assert hours.is_open(at(SHANGHAI, 2026, 12, 12, 10, 0), SHANGHAI)  # Saturday
    assert not hours.is_open(at(SHANGHAI, 2026, 12, 12, 9, 0), SHANGHAI)
    assert not hours.is_open(at(SHANGHAI, 2026, 12, 13, 12, 0), SHANGHAI)  # Sunday


def test_the_same_moment_is_judged_in_each_rows_zone() -> None:
    hours = parse_calling_hours("09:00-20:00")
    moment = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai, 22:00 in New York
    assert hours.is_open(moment, SHANGHAI)
    assert not hours.is_open(moment, NEW_YORK)


def test_no_days_means_every_day_and_lists_ranges_and_wrapping_ranges() -> None:
    every = parse_calling_hours("08:30-18:00")
    assert all(every.is_open(at(UTC, 2026, 12, 7 + d, 12, 0), UTC) for d in range(7))
    listed = parse_calling_hours("mon,wed,fri 09:00-12:00")
    assert [listed.is_open(at(UTC, 2026, 12, 7 + d, 10, 0), UTC) for d in range(7)] == [
        True, False, True, False, True, False, False,
    ]  # fmt: skip
    wrapped = parse_calling_hours("FRI-Mon 10:00-11:00")
    assert [wrapped.is_open(at(UTC, 2026, 12, 7 + d, 10, 30), UTC) for d in range(7)] == [
        True, False, False, False, True, True, True,
    ]  # fmt: skip
    full = parse_calling_hours("saturday 10:00 - 12:00")
    assert full.is_open(at(UTC, 2026, 12, 12, 11, 0), UTC)


def test_24_00_ends_the_day_and_00_00_to_24_00_is_the_whole_day() -> None:
    evening = parse_calling_hours("sat 20:00-24:00")
    assert evening.is_open(at(UTC, 2026, 12, 12, 23, 59, 59), UTC)
    assert not evening.is_open(at(UTC, 2026, 12, 13, 0, 0), UTC)
    whole = parse_calling_hours("00:00-24:00")
    assert whole.is_open(at(UTC, 2026, 12, 12, 0, 0), UTC)
    assert whole.is_open(at(UTC, 2026, 12, 12, 23, 59), UTC)


def test_a_window_crossing_midnight_is_refused_with_the_way_to_write_it() -> None:
    message = refusal("mon-fri 22:00-02:00")
    assert "'mon-fri 22:00-02:00' crosses midnight" in message
    assert "22:00-24:00, sat 00:00-02:00" in message


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("mon-fri 9-20", "'mon-fri 9-20'"),
        ("mon-fri 09:00-20:00; sat 10:00-16:00", "'mon-fri 09:00-20:00; sat 10:00-16:00'"),
        ("mon-fri 09:00-20:00, sta 10:00-16:00", "'sta'"),
        ("09:00-24:30", "'24:30'"),
        ("24:00-24:00", "'24:00'"),
        ("09:60-10:00", "'09:60'"),
        ("09:00-09:00", "'09:00-09:00' is empty"),
        ("mon-fri", "'mon-fri' have no HH:MM-HH:MM"),
        ("09:00-10:00,", "empty window"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("\u0660\u0669:00-10:00", "'\u0660\u0669:00-10:00'"),  # Arabic-Indic digits
        ("09:00-10:00\x1b[2J", r"'09:00-10:00\x1b[2J'"),  # the escape shown, not sent
        ("mon\x00 09:00-10:00", r"'mon\x00 09:00-10:00'"),
    ],
)
def test_a_bad_spec_names_its_bad_part_as_written_and_the_form(spec: str, named: str) -> None:
    message = refusal(spec)
    assert named in message
    assert "\x1b" not in message
    assert "\x00" not in message


def test_an_unreadable_part_also_says_what_form_is_expected() -> None:
    assert '"[DAYS ]HH:MM-HH:MM"' in refusal("weekdays 9am-5pm")


def test_a_huge_spec_is_refused_without_echoing_it() -> None:
    message = refusal("mon 09:00-10:00, " * 10_000)
    assert "at most 1000" in message
    assert len(message) < 200


def test_a_spec_of_many_windows_within_the_cap_is_read() -> None:
    spec = ", ".join(f"{h:02d}:00-{h:02d}:30" for h in range(24))
    hours = parse_calling_hours(spec)
    assert len(hours.windows) == 24
    assert hours.is_open(at(UTC, 2026, 12, 7, 13, 29), UTC)
    assert not hours.is_open(at(UTC, 2026, 12, 7, 13, 30), UTC)


def test_a_spec_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(AICCValidationError, match="must be a string"):
        parse_calling_hours(9)  # type: ignore[arg-type]


def test_a_naive_datetime_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_calling_hours(OFFICE).is_open(datetime(2026, 12, 7, 10, 0), SHANGHAI)


# --------------------------------------------------------------------- next_open


def test_next_open_is_now_when_open() -> None:
    now = at(SHANGHAI, 2026, 12, 7, 10, 0)
    assert parse_calling_hours(OFFICE).next_open(now, SHANGHAI) == now


def test_next_open_later_today_when_before_the_window() -> None:
    opens = parse_calling_hours(OFFICE).next_open(at(SHANGHAI, 2026, 12, 7, 6, 47), SHANGHAI)
    assert opens == at(SHANGHAI, 2026, 12, 7, 9, 0)


def test_next_open_skips_todays_past_windows_and_the_weekend() -> None:
    hours = parse_calling_hours("mon-fri 08:00-09:00, mon-fri 12:00-13:00")
    assert hours.next_open(at(UTC, 2026, 12, 7, 10, 0), UTC) == at(UTC, 2026, 12, 7, 12, 0)
    assert hours.next_open(at(UTC, 2026, 12, 11, 13, 0), UTC) == at(UTC, 2026, 12, 14, 8, 0)


def test_next_open_a_week_ahead_for_a_single_weekly_window() -> None:
    hours = parse_calling_hours("mon 09:00-10:00")
    assert hours.next_open(at(UTC, 2026, 12, 7, 10, 0), UTC) == at(UTC, 2026, 12, 14, 9, 0)


def test_next_open_is_given_in_the_rows_zone() -> None:
    moment = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # Sunday 19:00 in New York
    opens = parse_calling_hours(OFFICE).next_open(moment, NEW_YORK)
    assert opens == at(NEW_YORK, 2026, 12, 7, 9, 0)
    assert opens is not None
    assert opens.tzinfo is NEW_YORK


def test_clocks_jumping_forward_over_the_start_open_the_window_at_the_jump() -> None:
    # New York, Sunday 2027-03-14: 02:00 EST becomes 03:00 EDT.
    hours = parse_calling_hours("sun 02:30-04:00")
    opens = hours.next_open(at(NEW_YORK, 2027, 3, 14, 1, 0), NEW_YORK)
    assert opens is not None
    assert opens.astimezone(UTC) == datetime(2027, 3, 14, 7, 0, tzinfo=UTC)  # the jump
    assert (opens.hour, opens.minute) == (3, 0)  # 03:00 EDT


def test_a_window_inside_the_skipped_hour_waits_a_week() -> None:
    hours = parse_calling_hours("sun 02:00-02:45")
    opens = hours.next_open(at(NEW_YORK, 2027, 3, 14, 1, 0), NEW_YORK)
    assert opens == at(NEW_YORK, 2027, 3, 21, 2, 0)


def test_a_wall_time_that_happens_twice_is_open_both_times() -> None:
    # New York, Sunday 2026-11-01: 02:00 EDT becomes 01:00 EST.
    hours = parse_calling_hours("sun 01:00-01:30")
    first = at(NEW_YORK, 2026, 11, 1, 1, 15, fold=0)
    second = at(NEW_YORK, 2026, 11, 1, 1, 15, fold=1)
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert hours.is_open(first, NEW_YORK)
    assert hours.is_open(second, NEW_YORK)
    after_first = at(NEW_YORK, 2026, 11, 1, 1, 45, fold=0)
    assert not hours.is_open(after_first, NEW_YORK)
    opens = hours.next_open(after_first, NEW_YORK)
    assert opens is not None
    assert opens.astimezone(UTC) == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 EST


def test_clocks_going_back_into_a_window_reopen_it_at_the_jump() -> None:
    hours = parse_calling_hours("sun 00:30-01:30")
    after_first = at(NEW_YORK, 2026, 11, 1, 1, 45, fold=0)  # 05:45 UTC
    opens = hours.next_open(after_first, NEW_YORK)
    assert opens is not None
    assert opens.astimezone(UTC) == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def test_next_open_on_every_minute_of_a_week_is_open_and_nothing_earlier_is() -> None:
    hours = parse_calling_hours("mon-fri 09:00-20:00, sat 10:00-16:00")
    start = datetime(2027, 3, 12, 5, 0, tzinfo=UTC)  # over the jump to summer time
    for minutes in range(0, 7 * 24 * 60, 37):
        moment = start + timedelta(minutes=minutes)
        opens = hours.next_open(moment, NEW_YORK)
        assert opens is not None
        assert opens >= moment
        assert hours.is_open(opens, NEW_YORK)
        before = opens.astimezone(UTC) - timedelta(seconds=1)
        assert opens == moment or not hours.is_open(before, NEW_YORK)


# --------------------------------------------------------------------- zones


def test_a_known_zone_resolves() -> None:
    assert resolve_zone("Asia/Shanghai") == SHANGHAI
    assert resolve_zone(" UTC ") == ZoneInfo("UTC")


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "../../etc/passwd", "/etc", "Asia", "Asia/\x1bShanghai", "x" * 500]
)
def test_an_unknown_zone_is_refused_naming_it(name: str) -> None:
    with pytest.raises(AICCValidationError) as caught:
        resolve_zone(name, field="timezone")
    message = str(caught.value)
    assert caught.value.field == "timezone"
    assert "is not a known IANA time zone name" in message
    assert repr(name[:60])[:-1] in message
    assert "\x1b" not in message


def test_the_machine_zone_from_tz_or_the_localtime_link(tmp_path: Path) -> None:
    assert machine_zone(":Europe/Paris") == ZoneInfo("Europe/Paris")
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Asia/Shanghai")
    zone = machine_zone(None, localtime=link)
    assert zone == SHANGHAI
    assert zone_name(zone, at(UTC, 2026, 12, 7)) == "Asia/Shanghai"


def test_the_machine_zone_from_a_copied_zone_file_keeps_summer_time(tmp_path: Path) -> None:
    copy = tmp_path / "localtime"
    copy.write_bytes(Path("/usr/share/zoneinfo/America/New_York").read_bytes())
    zone = machine_zone(None, localtime=copy)
    winter = datetime(2026, 12, 7, 12, tzinfo=UTC).astimezone(zone)
    summer = datetime(2026, 7, 7, 12, tzinfo=UTC).astimezone(zone)
    assert (winter.hour, summer.hour) == (7, 8)
    assert zone_name(zone, winter) == "EST, UTC-05:00"


def test_no_machine_zone_is_refused_never_guessed(tmp_path: Path) -> None:
    with pytest.raises(AICCValidationError, match="--timezone NAME"):
        machine_zone(None, localtime=tmp_path / "missing")
    with pytest.raises(AICCValidationError, match="not a known IANA"):
        machine_zone("EST5EDT,M3.2.0,M11.1.0")


# --------------------------------------------------------------------- the wait text


def test_the_wait_text_names_time_zone_and_delay() -> None:
    now = at(SHANGHAI, 2026, 12, 7, 6, 47)
    opens = parse_calling_hours(OFFICE).next_open(now, SHANGHAI)
    assert opens is not None
    text = describe_wait(opens, SHANGHAI, now)
    assert text == "next window opens 09:00 Asia/Shanghai, in 2 h 13 min"


def test_the_wait_text_names_the_day_when_not_today_and_rounds_up() -> None:
    now = at(UTC, 2026, 12, 11, 20, 0, 30)  # Friday
    hours = parse_calling_hours(OFFICE)
    opens = hours.next_open(now, UTC)
    assert opens is not None
    assert describe_wait(opens, UTC, now) == "next window opens Sat 10:00 UTC, in 14 h"
    soon = at(UTC, 2026, 12, 12, 9, 59, 30)
    assert describe_wait(opens, UTC, soon) == "next window opens 10:00 UTC, in 1 min"
    week = parse_calling_hours("mon 09:00-10:00")
    later = week.next_open(at(UTC, 2026, 12, 7, 10, 0), UTC)
    assert later is not None
    assert describe_wait(later, UTC, at(UTC, 2026, 12, 7, 10, 0)) == (
        "next window opens 2026-12-14 09:00 UTC, in 6 d 23 h"
    )


def test_calling_hours_compare_by_windows_not_by_spelling() -> None:
    assert parse_calling_hours("mon-fri 09:00-17:00") == parse_calling_hours(
        "Mon,Tue,Wed,Thu,Fri 09:00-17:00"
    )
    assert isinstance(parse_calling_hours(OFFICE), CallingHours)


def test_a_window_starting_inside_the_repeated_hour_opens_on_its_second_pass() -> None:
    hours = parse_calling_hours("sun 01:15-01:30")
    after_first = at(NEW_YORK, 2026, 11, 1, 1, 45, fold=0)  # 05:45 UTC
    opens = hours.next_open(after_first, NEW_YORK)
    assert opens is not None
    assert opens.astimezone(UTC) == datetime(2026, 11, 1, 6, 15, tzinfo=UTC)  # 01:15 EST


def test_the_live_line_counts_the_rows_that_wait() -> None:
    now = at(SHANGHAI, 2026, 12, 7, 6, 47)
    opens = at(SHANGHAI, 2026, 12, 7, 9, 0)
    assert describe_waiting(140, opens, SHANGHAI, now) == (
        "140 rows wait for calling hours; next window opens 09:00 Asia/Shanghai, in 2 h 13 min"
    )
    assert describe_waiting(1, opens, SHANGHAI, now).startswith("1 row waits for calling hours;")
    assert describe_waiting(12345, opens, SHANGHAI, now).startswith("12,345 rows wait")


def test_each_row_gets_its_cells_zone_or_the_default() -> None:
    zones = ZoneResolver(SHANGHAI)
    assert zones.zone(None) is SHANGHAI
    assert zones.zone("  ") is SHANGHAI
    assert zones.zone("America/New_York") == NEW_YORK
    assert zones.zone("America/New_York") is zones.zone("America/New_York")
    with pytest.raises(AICCValidationError, match="'Mars/Base' is not a known IANA") as caught:
        zones.zone("Mars/Base")
    assert caught.value.field == "timezone"


def test_windows_read_back_as_a_person_would_write_them() -> None:
    hours = parse_calling_hours("sat,mon-fri 09:00-20:00, 10:00-24:00")
    assert [str(w) for w in hours.windows] == [
        "mon,tue,wed,thu,fri,sat 09:00-20:00",
        "every day 10:00-24:00",
    ]


def test_a_window_opening_now_says_now() -> None:
    now = at(UTC, 2026, 12, 7, 9, 0)
    assert describe_wait(now, UTC, now) == "a window is open now (since 09:00 UTC)"
    just_before = now - timedelta(milliseconds=300)
    assert describe_wait(now, UTC, just_before) == "next window opens 09:00 UTC, in 1 min"
