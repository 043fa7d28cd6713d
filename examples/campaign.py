"""Bulk sending: a streaming fan-out, then a journaled campaign that survives a crash."""

import asyncio
import tempfile
from pathlib import Path

from aicc_async import CreateVoiceNotificationRequest
from aicc_async.bulk import Campaign, CampaignRow
from aicc_async.testing import FakeAICC


def contacts(first: int, n: int) -> list[CreateVoiceNotificationRequest]:
    return [
        CreateVoiceNotificationRequest(called=f"139{i:08d}", voice_content="$Hello$")
        for i in range(first, first + n)
    ]


async def main() -> None:
    async with FakeAICC() as fake, fake.client() as aicc:
        # Fan-out: outcomes arrive as they complete; at most 20 requests in flight.
        sent = 0
        async for outcome in aicc.voice_notification.create_many(contacts(0, 100), concurrency=20):
            if outcome.ok:
                sent += 1
            else:
                print(outcome.request.called, "->", outcome.error)
        print("fan-out:", sent, "sent")

        # Campaign: every row is journaled before and after it is sent. Run it again
        # with the same journal after a crash and it resumes, never re-sending a row.
        journal = Path(tempfile.mkdtemp()) / "campaign.db"
        rows = [CampaignRow(key=str(i), request=r) for i, r in enumerate(contacts(100, 300))]
        async with Campaign(journal, "voice_notification") as campaign:
            await campaign.load(rows)
            counts = await campaign.run(aicc)
        print(
            "campaign:", counts.done, "done,", counts.failed, "failed,", counts.unknown, "unknown"
        )


asyncio.run(main())
