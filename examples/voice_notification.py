"""Phone someone and play a notification (createVoiceNotification), against FakeAICC."""

import asyncio

from aicc_async import AICCBusinessError, AICCClient, AICCOutcomeUnknownError, VoiceContent
from aicc_async.testing import FakeAICC


async def main() -> None:
    async with FakeAICC() as fake:  # production: AICCClient.from_env()
        async with AICCClient(fake.url, fake.app_key, fake.app_secret) as aicc:
            content = VoiceContent().text("Your parcel arrives today between 9 and 12")
            try:
                result = await aicc.voice_notification.create(
                    called="88880000", voice_content=content, priority=5
                )
            except AICCOutcomeUnknownError:
                print("may have been placed: check before sending it again")
            except AICCBusinessError as exc:
                print("refused:", exc.code, exc.meaning)
            else:
                print("call serial number:", result.call_serial_no)


asyncio.run(main())
