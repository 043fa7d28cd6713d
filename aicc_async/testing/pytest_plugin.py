"""pytest plugin (entry point ``aicc_async``): the ``fake_aicc`` fixture.

``fake_aicc`` is a function-scoped async fixture yielding a started
:class:`~aicc_async.testing.FakeAICC`, closed after the test. It needs
pytest-asyncio; in strict mode mark the test ``@pytest.mark.asyncio``::

    @pytest.mark.asyncio
    async def test_call(fake_aicc: FakeAICC) -> None:
        async with fake_aicc.client() as client:
            ...

This module is imported by every pytest run where the SDK is installed, so it
must import cleanly even without pytest-asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aicc_async.testing.fake.server import FakeAICC

__all__ = ["fake_aicc"]

_NEEDS_ASYNCIO = "the fake_aicc fixture needs pytest-asyncio: pip install pytest-asyncio"


async def _fake_aicc() -> AsyncIterator[FakeAICC]:
    """A started FakeAICC, closed after the test."""
    from aicc_async.testing.fake.server import FakeAICC

    async with FakeAICC() as fake:
        yield fake


def _fake_aicc_unavailable() -> None:
    """Stand-in used when pytest-asyncio is not installed."""
    pytest.fail(_NEEDS_ASYNCIO)


fake_aicc: Any
try:
    import pytest_asyncio
except ImportError:
    fake_aicc = pytest.fixture(_fake_aicc_unavailable, name="fake_aicc")
else:
    fake_aicc = pytest_asyncio.fixture(_fake_aicc, name="fake_aicc")
