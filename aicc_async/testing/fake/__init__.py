"""FakeAICC, laid out as :mod:`aicc_async.endpoints` is.

:mod:`.server` holds :class:`FakeAICC` (routing, recording, stats, latency, lifecycle);
one module per AICC service answers its requests (:mod:`.tokens`,
:mod:`.voice_notification`, :mod:`.messaging`, :mod:`.mobile_agent`, :mod:`.outbound`);
:mod:`.faults` holds :class:`Fault`, the fault queue and seeded chaos;
:mod:`.release_events` posts release events; :mod:`.cli` is ``python -m aicc_async.testing``.
"""

from aicc_async.testing.fake.faults import Fault
from aicc_async.testing.fake.mobile_agent import CalledParty
from aicc_async.testing.fake.release_events import SentReleaseEvent
from aicc_async.testing.fake.server import FakeAICC, RecordedRequest

__all__ = ["CalledParty", "FakeAICC", "Fault", "RecordedRequest", "SentReleaseEvent"]
