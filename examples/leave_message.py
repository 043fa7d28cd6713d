"""Submit a customer's message (doLeaveMessage), against FakeAICC."""

import asyncio

from aicc_async import AICCClient
from aicc_async.testing import FakeAICC


async def main() -> None:
    async with FakeAICC() as fake:  # production: AICCClient.from_env(messaging_channel_id=...)
        async with AICCClient(
            fake.url,
            fake.app_key,
            fake.app_secret,
            messaging_channel_id="web-channel-config-id",  # for the ccmessaging-token
        ) as aicc:
            result = await aicc.messaging.leave_message(
                call_id="111111222111", caller="138****7777", message="Please call me back"
            )
            print("saved:", result.description)


asyncio.run(main())
