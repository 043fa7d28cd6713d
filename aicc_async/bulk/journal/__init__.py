"""The campaign journal, a leaf package: the rules every backend keeps
(:mod:`.rules`), the SQL they share (:mod:`.sql`), the SQLite (:mod:`.sqlite`) and
PostgreSQL (:mod:`.postgres`) backends, where a journal is (:mod:`.location`, parsed
once) and :func:`open_journal` (:mod:`.opening`). Nothing here imports the campaign,
the command line or the testing package."""

from aicc_async.bulk.journal.location import (
    DEFAULT_LEASE,
    JournalLocation,
    campaign_location,
    check_campaign_name,
    check_lease,
    is_dsn,
    mask_dsn,
)
from aicc_async.bulk.journal.opening import POSTGRES_EXTRA, open_journal, postgres_driver
from aicc_async.bulk.journal.rules import (
    TALK_BUCKETS,
    Activity,
    Claim,
    Claimed,
    Finished,
    Journal,
    KeyChanged,
    LoadedRow,
    Outcome,
    Outcomes,
    Problem,
    ProblemRow,
    RatePoint,
    StateCounts,
    Target,
)

__all__ = [
    "DEFAULT_LEASE",
    "POSTGRES_EXTRA",
    "TALK_BUCKETS",
    "Activity",
    "Claim",
    "Claimed",
    "Finished",
    "Journal",
    "JournalLocation",
    "KeyChanged",
    "LoadedRow",
    "Outcome",
    "Outcomes",
    "Problem",
    "ProblemRow",
    "RatePoint",
    "StateCounts",
    "Target",
    "campaign_location",
    "check_campaign_name",
    "check_lease",
    "is_dsn",
    "mask_dsn",
    "open_journal",
    "postgres_driver",
]
