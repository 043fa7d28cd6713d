"""Write back an outbound-call result (midresult), against FakeAICC."""

import asyncio

from aicc_async import AICCClient
from aicc_async.testing import FakeAICC


async def main() -> None:
    async with FakeAICC() as fake:  # production: AICCClient.from_env()
        async with AICCClient(fake.url, fake.app_key, fake.app_secret) as aicc:
            result = await aicc.outbound.write_back_result(
                sub_cc_no=1,
                vdn_id=88,
                unique_id="21713676089219765504",
                service_id="1251250797",
                device_type=2,
                phone_number="88889156",
            )
            print("written:", result.raw)


asyncio.run(main())
