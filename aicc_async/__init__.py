"""aicc-async: an asyncio SDK for Huawei Cloud AICC.

```python
from aicc_async import AICCClient

async with AICCClient.from_env() as aicc:
    r = await aicc.voice_notification.create(called="88880000", voice_content="$Hello$")
```
"""

from aicc_async.client import AICCClient
from aicc_async.config import DEFAULT_LIMITS, ClientConfig, Timeout
from aicc_async.endpoints.voice_notification import (
    CreateVoiceNotificationRequest,
    VoiceContent,
    VoiceNotificationCode,
    VoiceNotificationResult,
)
from aicc_async.errors import (
    AICCAuthError,
    AICCBusinessError,
    AICCConnectionError,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    AICCValidationError,
)
from aicc_async.retry import RetryPolicy

__all__ = [
    "DEFAULT_LIMITS",
    "AICCAuthError",
    "AICCBusinessError",
    "AICCClient",
    "AICCConnectionError",
    "AICCError",
    "AICCHTTPError",
    "AICCOutcomeUnknownError",
    "AICCValidationError",
    "ClientConfig",
    "CreateVoiceNotificationRequest",
    "RetryPolicy",
    "Timeout",
    "VoiceContent",
    "VoiceNotificationCode",
    "VoiceNotificationResult",
]

__version__ = "0.1.0.dev0"
