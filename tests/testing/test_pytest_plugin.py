"""The ``fake_aicc`` pytest plugin."""

from __future__ import annotations

import pytest
from fake_http import TOKEN_PATH, subprocess_env

pytest_plugins = ["pytester"]


PLUGIN_TEST = (
    """
import aiohttp
import pytest

seen = []


@pytest.mark.asyncio
async def test_fixture_is_started(fake_aicc):
    seen.append(fake_aicc.url)
    body = {"app_key": fake_aicc.app_key, "app_secret": fake_aicc.app_secret}
    async with aiohttp.ClientSession() as s:
        async with s.post(fake_aicc.url + "TOKEN_PATH", json=body) as r:
            assert r.status == 200
    assert fake_aicc.token_requests == 1


@pytest.mark.asyncio
async def test_fixture_was_closed_and_is_fresh(fake_aicc):
    assert fake_aicc.url != seen[0]
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            await s.post(seen[0] + "/")
"""
).replace("TOKEN_PATH", TOKEN_PATH)


def test_pytest_plugin_fixture(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    pytester.makepyfile(test_plugin=PLUGIN_TEST)
    result = pytester.runpytest_subprocess(
        "-p", "no:aicc_async", "-p", "aicc_async.testing.pytest_plugin", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)


def test_pytest_plugin_without_pytest_asyncio(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", subprocess_env()["PYTHONPATH"])
    pytester.makeconftest(
        """
import sys
sys.modules["pytest_asyncio"] = None  # make "import pytest_asyncio" fail
pytest_plugins = ["aicc_async.testing.pytest_plugin"]
"""
    )
    pytester.makepyfile(
        test_plugin="""
def test_other():
    pass


def test_uses_fixture(fake_aicc):
    pass
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:aicc_async", "-p", "no:asyncio", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the fake_aicc fixture needs pytest-asyncio*"])
