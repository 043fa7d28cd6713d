"""What each kind of campaign sends (:data:`KINDS`): making another endpoint
bulk-capable is one entry here (its CSV format follows from the request's fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import attrs

from aicc_async._numbers import normalise_number
from aicc_async.bulk.engine import Kind
from aicc_async.endpoints.outbound import WRITE_BACK
from aicc_async.endpoints.voice_notification import ENDPOINT as VOICE

__all__ = ["KINDS", "CampaignKind"]

CampaignKind = Literal["voice_notification", "write_back"]

#: What each kind of campaign sends: the endpoint descriptor and the campaign's extras.
#: Making another endpoint bulk-capable is one entry here (its CSV format follows).
KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            name="voice_notification",
            endpoint=VOICE,
            send=lambda aicc, request: aicc.voice_notification.send(request),
            reference=lambda result: result.call_serial_no,
            number=lambda request: normalise_number(request.called),
            with_callback=lambda request, url: (
                request if request.callback_url else attrs.evolve(request, callback_url=url)
            ),
        ),
        Kind(
            name="write_back",
            endpoint=WRITE_BACK,
            send=lambda aicc, request: aicc.outbound.send(request),
            reference=lambda result: None,
            number=lambda request: None,
        ),
    )
}
assert set(KINDS) == set(get_args(CampaignKind))
