"""The exception hierarchy. Every error names the endpoint it came from.

```
AICCError
 +- AICCValidationError (also ValueError)  bad input, nothing was sent
 +- AICCAuthError                          tokenByAkSk / applyToken refused the credentials
 +- AICCHTTPError                          non-2xx answer: .status, .body (text), .endpoint
 +- AICCBusinessError                      2xx with a non-zero result code
 +- AICCConnectionError                    the request never reached AICC (safe to retry)
 |   +- AICCOutcomeUnknownError            it may have been processed; not re-sent
 +- CampaignError                          a bulk campaign's journal or input is unusable
```

No message, attribute or ``repr`` of these errors holds the app secret or a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aicc_async._transport import ResponseInfo

__all__ = [
    "AICCAuthError",
    "AICCBusinessError",
    "AICCConnectionError",
    "AICCError",
    "AICCHTTPError",
    "AICCOutcomeUnknownError",
    "AICCValidationError",
    "CampaignError",
    "JournalError",
]


class AICCError(Exception):
    """Base class of every error the SDK raises on purpose.

    ``endpoint`` is the AICC interface name (``"createVoiceNotification"``), or
    ``None`` when the error is not tied to one call (configuration). ``response``
    and ``request_id`` describe the HTTP answer, when there was one.
    """

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        #: The HTTP answer this error came from (status, masked headers, request id),
        #: or ``None`` when no answer came back.
        self.response: ResponseInfo | None = None

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
        super().__init__(message, endpoint=endpoint)
        self.field = field


class AICCAuthError(AICCError):
    """AICC refused the app key / secret, or rejected a freshly issued token.

    ``status`` is the HTTP status (``None`` when the answer was not HTTP-level) and
    ``reason`` the server's own words, with any secret masked. Nothing was processed.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status
        self.reason = reason


class AICCHTTPError(AICCError):
    """AICC or a gateway answered with a non-2xx status (or a 2xx that was not JSON).

    ``status`` is the HTTP status and ``body`` a short excerpt of the answer's text.
    """

    def __init__(self, message: str, *, endpoint: str | None, status: int, body: str) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status
        self.body = body


class AICCBusinessError(AICCError):
    """AICC answered 2xx but refused the request.

    ``code`` is the result code as a string (``"16"``), ``meaning`` its documented
    meaning (``None`` if undocumented), ``description`` the server's message and
    ``raw`` the response body as received.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None,
        code: str,
        description: str | None,
        meaning: str | None,
        raw: Mapping[str, Any],
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.code = code
        self.description = description
        self.meaning = meaning
        self.raw = raw


class AICCConnectionError(AICCError):
    """The request never reached AICC (DNS, refused connection, TLS, connect timeout).

    Nothing was processed, so sending it again is safe; the SDK already retried it
    as often as the retry policy allows. Careful: ``AICCOutcomeUnknownError`` is a
    subclass and is *not* safe to re-send; catch it first.
    """


class AICCOutcomeUnknownError(AICCConnectionError):
    """The request was sent but no usable answer came back (timeout, reset, 502/503/504).

    AICC may have processed it. For a voice notification that means the person may
    already be being called: check before sending it again. The SDK does not re-send
    non-idempotent requests unless the call passed ``retry_unsafe=True``.
    ``status`` is the HTTP status when a gateway answered, else ``None``.
    """

    def __init__(self, message: str, *, endpoint: str | None, status: int | None = None) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status


class CampaignError(AICCError):
    """A bulk campaign cannot go on: its journal or its input is unusable.

    Raised before anything more is sent: the journal cannot be opened or created,
    belongs to another kind of campaign, is in use by another process, or the input
    file is unreadable or gives a key a different row than the journal holds. The
    message says which and what to do; the journal is left consistent.
    """


class JournalError(CampaignError):
    """A campaign journal could not be read or written (a damaged file, a full disk).

    The rows it recorded before are kept as they were; nothing more was sent. Check
    the disk and the file, then run the same command again.
    """
