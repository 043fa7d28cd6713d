"""Campaigns: input loading (:mod:`.csv_input`), the run (:mod:`.run`) and exports
(:mod:`.exports`), on a journal (:mod:`aicc_async.bulk.journal`)."""

from aicc_async.bulk.campaign.run import (
    KINDS,
    Campaign,
    CampaignKind,
    CampaignReport,
    CampaignRow,
    LoadSummary,
)

__all__ = [
    "KINDS",
    "Campaign",
    "CampaignKind",
    "CampaignReport",
    "CampaignRow",
    "LoadSummary",
]
