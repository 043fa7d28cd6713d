"""Every default of the client, in one place (``client.py``, ``config.py`` and
``retry.py`` import them; the option table of docs/guides/async-services.md quotes
them)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: The path of tokenByAkSk below ``token_url`` (or ``base_url``).
TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"  # noqa: S105 - a path, not a secret

#: AccessToken lifetime asked for, seconds (``X-Token-Expire``; 60..3600).
DEFAULT_TOKEN_TTL = 600

#: Per-attempt time limits, seconds: the whole attempt, and getting a connection.
DEFAULT_TIMEOUT_TOTAL = 15.0
DEFAULT_TIMEOUT_CONNECT = 5.0

#: Connections in the pool (all hosts).
DEFAULT_MAX_CONNECTIONS = 100

#: The endpoint groups, each with its own in-flight limit.
GROUPS = ("voice_notification", "outbound", "mobile_agent", "messaging")

#: Requests of a group on the wire at once, unless ``limits=`` says otherwise.
DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType(
    {"voice_notification": 50, "outbound": 50, "mobile_agent": 20, "messaging": 20}
)

#: The largest answer read, in bytes after decompression (1 MiB).
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20

#: ``RetryPolicy()``: sends of one request at most, first back-off ceiling, ceiling of
#: any wait, and the time after which no new attempt starts (seconds).
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BASE_DELAY = 0.25
DEFAULT_MAX_DELAY = 8.0
DEFAULT_MAX_ELAPSED = 60.0

#: The client-wide retry budget (botocore's ``RetryQuota`` numbers): its capacity, what
#: one retry costs, and what a success at the first attempt gives back. 500 / 5 = 100
#: retries in a row with no success between them.
DEFAULT_RETRY_BUDGET = 500
RETRY_COST = 5
SUCCESS_REFUND = 1

#: The locale ``leave_message`` applies for ccmessaging-tokens with.
DEFAULT_MESSAGING_LOCALE = "en"

#: What happens when ``redis_url``'s Redis is unreachable: ``"fail"`` (raise
#: ``AICCConnectionError``, nothing sent) or ``"local"`` (this process's own state).
DEFAULT_REDIS_FALLBACK = "fail"
