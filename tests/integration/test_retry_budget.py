"""The client-wide retry budget: during an outage retries stop instead of
multiplying the load on AICC, and successes fill the budget again.

FakeAICC counts what it received; each test checks those counts.
"""

from __future__ import annotations

from typing import Any

import pytest

from aicc_async import (
    AICCClient,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCValidationError,
    RetryPolicy,
    Sent,
    Timeout,
)
from aicc_async.testing import FakeAICC, Fault

WRITE_BACK = "midresult"
ATTEMPTS = 4
FAST = RetryPolicy(max_attempts=ATTEMPTS, base_delay=0.001, max_delay=0.01, max_elapsed=5)
#: Three retries' worth (a retry costs 5; a first-attempt success gives back 1).
SMALL = 15


def client(fake: FakeAICC, **kwargs: Any) -> AICCClient:
    return fake.client(retry=FAST, timeout=Timeout(total=2, connect=1), **kwargs)


async def write_back(aicc: AICCClient, key: int = 0) -> Any:
    return await aicc.outbound.write_back_result(1, 88, f"u-{key}", "svc")


async def outage(fake: FakeAICC, aicc: AICCClient, calls: int) -> list[AICCHTTPError]:
    """``calls`` write-backs while every request gets a 502; their errors."""
    fake.inject(Fault.HTML_502, endpoint=WRITE_BACK, times=calls * ATTEMPTS)
    errors = []
    for key in range(calls):
        with pytest.raises(AICCHTTPError) as caught:
            await write_back(aicc, key)
        errors.append(caught.value)
    return errors


@pytest.mark.asyncio
async def test_without_a_budget_an_outage_multiplies_the_load(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc, retry_budget=None) as aicc:
        errors = await outage(fake_aicc, aicc, 10)

    assert len(fake_aicc.received(WRITE_BACK)) == 10 * ATTEMPTS
    assert not any("retry budget" in str(e) for e in errors)


@pytest.mark.asyncio
async def test_an_empty_budget_stops_retries_and_says_so(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc, retry_budget=SMALL) as aicc:
        errors = await outage(fake_aicc, aicc, 10)

    # The first call spends the budget on its three retries; the nine after it are
    # sent once each: 13 requests instead of 40.
    assert len(fake_aicc.received(WRITE_BACK)) == ATTEMPTS + 9
    assert "retry budget" not in str(errors[0])
    for error in errors[1:]:
        assert "retry budget is exhausted" in str(error)
        assert error.message == str(error)
        # What became of the request is unchanged: retries were only held back.
        assert (error.sent, error.retry_safe, error.status) == (Sent.MAYBE_PROCESSED, True, 502)


@pytest.mark.asyncio
async def test_successes_refill_the_budget(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc, retry_budget=SMALL) as aicc:
        await outage(fake_aicc, aicc, 1)  # spends all of it
        assert len(fake_aicc.received(WRITE_BACK)) == ATTEMPTS

        fake_aicc.inject(Fault.HTML_502, endpoint=WRITE_BACK)
        with pytest.raises(AICCHTTPError, match="retry budget is exhausted"):
            await write_back(aicc)
        assert len(fake_aicc.received(WRITE_BACK)) == ATTEMPTS + 1  # not retried

        for key in range(5):  # each gives 1 back: one retry's worth
            await write_back(aicc, key)

        fake_aicc.inject(Fault.HTML_502, endpoint=WRITE_BACK)
        await write_back(aicc)  # retried again, and succeeds
        assert len(fake_aicc.received(WRITE_BACK)) == ATTEMPTS + 1 + 5 + 2


@pytest.mark.asyncio
async def test_a_success_after_retries_gives_back_what_they_took(fake_aicc: FakeAICC) -> None:
    async with client(fake_aicc, retry_budget=SMALL) as aicc:
        fake_aicc.inject(Fault.HTML_502, endpoint=WRITE_BACK, times=ATTEMPTS - 1)
        await write_back(aicc)  # three retries, then success: the budget is full again
        errors = await outage(fake_aicc, aicc, 1)

    assert "retry budget" not in str(errors[0])
    assert len(fake_aicc.received(WRITE_BACK)) == 2 * ATTEMPTS


@pytest.mark.asyncio
async def test_the_budget_is_shared_by_every_call_of_a_client(fake_aicc: FakeAICC) -> None:
    # A 502 outage on one endpoint spends what another endpoint could retry.
    async with client(fake_aicc, retry_budget=SMALL) as aicc:
        await outage(fake_aicc, aicc, 1)
        fake_aicc.inject(Fault.RESET_BEFORE_PROCESSING, endpoint="getCalledInfo")
        # A reset after sending: it may have been processed (harmless for a lookup).
        with pytest.raises(AICCOutcomeUnknownError, match="retry budget is exhausted") as caught:
            await aicc.mobile_agent.get_called_info("88880000", "95599")
    assert caught.value.retry_safe

    assert len(fake_aicc.received("getCalledInfo")) == 1


@pytest.mark.parametrize("value", [0, 4, -1, 2.5, True, "500"])
def test_retry_budget_must_be_none_or_an_integer_of_at_least_one_retry(value: Any) -> None:
    with pytest.raises(AICCValidationError) as caught:
        AICCClient("https://aicc.test", "key", "secret", retry_budget=value)
    assert caught.value.field == "retry_budget"
