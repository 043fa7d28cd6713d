"""Test helpers: :class:`FakeAICC`, an AICC simulator on 127.0.0.1, and its faults.

:class:`CalledParty` configures what the simulator's getCalledInfo answers;
:func:`peak_per_second` reads the peak request rate off arrival times.

A ``fake_aicc`` pytest fixture (needs pytest-asyncio) is provided by the
``aicc_async.testing.pytest_plugin`` plugin, registered automatically.
"""

from aicc_async.testing.fake import CalledParty, FakeAICC, Fault, RecordedRequest, SentReleaseEvent
from aicc_async.testing.rates import peak_per_second

__all__ = [
    "CalledParty",
    "FakeAICC",
    "Fault",
    "RecordedRequest",
    "SentReleaseEvent",
    "peak_per_second",
]
