"""Dialer building blocks: calling hours, do-not-call lists, contact limits, and the
small option values (durations, limits, attempts).

Each module has one job and imports nothing of the campaign, the journals, the CLI
or the test tools, so the campaign can use them without a circle.
"""

from aicc_async.bulk.dialer.do_not_call import Blocked, DoNotCall, DoNotCallBlocked
from aicc_async.bulk.dialer.hours import (
    CallingHours,
    ZoneResolver,
    describe_wait,
    describe_waiting,
    machine_zone,
    parse_calling_hours,
    resolve_zone,
)
from aicc_async.bulk.dialer.limits import ContactLimit
from aicc_async.bulk.dialer.specs import check_attempts, parse_duration, parse_limit

__all__ = [
    "Blocked",
    "CallingHours",
    "ContactLimit",
    "DoNotCall",
    "DoNotCallBlocked",
    "ZoneResolver",
    "check_attempts",
    "describe_wait",
    "describe_waiting",
    "machine_zone",
    "parse_calling_hours",
    "parse_duration",
    "parse_limit",
    "resolve_zone",
]
