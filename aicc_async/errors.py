"""The exception hierarchy. Every error names the endpoint it came from.

```
AICCError
 +- AICCValidationError (also ValueError)  bad input, nothing was sent
 +- AICCAuthError                          tokenByAkSk / applyToken refused the credentials
 +- AICCHTTPError                          non-2xx answer: .status, .body (text), .endpoint
 |   +- AICCRateLimitError                 HTTP 429: not processed; .retry_after
 +- AICCBusinessError                      2xx with a non-zero result code
 +- AICCTransportError                     no usable answer came back
 |   +- AICCConnectionError                the request never reached AICC (safe to retry)
 |   +- AICCOutcomeUnknownError            it may have been processed; not re-sent
 +- CampaignError                          a bulk campaign's input or options are unusable
 +- JournalError                           a campaign journal cannot be read or written
```

``AICCOutcomeUnknownError`` is deliberately not an ``AICCConnectionError``: code that
catches ``AICCConnectionError`` to send again never re-sends a request that may
have been processed. Catch ``AICCTransportError`` for both.

Every error also says what became of the request, whatever its class (stripe's
``should_retry``, openai's ``.response``): ``sent`` (a :class:`Sent`),
``retry_safe``, ``retry_after``, ``status`` and ``headers``.

No message, attribute or ``repr`` of these errors holds the app secret or a token.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from aicc_async._wire import ResponseInfo

__all__ = [
    "AICCAuthError",
    "AICCBusinessError",
    "AICCConnectionError",
    "AICCError",
    "AICCHTTPError",
    "AICCOutcomeUnknownError",
    "AICCRateLimitError",
    "AICCTransportError",
    "AICCValidationError",
    "CampaignError",
    "JournalError",
    "Sent",
]


class Sent(str, enum.Enum):
    """What became of the request an error is about (equal to its string value).

    ``NOT_SENT`` (``"not_sent"``): it never reached AICC's service, so nothing was
    processed: bad input, a closed client, no token, a connection never made, or an
    answer that proves it was turned away unread (HTTP 429, a rejected token).
    ``MAYBE_PROCESSED`` (``"maybe_processed"``): it left, and no usable answer came
    back (a timeout or reset after sending, a gateway's 502/503/504, an unreadable
    or oversized answer): AICC may have carried it out.
    ``ANSWERED`` (``"answered"``): AICC answered it with a refusal (a non-zero result
    code, HTTP 500 or another 4xx): it was not carried out.
    """

    NOT_SENT = "not_sent"
    MAYBE_PROCESSED = "maybe_processed"
    ANSWERED = "answered"


def invalid(field: str, message: str, *, endpoint: str | None = None) -> AICCValidationError:
    """The error for a bad ``field`` (``"field: message"``), for ``endpoint`` if given."""
    return AICCValidationError(f"{field}: {message}", field=field, endpoint=endpoint)


def masked_url(url: str) -> str:
    """``url`` as messages and reprs may show it: any ``user:password@`` becomes ``***@``."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an ``int`` or a ``float`` (a ``bool`` is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` (a ``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_flag(field: str, value: object, *, endpoint: str | None = None) -> bool:
    """``value`` if it is ``True`` or ``False``; the error for a bad ``field`` else."""
    if not isinstance(value, bool):
        raise invalid(field, f"must be True or False, got {value!r}", endpoint=endpoint)
    return value


def check_positive(
    field: str,
    value: object,
    what: str = "a number of seconds",
    *,
    finite: bool = True,
    also: str = "",
) -> float:
    """``value`` as a float if it is a number > 0 (and finite, unless ``finite=False``);
    the error for a bad ``field`` else, saying it must be ``what`` > 0 (or ``also``)."""
    if not is_number(value) or not (value > 0 and (math.isfinite(value) or not finite)):
        raise invalid(field, f"must be {what} > 0{also and ' or ' + also}, got {value!r}")
    return float(value)


class AICCError(Exception):
    """Base class of every error the SDK raises on purpose.

    ``endpoint`` is the AICC interface name (``"createVoiceNotification"``), or
    ``None`` when the error is not tied to one call (configuration). ``response``
    and ``request_id`` describe the HTTP answer, when there was one.

    What became of the request:

    - ``sent``: a :class:`Sent`: ``"not_sent"``, ``"maybe_processed"`` or ``"answered"``.
    - ``retry_safe``: sending the same request again later is harmless and may
      succeed: it was not processed for a passing reason (no connection, HTTP 429,
      AICC busy, no token), or it may have been processed by an interface where a
      replay is harmless. ``False`` for refusals that would repeat (bad input,
      rejected credentials, a business refusal, HTTP 4xx/500) and for a request
      that may have phoned someone, created a call task or left a message.
    - ``retry_after``: seconds AICC asked to wait (``Retry-After``), if it said.
    - ``status``: the HTTP status of the answer, ``None`` when none came back.
    - ``headers``: that answer's headers with credentials masked, or ``None``.
    """

    #: Defaults of each class; the SDK sets them per error where they differ.
    sent: Sent = Sent.NOT_SENT
    retry_safe: bool = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        sent: Sent | None = None,
        retry_safe: bool | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        if sent is not None:
            self.sent = sent
        if retry_safe is not None:
            self.retry_safe = retry_safe
        self.retry_after = retry_after
        self.status = status
        #: The HTTP answer this error came from (status, masked headers, request id),
        #: or ``None`` when no answer came back.
        self.response: ResponseInfo | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str] | None:
        """The answer's headers, credentials masked; ``None`` when no answer came back."""
        return None if self.response is None else self.response.headers

    @property
    def request_id(self) -> str | None:
        """The request/trace id AICC sent with the answer (``X-Request-Id``), if any."""
        return None if self.response is None else self.response.request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, endpoint={self.endpoint!r})"


