"""What the SDK's per-request DEBUG lines say about the request in hand beyond the
request itself: its attempt number (set by the retry loop) and, in a campaign, the key
of the row being sent (set by the campaign engine).

Context variables: each task sees its own values (a campaign sends each row in a task
of its own), and nothing is kept between calls.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["ATTEMPT", "ROW"]

#: The attempt of the request being made: 1, then 2, 3... for its retries.
ATTEMPT: ContextVar[int] = ContextVar("aicc_async_attempt", default=1)
#: The key of the campaign row whose request is being sent (``None`` outside one).
ROW: ContextVar[str | None] = ContextVar("aicc_async_row", default=None)
