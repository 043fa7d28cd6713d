"""Find where a call goes (getCalledInfo), against FakeAICC."""

import asyncio

from aicc_async import AICCBusinessError, AICCClient, DevType
from aicc_async.testing import CalledParty, FakeAICC


async def main() -> None:
    async with FakeAICC() as fake:  # production: AICCClient.from_env()
        fake.called_parties["6666614"] = CalledParty(
            dev_type=0, called="6666614", skill_id=12, skill_name="VIP line"
        )
        async with AICCClient(fake.url, fake.app_key, fake.app_secret) as aicc:
            info = await aicc.mobile_agent.get_called_info(called="6666614", caller="8888888")
            if info.dev_type is DevType.SKILL_QUEUE:
                print("skill queue:", info.skill_id, info.skill_name)
            try:
                await aicc.mobile_agent.get_called_info(called="1234567", caller="8888888")
            except AICCBusinessError as exc:
                print("code", exc.code, "-", exc.meaning)


asyncio.run(main())
