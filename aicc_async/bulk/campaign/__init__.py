"""Campaigns: the kinds (:mod:`.kinds`), input rows (:mod:`.rows`) and CSV loading
(:mod:`.csv_input`), the run (:mod:`.run`, its checked settings in :mod:`.settings`),
reports (:mod:`.report`) and exports (:mod:`.exports`), on a journal
(:mod:`aicc_async.bulk.journal`)."""

from aicc_async.bulk.campaign.kinds import KINDS, CampaignKind
from aicc_async.bulk.campaign.report import CampaignReport
from aicc_async.bulk.campaign.rows import CampaignRow, LoadSummary
from aicc_async.bulk.campaign.run import Campaign

__all__ = [
    "KINDS",
    "Campaign",
    "CampaignKind",
    "CampaignReport",
    "CampaignRow",
    "LoadSummary",
]
