"""Wire format and decoding of createVoiceNotification, with HTTP mocked by aioresponses."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aioresponses import aioresponses
from yarl import URL

from aicc_async import (
    AICCAuthError,
    AICCBusinessError,
    AICCClient,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    RetryPolicy,
    VoiceContent,
    VoiceNotificationCode,
)

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
SECRET = "s3cr3t-app-secret"
TOKEN_BODY = {
    "AccessToken": "tok-123",
    "ApplyType": "Bearer",
    "CreateTime": "1545650171",
    "Expires": "600",
    "Scope": "s",
    "AppKey": "key-1",
    "UserID": "Anonymous",
}


@pytest_asyncio.fixture
async def aicc() -> AsyncIterator[AICCClient]:
    async with AICCClient(
        BASE, "key-1", SECRET, retry=RetryPolicy(base_delay=0.001, max_delay=0.01)
    ) as client:
        yield client


@pytest.fixture
def http() -> Any:
    with aioresponses() as mock:
        yield mock


def sent(http: Any, url: str) -> list[Any]:
    return list(http.requests.get(("POST", URL(url)), []))


@pytest.mark.asyncio
async def test_request_wire_body_and_headers(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, payload={"result": {"callSerialNo": "1182"}, "retCode": "0"})

    content = VoiceContent().voice("1133999").text("Tom").voice("2225149")
    result = await aicc.voice_notification.create(
        called="88880000",
        voice_content=content,
        caller_present="95599",
        callback_url="https://cb.example.com/release?x&y",
        priority=3,
    )

    assert result.call_serial_no == "1182"
    (token_call,) = sent(http, TOKEN_URL)
    assert json.loads(token_call.kwargs["data"]) == {"app_key": "key-1", "app_secret": SECRET}
    assert token_call.kwargs["headers"]["X-Token-Expire"] == "600"
    (call,) = sent(http, VOICE_URL)
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == "Bearer tok-123"
    assert headers["X-APP-Key"] == "key-1"
    assert headers["Content-Type"] == "application/json"
    body = json.loads(call.kwargs["data"])
    assert body == {
        "called": "88880000",
        "voiceContent": "1133999~$Tom$~2225149",
        "callerPresent": "95599",
        "callBackUrl": base64.b64encode(b"https://cb.example.com/release?x&y").decode(),
        "priority": "3",
    }


@pytest.mark.asyncio
async def test_optional_fields_are_omitted_not_null(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, payload={"result": {"callSerialNo": "1"}, "retCode": "0"})

    await aicc.voice_notification.create(called="88880000", voice_content="$Hello$")

    (call,) = sent(http, VOICE_URL)
    assert json.loads(call.kwargs["data"]) == {"called": "88880000", "voiceContent": "$Hello$"}


@pytest.mark.parametrize(
    ("answer", "serial"),
    [
        ({"result": {"callSerialNo": "11827"}, "retCode": "0", "retMsg": "ok"}, "11827"),
        ({"result": {"callSerialNo": 11827}, "retCode": 0}, "11827"),  # numbers, not strings
        ({"retCode": "0"}, None),  # result missing
        ({"result": None, "retCode": "0"}, None),
        ({"result": "garbage", "retCode": 0.0}, None),
    ],
)
@pytest.mark.asyncio
async def test_success_decoding_tolerates_types_and_missing_fields(
    aicc: AICCClient, http: Any, answer: dict[str, Any], serial: str | None
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, payload=answer)

    result = await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    assert result.call_serial_no == serial
    assert result.raw == answer


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode(),
        lambda text: b"\xef\xbb\xbf" + text.encode(),  # UTF-8 with a byte-order mark
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-32-le"),
    ],
    ids=["utf-8", "utf-8 BOM", "utf-16", "utf-32-le"],
)
@pytest.mark.asyncio
async def test_success_bodies_in_every_encoding_json_allows_are_read(
    aicc: AICCClient, http: Any, encode: Any
) -> None:
    answer = {"result": {"callSerialNo": "11827"}, "retCode": "0", "retMsg": "已受理"}
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, body=encode(json.dumps(answer, ensure_ascii=False)))

    result = await aicc.voice_notification.create(called="88880000", voice_content="$您好$")

    assert result.call_serial_no == "11827"
    assert result.raw == answer
    assert json.loads(sent(http, VOICE_URL)[0].kwargs["data"])["voiceContent"] == "$您好$"


@pytest.mark.parametrize("code", [16, "16"])
@pytest.mark.asyncio
async def test_refusing_ret_code_is_a_business_error_with_string_code(
    aicc: AICCClient, http: Any, code: object
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    answer = {"retCode": code, "retMsg": "called not in trustlist"}
    http.post(VOICE_URL, payload=answer)

    with pytest.raises(AICCBusinessError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    err = caught.value
    assert err.code == "16" == VoiceNotificationCode.CALLED_NOT_TRUSTLISTED
    assert err.description == "called not in trustlist"
    assert err.meaning == VoiceNotificationCode.CALLED_NOT_TRUSTLISTED.meaning
    assert err.endpoint == "createVoiceNotification"
    assert err.raw == answer
    assert "trustlist" in str(err)
    assert len(sent(http, VOICE_URL)) == 1


def test_every_documented_code_has_a_meaning() -> None:
    documented = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "16", "36"}
    assert {c.value for c in VoiceNotificationCode} == documented
    assert all(c.meaning for c in VoiceNotificationCode)


@pytest.mark.asyncio
async def test_html_gateway_page_is_reported_not_a_json_crash(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    page = "<html><head><title>502 Bad Gateway</title></head><body>openresty</body></html>"
    http.post(VOICE_URL, status=502, body=page, content_type="text/html")

    with pytest.raises(AICCOutcomeUnknownError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    assert caught.value.status == 502
    assert "502 Bad Gateway" in str(caught.value)
    assert len(sent(http, VOICE_URL)) == 1


@pytest.mark.asyncio
async def test_http_500_is_a_business_failure_not_retried(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=500, body="<html>Internal error</html>", content_type="text/html")

    with pytest.raises(AICCHTTPError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    assert caught.value.status == 500
    assert caught.value.body == "Internal error"
    assert "check the values" in str(caught.value)
    assert len(sent(http, VOICE_URL)) == 1


@pytest.mark.asyncio
async def test_2xx_without_json_is_an_unknown_outcome(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=200, body="<html>hello</html>", content_type="text/html")

    with pytest.raises(AICCOutcomeUnknownError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    assert caught.value.status == 200
    assert len(sent(http, VOICE_URL)) == 1


@pytest.mark.asyncio
async def test_refused_credentials_raise_auth_error_without_the_secret(
    aicc: AICCClient, http: Any
) -> None:
    # A hostile or buggy server echoing the secret must not leak it into the error.
    http.post(TOKEN_URL, status=401, payload={"error_msg": f"bad secret {SECRET}"})

    with pytest.raises(AICCAuthError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    err = caught.value
    assert err.status == 401
    assert err.endpoint == "tokenByAkSk"
    assert "bad secret ***" in (err.reason or "")
    assert SECRET not in str(err) + repr(err) + (err.reason or "")
    assert sent(http, VOICE_URL) == []


@pytest.mark.asyncio
async def test_token_answer_without_access_token_is_an_auth_error(
    aicc: AICCClient, http: Any
) -> None:
    http.post(TOKEN_URL, payload={"Expires": "600"})

    with pytest.raises(AICCAuthError, match="without a usable AccessToken"):
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    assert sent(http, VOICE_URL) == []


@pytest.mark.asyncio
async def test_token_url_override_is_used(http: Any) -> None:
    http.post("https://aicc.test:28070/apigovernance/api/oauth/tokenByAkSk", payload=TOKEN_BODY)
    http.post(VOICE_URL, payload={"result": {"callSerialNo": "9"}, "retCode": "0"})

    async with AICCClient(BASE, "key-1", SECRET, token_url="https://aicc.test:28070") as aicc:
        result = await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    assert result.call_serial_no == "9"


@pytest.mark.parametrize("error", [ConnectionResetError(104, "reset"), TimeoutError()])
@pytest.mark.asyncio
async def test_bare_os_errors_after_sending_are_outcome_unknown(
    aicc: AICCClient, http: Any, error: Exception
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, exception=error)
    http.post(VOICE_URL, payload={"result": {"callSerialNo": "2"}, "retCode": "0"})  # never reached

    with pytest.raises(AICCOutcomeUnknownError):
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    assert len(sent(http, VOICE_URL)) == 1


@pytest.mark.asyncio
async def test_redirects_are_never_followed(aicc: AICCClient, http: Any) -> None:
    # Following would re-send the body (a second phone call, or the app secret) elsewhere.
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=307, headers={"Location": "https://elsewhere.test/voice"})
    http.post("https://elsewhere.test/voice", payload={"retCode": "0"})

    with pytest.raises(AICCHTTPError, match="redirect") as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    assert caught.value.status == 307
    assert sent(http, "https://elsewhere.test/voice") == []


@pytest.mark.asyncio
async def test_token_redirect_does_not_carry_the_secret_away(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, status=308, headers={"Location": "http://elsewhere.test/token"})
    http.post("http://elsewhere.test/token", payload=TOKEN_BODY)

    with pytest.raises(AICCAuthError):
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    assert sent(http, "http://elsewhere.test/token") == []


@pytest.mark.asyncio
async def test_rejected_token_echoed_by_the_server_is_masked(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY, repeat=True)
    echo = {"exceptionInfo": "auth fail! illegal token: Bearer tok-123"}
    http.post(VOICE_URL, status=403, payload=echo, repeat=True)

    with pytest.raises(AICCAuthError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    err = caught.value
    assert "auth fail" in (err.reason or "")
    assert "tok-123" not in str(err) + repr(err) + (err.reason or "")


@pytest.mark.parametrize("expires", ["abc", "nan", "inf", "-5", "0"])
@pytest.mark.asyncio
async def test_unusable_token_lifetime_is_refused_without_leaking_the_token(
    aicc: AICCClient, http: Any, caplog: pytest.LogCaptureFixture, expires: str
) -> None:
    http.post(TOKEN_URL, payload={"AccessToken": "NEWTOKEN-9876", "Expires": expires})

    with pytest.raises(AICCAuthError, match="usable AccessToken") as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")

    texts = str(caught.value) + repr(caught.value) + caplog.text
    assert "NEWTOKEN-9876" not in texts
    assert caught.value.__cause__ is None or "NEWTOKEN" not in str(caught.value.__cause__)
    assert sent(http, VOICE_URL) == []


@pytest.mark.asyncio
async def test_token_lifetime_is_capped_at_what_was_asked(aicc: AICCClient, http: Any) -> None:
    http.post(TOKEN_URL, payload={"AccessToken": "tok-123", "Expires": "86400"})
    http.post(VOICE_URL, payload={"retCode": "0"})
    await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    token = aicc._transport.tokens.current
    assert token is not None
    assert token.lifetime == 600


@pytest.mark.asyncio
async def test_garbage_retry_after_on_a_504_is_still_outcome_unknown(
    aicc: AICCClient, http: Any
) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=504, body="gateway", headers={"Retry-After": "²"})

    with pytest.raises(AICCOutcomeUnknownError):
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    assert len(sent(http, VOICE_URL)) == 1


@pytest.mark.parametrize("status", [520, 524, 599])
@pytest.mark.asyncio
async def test_unknown_gateway_5xx_is_ambiguous(aicc: AICCClient, http: Any, status: int) -> None:
    http.post(TOKEN_URL, payload=TOKEN_BODY)
    http.post(VOICE_URL, status=status, body="cdn error")

    with pytest.raises(AICCOutcomeUnknownError):
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    assert len(sent(http, VOICE_URL)) == 1
