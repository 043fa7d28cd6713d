"""Fixtures shared by the FakeAICC tests: a manual clock, a started fake on it, an HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from fake_http import FakeClock

from aicc_async.testing import FakeAICC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeAICC]:
    async with FakeAICC(clock=clock) as server:
        yield server


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client
