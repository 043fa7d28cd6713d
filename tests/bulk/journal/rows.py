"""Rows and requests the journal tests load (numbers ``8888NNNNN``)."""

from __future__ import annotations

from aicc_async import CreateVoiceNotificationRequest, WriteBackResultRequest
from aicc_async.bulk import CampaignKind, CampaignRow

VOICE: CampaignKind = "voice_notification"
WRITE_BACK: CampaignKind = "write_back"


def number(i: int) -> str:
    return f"8888{i:05d}"


def voice(i: int, content: str = "$Your parcel$") -> CreateVoiceNotificationRequest:
    return CreateVoiceNotificationRequest(called=number(i), voice_content=content)


def write_back(i: int, status: str = "0") -> WriteBackResultRequest:
    return WriteBackResultRequest(
        sub_cc_no=1, vdn_id=2, unique_id=f"uid-{i}", service_id="svc", status=status
    )


def voice_rows(n: int, content: str = "$Your parcel$", prefix: str = "k") -> list[CampaignRow]:
    return [CampaignRow(key=f"{prefix}{i}", request=voice(i, content)) for i in range(n)]
