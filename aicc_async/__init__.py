"""aicc-async: an asyncio SDK for Huawei Cloud AICC: voice notifications, outbound
result write-back, mobile-agent calls, called-party lookup and web-channel messages.

```python
from aicc_async import AICCClient

async with AICCClient.from_env() as aicc:
    r = await aicc.voice_notification.create(called="88880000", voice_content="$Hello$")
```
"""

from aicc_async._wire import ResponseInfo
from aicc_async.adaptive import AutoRate
from aicc_async.callbacks import (
    CallbackReceiver,
    ReleaseEvent,
    compute_signature,
    verify_signature,
)
from aicc_async.client import AICCClient
from aicc_async.config import DEFAULT_LIMITS, ClientConfig, Timeout
from aicc_async.endpoints.messaging import (
    APPLY_TOKEN_CODES,
    LEAVE_MESSAGE_CODES,
    ApplyTokenRequest,
    ApplyTokenResult,
    LeaveMessageRequest,
    LeaveMessageResult,
)
from aicc_async.endpoints.mobile_agent import (
    CREATE_CALL_CODES,
    GET_CALLED_INFO_CODES,
    CalledInfo,
    CreateCallRequest,
    CreateCallResult,
    DevType,
    GetCalledInfoRequest,
)
from aicc_async.endpoints.outbound import WRITE_BACK_CODES, WriteBackResult, WriteBackResultRequest
from aicc_async.endpoints.voice_notification import (
    VOICE_NOTIFICATION_CODES,
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
    AICCRateLimitError,
    AICCTransportError,
    AICCValidationError,
    CampaignError,
    JournalError,
    Sent,
)
from aicc_async.retry import RetryPolicy

__all__ = [
    "APPLY_TOKEN_CODES",
    "CREATE_CALL_CODES",
    "DEFAULT_LIMITS",
    "GET_CALLED_INFO_CODES",
    "LEAVE_MESSAGE_CODES",
    "VOICE_NOTIFICATION_CODES",
    "WRITE_BACK_CODES",
    "AICCAuthError",
    "AICCBusinessError",
    "AICCClient",
    "AICCConnectionError",
    "AICCError",
    "AICCHTTPError",
    "AICCOutcomeUnknownError",
    "AICCRateLimitError",
    "AICCTransportError",
    "AICCValidationError",
    "ApplyTokenRequest",
    "ApplyTokenResult",
    "AutoRate",
    "CallbackReceiver",
    "CalledInfo",
    "CampaignError",
    "ClientConfig",
    "CreateCallRequest",
    "CreateCallResult",
    "CreateVoiceNotificationRequest",
    "DevType",
    "GetCalledInfoRequest",
    "JournalError",
    "LeaveMessageRequest",
    "LeaveMessageResult",
    "ReleaseEvent",
    "ResponseInfo",
    "RetryPolicy",
    "Sent",
    "Timeout",
    "VoiceContent",
    "VoiceNotificationCode",
    "VoiceNotificationResult",
    "WriteBackResult",
    "WriteBackResultRequest",
    "compute_signature",
    "verify_signature",
]

__version__ = "0.1.0"
