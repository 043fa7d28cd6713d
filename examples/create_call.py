"""Create an anonymous outbound call task (createcall), against FakeAICC."""

import asyncio

from aicc_async import AICCClient
from aicc_async.testing import FakeAICC


async def main() -> None:
    async with FakeAICC() as fake:  # production: AICCClient.from_env()
        async with AICCClient(fake.url, fake.app_key, fake.app_secret) as aicc:
            call = await aicc.mobile_agent.create_call(
                called="88884432", caller_present="95599", call_data="order-1"
            )
            print("SIP service:", call.sip_service_address)
            print("access code:", call.access_code)
            print("call serial number:", call.call_serial_no)  # may be None


asyncio.run(main())
