"""What went wrong with one attempt: its classification and the error the caller gets.

The table (``shared/AICC-API-NOTES.md``, "What each call costs if sent twice"):

================================  =====================  ==============================
failure                           idempotent endpoints    non-idempotent endpoints
================================  =====================  ==============================
never reached AICC (DNS, refused, retried                retried
TLS, connect timeout)
HTTP 429                          retried (Retry-After)   retried (Retry-After)
voice notification retCode "1"   retried                 retried (the call was not taken)
token rejected (401, 403 auth)    token refreshed, replayed once, on every endpoint
HTTP 503, with or without         retried (Retry-After)   AICCOutcomeUnknownError, never
Retry-After                                               re-sent unless ``retry_unsafe``
timeout / reset after sending,    retried                 AICCOutcomeUnknownError, never
502, 504, 2xx that is not JSON                            re-sent unless ``retry_unsafe``
answer over max_response_bytes    not retried             AICCOutcomeUnknownError
HTTP 500, other 4xx               not retried             not retried
================================  =====================  ==============================

A proxy may add ``Retry-After`` to a 503 after it passed the request on, so only a
429 proves that a request was not processed.

Every error the request pipeline raises is built here, next to the classification
that decides it: an ``AICCConnectionError`` only when nothing can have been
processed, an ``AICCOutcomeUnknownError`` (non-idempotent) or a ``maybe_processed``
``AICCHTTPError`` (idempotent) when something may have been. A failure that may be
retried comes back wrapped in a ``RetryableAttempt`` for ``retry.Retrying``.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Protocol

import aiohttp

from aicc_async._masking import Redactor
from aicc_async._wire import ResponseInfo
from aicc_async.errors import (
    AICCBusinessError,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCRateLimitError,
    Sent,
)
from aicc_async.retry import RetryableAttempt

__all__ = [
    "Failure",
    "Failures",
    "classify_exception",
    "classify_status",
    "may_retry",
    "not_sent",
]

#: What aiohttp raises while sending a request and reading its answer.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

_REDIRECT_ADVICE = "AICC answered with a redirect, which the SDK never follows: check base_url"
_HTTP_ADVICE = {
    400: "AICC called the request incorrect: check the path and parameters",
    401: "AICC refused the authorisation: check that the app is subscribed to this service",
    403: "AICC refused the authorisation: check the app key and its permissions",
    404: "the path was not found: check base_url",
    500: "AICC reported a business failure: check the values of the request's parameters",
}
_CHECK_FIRST = "It was not sent again: check its outcome before sending it again."


class Failure(enum.Enum):
    """How one failed attempt is classified."""

    NOT_SENT = "not_sent"  # certainly never processed: safe to retry on every endpoint
    AMBIGUOUS = "ambiguous"  # may have been processed: retried only where a replay is harmless


def classify_exception(exc: BaseException) -> Failure:
    """Classify an exception raised while sending a request and reading its answer.

    Only failures to establish the connection prove the request was never sent;
    anything later (reset, timeout, truncated answer) may follow processing.
    aiohttp itself never re-sends a POST on a dropped keep-alive connection.
    """
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Failure.NOT_SENT
    return Failure.AMBIGUOUS


def classify_status(status: int) -> Failure | None:
    """Classify a non-2xx status; ``None`` means final (not retried on any endpoint).

    Only a 429 proves the request was not processed. 500 is AICC's documented
    "business failure" and 501/505 refuse the request itself; every other 5xx (502,
    503 with or without ``Retry-After``, 504, CDN codes like 524) comes from a gateway
    that may have passed the request on, so it is ambiguous.
    """
    if status == 429:
        return Failure.NOT_SENT
    if status >= 500 and status not in (500, 501, 505):
        return Failure.AMBIGUOUS
    return None


def may_retry(failure: Failure, *, idempotent: bool, retry_unsafe: bool) -> bool:
    """Whether a failure of this kind may be retried on this endpoint."""
    return failure is Failure.NOT_SENT or idempotent or retry_unsafe


def not_sent(name: str, why: str) -> AICCConnectionError:
    """A request to ``name`` that was refused before it left (a closed client or
    session, another event loop, a request aiohttp cannot build): sending it again
    as is cannot help (``retry_safe`` is ``False``)."""
    return AICCConnectionError(f"{name} was not sent: {why}", endpoint=name, retry_safe=False)


class Described(Protocol):
    """What an error needs to know of an endpoint (``_endpoint.Endpoint`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def idempotent(self) -> bool: ...
    @property
    def code_field(self) -> str: ...
    @property
    def message_field(self) -> str: ...
    @property
    def codes(self) -> Any: ...
    @property
    def retry_codes(self) -> frozenset[str]: ...


class Failures:
    """Builds the error of a failed attempt, masked by ``redactor``, and wraps it in
    a ``RetryableAttempt`` when the retry table allows another attempt.

    ``max_delay``: a ``Retry-After`` longer than this is not waited out (the error
    is raised at once, with ``retry_after`` set).
    """

    __slots__ = ("max_delay", "redactor")

    def __init__(self, redactor: Redactor, max_delay: float) -> None:
        self.redactor = redactor
        self.max_delay = max_delay

    # -- no answer -----------------------------------------------------------------------

    def no_answer(
        self, name: str, exc: BaseException, *, idempotent: bool, retry_unsafe: bool
    ) -> Exception:
        """The error for ``exc``, raised by aiohttp while sending or reading."""
        failure = classify_exception(exc)
        reason = self.redactor.mask(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
        error: AICCError
        if failure is Failure.NOT_SENT:
            error = AICCConnectionError(
                f"{name} could not reach AICC ({reason}); nothing was sent. "
                "Check base_url and the network.",
                endpoint=name,
            )
        elif idempotent:
            error = AICCOutcomeUnknownError(
                f"{name} got no answer ({reason}); sending it again is harmless.",
                endpoint=name,
                retry_safe=True,
            )
        else:
            error = AICCOutcomeUnknownError(
                f"{name} was sent but no answer came back ({reason}); AICC may have "
                f"processed it. {_CHECK_FIRST}",
                endpoint=name,
            )
        if may_retry(failure, idempotent=idempotent, retry_unsafe=retry_unsafe):
            return RetryableAttempt(error)
        return error

    @staticmethod
    def too_large(name: str, status: int, idempotent: bool, cap: int) -> AICCError:
        """An answer longer than ``max_response_bytes`` (``cap``): dropped unread and
        never retried."""
        if idempotent:
            return AICCHTTPError(
                f"{name} answered HTTP {status} with more than max_response_bytes ({cap} "
                "bytes); the answer was dropped unread and the request was not retried. "
                "Raise max_response_bytes if answers this large are expected.",
                endpoint=name,
                status=status,
                body="",
                sent=Sent.MAYBE_PROCESSED,
                retry_safe=True,
            )
        return AICCOutcomeUnknownError(
            f"{name} was sent, but its answer (HTTP {status}) is larger than "
            f"max_response_bytes ({cap} bytes) and was dropped unread; AICC may have "
            f"processed it. {_CHECK_FIRST}",
            endpoint=name,
            status=status,
        )

    # -- answers -------------------------------------------------------------------------

    def status(
        self, endpoint: Described, info: ResponseInfo, raw: bytes, retry_unsafe: bool
    ) -> Exception:
        """The error for a non-2xx answer (``info``, body ``raw``)."""
        status = info.status
        retry_after = info.retry_after
        waitable = retry_after is None or retry_after <= self.max_delay
        failure = classify_status(status)
        if failure is Failure.AMBIGUOUS:
            error: AICCError = self.ambiguous(
                endpoint, f"got HTTP {status} from the gateway", info, raw, retry_after
            )
            if waitable and may_retry(
                failure, idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe
            ):
                return RetryableAttempt(error, retry_after)
            return error
        advice = _HTTP_ADVICE.get(status, "see the body for details")
        if 300 <= status < 400:
            advice = _REDIRECT_ADVICE
        if failure is Failure.NOT_SENT:
            advice = "AICC is throttling; it did not process the request, so send it again later"
        excerpt = self.redactor.excerpt(raw)
        message = f"{endpoint.name} failed with HTTP {status}: {advice}. Body: {excerpt!r}"
        if failure is Failure.NOT_SENT:
            error = AICCRateLimitError(
                message, endpoint=endpoint.name, status=status, body=excerpt,
                retry_after=retry_after,
            )  # fmt: skip
        else:
            error = AICCHTTPError(message, endpoint=endpoint.name, status=status, body=excerpt)
        error.response = info
        if failure is Failure.NOT_SENT and waitable:
            return RetryableAttempt(error, retry_after)
        return error

    def unreadable(
        self, endpoint: Described, info: ResponseInfo, raw: bytes, retry_unsafe: bool
    ) -> Exception:
        """The error for a 2xx answer without a readable result code (not JSON,
        nested beyond reason, no code): it may have been processed."""
        error = self.ambiguous(
            endpoint,
            f"answered HTTP {info.status} without a readable {endpoint.code_field}",
            info,
            raw,
        )
        if may_retry(Failure.AMBIGUOUS, idempotent=endpoint.idempotent, retry_unsafe=retry_unsafe):
            return RetryableAttempt(error)
        return error

    def refused(
        self, endpoint: Described, info: ResponseInfo, raw: bytes, body: dict[str, Any], code: str
    ) -> Exception:
        """The error for a 2xx answer with the non-zero result ``code``; a "busy, try
        again later" code may be retried."""
        body = self.redactor.masked_body(raw, body)
        description = body.get(endpoint.message_field)
        description = None if description is None else str(description)
        meaning = endpoint.codes.get(code)
        explained = f" ({meaning})" if meaning else ""
        said = f": {description}" if description else ""
        busy = code in endpoint.retry_codes
        error = AICCBusinessError(
            f"{endpoint.name} was refused with {endpoint.code_field} {code}{explained}{said}",
            endpoint=endpoint.name,
            code=code,
            description=description,
            meaning=meaning,
            raw=body,
            retry_safe=busy,
            status=info.status,
        )
        error.response = info
        return RetryableAttempt(error) if busy else error

    def ambiguous(
        self,
        endpoint: Described,
        what: str,
        info: ResponseInfo,
        raw: bytes,
        retry_after: float | None = None,
    ) -> AICCError:
        """An answer that does not say whether AICC processed the request: harmless
        to send again on an idempotent endpoint, an outcome unknown on the others."""
        excerpt = self.redactor.excerpt(raw)
        error: AICCError
        if endpoint.idempotent:
            shown = f"Body: {excerpt!r}" if raw else "No body shown."
            error = AICCHTTPError(
                f"{endpoint.name} {what}; sending it again is harmless. {shown}",
                endpoint=endpoint.name,
                status=info.status,
                body=excerpt,
                sent=Sent.MAYBE_PROCESSED,
                retry_safe=True,
                retry_after=retry_after,
            )
        else:
            error = AICCOutcomeUnknownError(
                f"{endpoint.name} {what} ({f'body: {excerpt!r}' if raw else 'no body shown'}); "
                f"AICC may have processed it. {_CHECK_FIRST}",
                endpoint=endpoint.name,
                status=info.status,
                retry_after=retry_after,
            )
        error.response = info
        return error

    def token_answer(self, error: AICCError, status: int) -> Exception:
        """A tokenByAkSk answer ``auth`` refused with ``error``: a 429 or a gateway's
        5xx is retried (within ``max_delay``); anything else is final."""
        retry_after = error.retry_after
        if classify_status(status) is not None and (
            retry_after is None or retry_after <= self.max_delay
        ):
            return RetryableAttempt(error, retry_after)
        return error
