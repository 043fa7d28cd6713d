"""How a campaign row's state follows from its error (issue 13, item 5): the engine
reads what the error says became of the request (``exc.sent``), not its class."""

from __future__ import annotations

from pathlib import Path

import pytest
from aicc_helpers import write_backs

from aicc_async import RetryPolicy, Timeout
from aicc_async.bulk import Campaign, StateCounts
from aicc_async.errors import AICCRateLimitError
from aicc_async.testing import FakeAICC, Fault

MIDRESULT = "midresult"
FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01)


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", [Fault.HTML_502, Fault.HANG])
async def test_an_idempotent_row_with_no_usable_answer_is_unknown_then_sent_again(
    tmp_path: Path, fault: Fault
) -> None:
    # A 502 that outlasts the retries and a timeout both mean "may have been
    # processed": one rule for both (a 502 used to be recorded failed, a timeout unknown).
    path = tmp_path / "w.db"
    async with FakeAICC() as fake, Campaign(path, "write_back") as campaign:
        await campaign.load(write_backs(3))
        fake.inject(fault, times=FAST.max_attempts, endpoint=MIDRESULT)
        options = {"retry": FAST, "timeout": Timeout(total=0.3, connect=0.2)}
        async with fake.client(**options) as aicc:
            first = await campaign.run(aicc, concurrency=1)
        assert first == StateCounts(done=2, unknown=1)
        async with fake.client(**options) as aicc:
            again = await campaign.run(aicc)  # a write-back may be repeated: it is
        assert again == StateCounts(done=3)


@pytest.mark.asyncio
async def test_a_rate_limit_that_outlasts_the_retries_sends_the_rows_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    async with FakeAICC() as fake, Campaign(path, "write_back") as campaign:
        await campaign.load(write_backs(5))
        fake.inject(Fault.HTTP_429, times=30, endpoint=MIDRESULT)
        async with fake.client(retry=FAST) as aicc:
            counts = await campaign.run(aicc, concurrency=1)  # not stopped: slowed down
        assert counts == StateCounts(done=5)
        assert campaign.requeued == 15  # each 429'd row went back to the queue
        assert fake.write_backs == {f"uid-{i}": 1 for i in range(5)}  # a 429 was not processed


class SteppingClock:
    """A monotonic clock that moves a minute each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 60.0
        return self.now


@pytest.mark.asyncio
async def test_only_ten_minutes_of_throttling_without_a_success_stops_the_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    async with FakeAICC() as fake, Campaign(path, "write_back") as campaign:
        await campaign.load(write_backs(5))
        fake.inject(Fault.HTTP_429, times=10_000, endpoint=MIDRESULT)
        async with fake.client(retry=FAST, clock=SteppingClock()) as aicc:
            with pytest.raises(AICCRateLimitError, match="minutes without one success"):
                await campaign.run(aicc, concurrency=1)
        assert (await campaign.report()).counts == StateCounts(pending=5)
        assert not fake.processed(MIDRESULT)  # a 429 proves nothing was processed
