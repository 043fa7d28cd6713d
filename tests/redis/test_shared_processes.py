"""Several processes, one tenant: each process has its own AICCClient on one Redis
(``redis_url``); FakeAICC counts what the tenant received from all of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aicc_helpers import VOICE

from aicc_async.testing import FakeAICC, peak_per_second

Run = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.mark.asyncio
async def test_three_processes_fetch_one_token_in_all(
    fake_aicc: FakeAICC, redis_url: str, run_clients: Run
) -> None:
    outputs = await run_clients(
        3, fake_aicc.url, fake_aicc.app_key, fake_aicc.app_secret, redis_url, "40", "0"
    )

    assert [o["errors"] for o in outputs] == [[], [], []]
    assert len(fake_aicc.processed(VOICE)) == 120
    assert fake_aicc.token_requests == 1


@pytest.mark.asyncio
async def test_three_processes_share_one_rate_cap(
    fake_aicc: FakeAICC, redis_url: str, run_clients: Run
) -> None:
    rate = 20
    outputs = await run_clients(
        3, fake_aicc.url, fake_aicc.app_key, fake_aicc.app_secret, redis_url, "20", str(rate)
    )

    assert [o["errors"] for o in outputs] == [[], [], []]
    times = [r.time for r in fake_aicc.received(VOICE)]
    assert len(times) == 60
    # Each process alone would send 20/s: three at once, up to 60/s.
    assert peak_per_second(times) <= rate + 2
    assert fake_aicc.token_requests == 1
