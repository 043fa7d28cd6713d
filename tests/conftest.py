"""Shared test fixtures.

The ``fake_aicc`` fixture comes from the package's own pytest plugin
(``aicc_async.testing.pytest_plugin``, registered as a ``pytest11`` entry point).
"""

from __future__ import annotations

import inspect
from typing import Any

import aiohttp
import aioresponses.core
import pytest

pytest_plugins = ["pytester"]

# --- aioresponses 0.7.9 vs aiohttp >= 3.14 compatibility shim --------------------------
# aiohttp 3.14 added a keyword-only ``stream_writer`` argument to ClientResponse.__init__;
# aioresponses 0.7.9 does not pass it, so every mocked call fails with TypeError
# (upstream issue pnuckowski/aioresponses#289, fix in PR #288, unreleased).
# Delete this block once aioresponses ships the fix.
_NEEDS_STREAM_WRITER = (
    "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters
)


class _FinishedWriter:
    """Stands in for the request's stream writer of a mocked response: upload finished."""

    output_size = 0


class _ShimmedClientResponse(aiohttp.ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedWriter())
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    if _NEEDS_STREAM_WRITER:
        monkeypatch.setattr(aioresponses.core, "ClientResponse", _ShimmedClientResponse)
