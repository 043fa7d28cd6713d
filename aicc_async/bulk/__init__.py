"""Bulk sending: streaming fan-out and journaled, resumable campaigns."""

from aicc_async.bulk.campaign import (
    Campaign,
    CampaignKind,
    CampaignReport,
    CampaignRow,
    LoadSummary,
)
from aicc_async.bulk.fanout import Outcome
from aicc_async.bulk.journal import Problem, StateCounts

__all__ = [
    "Campaign",
    "CampaignKind",
    "CampaignReport",
    "CampaignRow",
    "LoadSummary",
    "Outcome",
    "Problem",
    "StateCounts",
]
