"""Bulk sending: streaming fan-out and journaled, resumable campaigns."""

from aicc_async._fanout import Outcome
from aicc_async.bulk.campaign import (
    Campaign,
    CampaignKind,
    CampaignReport,
    CampaignRow,
    LoadSummary,
)
from aicc_async.bulk.campaign.dialing import SystemClock, Waiting, WallClock
from aicc_async.bulk.campaign.exports import export_problems, export_unanswered_rows
from aicc_async.bulk.journal import Problem, StateCounts, Target
from aicc_async.errors import CampaignError, JournalError

__all__ = [
    "Campaign",
    "CampaignError",
    "CampaignKind",
    "CampaignReport",
    "CampaignRow",
    "JournalError",
    "LoadSummary",
    "Outcome",
    "Problem",
    "StateCounts",
    "SystemClock",
    "Target",
    "Waiting",
    "WallClock",
    "export_problems",
    "export_unanswered_rows",
]