class AICCValidationError(AICCError, ValueError):
    """The input was refused before anything was sent. ``field`` names the bad argument."""

    def __init__(
        self, message: str, *, field: str | None = None, endpoint: str | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint, sent=Sent.NOT_SENT, retry_safe=False)
        self.field = field


class AICCAuthError(AICCError):
    """AICC refused the app key / secret, or rejected a freshly issued token.

    ``status`` is the HTTP status (``None`` when the answer was not HTTP-level) and
    ``reason`` the server's own words, with any secret masked. Nothing was processed
    (``sent`` is ``"not_sent"``); sending again fails the same way until the
    credentials are fixed (``retry_safe`` is ``False``).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(
            message, endpoint=endpoint, status=status, sent=Sent.NOT_SENT, retry_safe=False
        )
        self.reason = reason


class AICCHTTPError(AICCError):
    """AICC or a gateway answered with a non-2xx status (or a 2xx that was not JSON).

    ``status`` is the HTTP status and ``body`` a short excerpt of the answer's text.
    By default AICC refused it (``sent="answered"``, not ``retry_safe``); a gateway's
    502/503/504 on an interface where a replay is harmless is ``"maybe_processed"``
    and ``retry_safe``.
    """

    sent = Sent.ANSWERED

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None,
        status: int,
        body: str,
        sent: Sent | None = None,
        retry_safe: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            endpoint=endpoint,
            status=status,
            sent=sent,
            retry_safe=retry_safe,
            retry_after=retry_after,
        )
        self.status: int = status
        self.body = body


class AICCRateLimitError(AICCHTTPError):
    """HTTP 429: AICC is throttling and did not process the request (``sent`` is
    ``"not_sent"``, ``retry_safe``); ``retry_after`` is how long it asked to wait,
    if it said. Raised once the retry policy's attempts (or its budget) ran out.
    """

    sent = Sent.NOT_SENT
    retry_safe = True


class AICCBusinessError(AICCError):
    """AICC answered 2xx but refused the request.

    ``code`` is the result code as a string (``"16"``), ``meaning`` its documented
    meaning (``None`` if undocumented), ``description`` the server's message and
    ``raw`` the response body as received. ``sent`` is ``"answered"``;
    ``retry_safe`` only for a "busy, try again later" code (voice notification "1").
    """

    sent = Sent.ANSWERED

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None,
        code: str,
        description: str | None,
        meaning: str | None,
        raw: Mapping[str, Any],
        retry_safe: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, retry_safe=retry_safe, status=status)
        self.code = code
        self.description = description
        self.meaning = meaning
        self.raw = raw


class AICCTransportError(AICCError):
    """No usable answer came back: the parent of :class:`AICCConnectionError` (the
    request never reached AICC, safe to send again) and
    :class:`AICCOutcomeUnknownError` (it may have been processed: check first).

    Catch this class to handle both alike (to log, say); read ``sent`` and
    ``retry_safe`` before sending the request again.
    """


class AICCConnectionError(AICCTransportError):
    """The request never reached AICC (DNS, refused connection, TLS, connect timeout,
    no token, a closed client).

    Nothing was processed (``sent`` is ``"not_sent"``); the SDK already retried it
    as often as the retry policy allows. ``retry_safe`` says whether sending it again
    later can help (``False`` for a closed client or a request that cannot be built).
    A request that may have been processed is never an ``AICCConnectionError``: it
    is an :class:`AICCOutcomeUnknownError`, a sibling of this class.
    """

    sent = Sent.NOT_SENT
    retry_safe = True


class AICCOutcomeUnknownError(AICCTransportError):
    """The request was sent but no usable answer came back (timeout, reset, 502/503/504).

    AICC may have processed it. For a voice notification that means the person may
    already be being called: check before sending it again. The SDK does not re-send
    non-idempotent requests unless the call passed ``retry_unsafe=True``.
    ``status`` is the HTTP status when a gateway answered, else ``None``.
    ``sent`` is ``"maybe_processed"``; ``retry_safe`` only on an interface where a
    replay is harmless (the SDK then already retried it as often as allowed).
    """

    sent = Sent.MAYBE_PROCESSED
    retry_safe = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None,
        status: int | None = None,
        retry_safe: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            endpoint=endpoint,
            status=status,
            sent=Sent.MAYBE_PROCESSED,
            retry_safe=retry_safe,
            retry_after=retry_after,
        )


class CampaignError(AICCError):
    """A bulk campaign cannot go on: its input, its target or its options are unusable.

    Raised before anything more is sent: the journal given cannot be used for this
    campaign (missing, another kind of campaign, another target, in use by another
    process), or the input file is unreadable or gives a key a different row than
    the journal holds. The message says which and what to do; the journal is left
    consistent. A journal that cannot be read or written at all raises
    :class:`JournalError`, a sibling of this class.
    """

    retry_safe = False


class JournalError(AICCError):
    """A campaign journal could not be read or written (a damaged file, a full disk).

    The rows it recorded before are kept as they were; nothing more was sent. Check
    the disk and the file, then run the same command again.
    """

    retry_safe = False
