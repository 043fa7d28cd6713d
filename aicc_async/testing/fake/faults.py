"""FakeAICC's faults: the :class:`Fault` kinds, the queue of injected faults, seeded chaos,
and the answers a fault gives (gateway HTML pages, 429, 500, busy bodies).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping, Sequence
from typing import Final

import attrs
from aiohttp import web

from aicc_async.testing.fake import messaging, mobile_agent, outbound, tokens, voice_notification

__all__ = ["Chaos", "Fault", "FaultSpec", "busy", "html", "http_429", "http_500", "pick"]

DEFAULT_LATENCY: Final = 0.5

_BUSY_DESC: Final = voice_notification.RET_MSGS["1"]

_BUSY_BODIES: Final[Mapping[str, Mapping[str, str]]] = {
    voice_notification.ENDPOINT: {"retCode": "1", "retMsg": _BUSY_DESC},
    mobile_agent.CALLED_INFO: {"retCode": "1", "retMsg": _BUSY_DESC},
    outbound.MIDRESULT: {"result": "1", "resultDesc": _BUSY_DESC},
    messaging.APPLY_TOKEN: {"resultCode": "1", "resultDesc": _BUSY_DESC},
    messaging.LEAVE_MESSAGE: {"resultCode": "1", "resultDesc": _BUSY_DESC},
    mobile_agent.CREATE_CALL: {"resultCode": "1", "resultDesc": _BUSY_DESC},
}

_HTML_REASONS: Final[Mapping[int, str]] = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class Fault(enum.Enum):
    """A misbehaviour FakeAICC can apply to one request.

    "Processed" means the fake did the thing (issued a token, placed the call, saved
    the message, created the call task, answered the look-up, wrote the result back)
    before misbehaving, so a retry would do it twice.
    """

    LATENCY = "latency"
    """Wait ``delay`` seconds (default 0.5), then answer normally."""
    HANG = "hang"
    """Never answer, never process; drop the connection on close() or after ``delay``."""
    RESET_AFTER_PROCESSING = "reset_after_processing"
    """Process the request, then abort the TCP connection without any response."""
    RESET_BEFORE_PROCESSING = "reset_before_processing"
    """Abort the TCP connection without processing."""
    HTTP_500 = "http_500"
    """HTTP 500 with a small JSON body; not processed."""
    HTML_502 = "html_502"
    """Process, then answer 502 with an openresty HTML page (the ambiguous case)."""
    HTML_503 = "html_503"
    """Not processed; 503 HTML page, with ``Retry-After`` when ``retry_after`` is given."""
    HTML_503_AFTER_PROCESSING = "html_503_after_processing"
    """Process, then answer 503 with an openresty HTML page and ``Retry-After``
    (``retry_after`` seconds, default 0): a proxy that passed the request on and then
    reported itself unavailable. The client cannot tell it from HTML_503."""
    HTML_504 = "html_504"
    """Process, then answer 504 with an openresty HTML page."""
    HTTP_429 = "http_429"
    """Not processed; 429 JSON body, with ``Retry-After`` when ``retry_after`` is given."""
    BUSY = "busy"
    """Not processed; HTTP 200 with the endpoint's own code field set to ``"1"``.

    ``{"retCode": "1", "retMsg": ...}`` for createVoiceNotification and getCalledInfo,
    ``{"resultCode": "1", "resultDesc": ...}`` for applyToken, doLeaveMessage and
    createcall, ``{"result": "1", "resultDesc": ...}`` for midresult.
    """
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - not a secret
    """Not processed; answered exactly like a request with an expired token."""


@attrs.frozen
class FaultSpec:
    """One fault to give: to requests to ``endpoint`` (None: any business endpoint)."""

    fault: Fault
    endpoint: str | None
    delay: float | None
    retry_after: float | None

    def matches(self, endpoint: str) -> bool:
        """Whether a request to ``endpoint`` takes this fault."""
        if self.endpoint is None:
            return endpoint != tokens.ENDPOINT
        return self.endpoint == endpoint


@attrs.define
class Chaos:
    """Random faults with a fixed seed: one ``random()`` per matching request, then
    ``choice(faults)`` when it is below ``probability``."""

    rng: random.Random
    probability: float
    faults: tuple[Fault, ...]
    endpoint: str | None
    delay: float | None
    retry_after: float | None

    @classmethod
    def seeded(
        cls,
        seed: int,
        probability: float,
        faults: Sequence[Fault],
        endpoint: str | None,
        delay: float | None,
        retry_after: float | None,
    ) -> Chaos:
        """Check the arguments (ValueError, TypeError) and seed the generator."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {probability!r}")
        chosen = tuple(faults)
        if not chosen:
            raise ValueError("faults must not be empty")
        for fault in chosen:
            if not isinstance(fault, Fault):
                raise TypeError(f"faults must hold Fault members, got {fault!r}")
        rng = random.Random(seed)  # noqa: S311 - deterministic fault choice, not security
        return cls(rng, probability, chosen, endpoint, delay, retry_after)

    def draw(self, endpoint: str) -> FaultSpec | None:
        """The fault a request to ``endpoint`` gets, if any."""
        if self.endpoint is None:
            if endpoint == tokens.ENDPOINT:
                return None
        elif self.endpoint != endpoint:
            return None
        if self.rng.random() >= self.probability:
            return None
        fault = self.rng.choice(self.faults)
        return FaultSpec(fault, self.endpoint, self.delay, self.retry_after)


def pick(queued: list[FaultSpec], chaos: Chaos | None, endpoint: str) -> FaultSpec | None:
    """Take the first queued fault matching ``endpoint`` (FIFO), else draw from ``chaos``."""
    for i, spec in enumerate(queued):
        if spec.matches(endpoint):
            del queued[i]
            return spec
    return chaos.draw(endpoint) if chaos is not None else None


def check_non_negative(name: str, value: float | None) -> None:
    """ValueError unless ``value`` is None or >= 0."""
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _retry_after_header(retry_after: float | None) -> dict[str, str]:
    if retry_after is None:
        return {}
    value = float(retry_after)
    return {"Retry-After": str(int(value)) if value.is_integer() else repr(value)}


def html(status: int, retry_after: float | None) -> web.Response:
    """An openresty gateway page (502, 503 or 504), with ``Retry-After`` when given."""
    title = f"{status} {_HTML_REASONS[status]}"
    page = (
        "<html>\r\n"
        f"<head><title>{title}</title></head>\r\n"
        "<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n"
        "<hr><center>openresty</center>\r\n"
        "</body>\r\n"
        "</html>\r\n"
    )
    headers = {"Server": "openresty", **_retry_after_header(retry_after)}
    return web.Response(status=status, text=page, content_type="text/html", headers=headers)


def http_500() -> web.Response:
    """HTTP 500 with a small JSON body."""
    return web.json_response(
        {"error_code": "AICC.0500", "error_msg": "Internal server error"}, status=500
    )


def http_429(retry_after: float | None) -> web.Response:
    """The gateway's throttling answer, with ``Retry-After`` when given."""
    return web.json_response(
        {"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached"},
        status=429,
        headers=_retry_after_header(retry_after),
    )


def busy(endpoint: str) -> web.Response:
    """HTTP 200 with ``endpoint``'s own code field set to ``"1"``."""
    return web.json_response(dict(_BUSY_BODIES[endpoint]))
