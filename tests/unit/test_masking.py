"""No exception text, attribute or ``repr`` shows the app secret or a token, in
whatever form a server echoes it: URL-encoded, as HTML character references, cut
to a prefix of 8 characters or more (also by the 64 KiB the SDK reads of an answer).

HTTP is mocked by aioresponses.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import pytest_asyncio
from aioresponses import aioresponses

from aicc_async import (
    AICCAuthError,
    AICCBusinessError,
    AICCClient,
    AICCError,
    AICCHTTPError,
    AICCOutcomeUnknownError,
    RetryPolicy,
)

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
SECRET = "s3cr3t/app+Secret=42"
ACCESS = "tok-5f3a9c1e7b2d4a60"


@pytest_asyncio.fixture
async def aicc() -> AsyncIterator[AICCClient]:
    policy = RetryPolicy(max_attempts=1)
    async with AICCClient(BASE, "key-1", SECRET, retry=policy) as client:
        yield client


@pytest.fixture
def http() -> Any:
    with aioresponses() as mock:
        yield mock


def shown(error: AICCError) -> str:
    """Everything a user may see of ``error``: message, repr and attributes."""
    return "\n".join([str(error), repr(error), *(repr(v) for v in vars(error).values())])


def leaked(text: str, secret: str) -> list[str]:
    """Which 8-character pieces of ``secret`` (from its start) appear in ``text``."""
    return [secret[:n] for n in range(8, len(secret) + 1) if secret[:n] in text]


def voice_answers(http: Any, **answer: Any) -> None:
    """A token is issued; the voice notification gets ``answer``."""
    http.post(TOKEN_URL, payload={"AccessToken": ACCESS, "Expires": "600"})
    http.post(VOICE_URL, **answer)


async def refused(aicc: AICCClient) -> AICCError:
    with pytest.raises(AICCError) as caught:
        await aicc.voice_notification.create(called="88880000", voice_content="$Hi$")
    return caught.value


def entities(text: str) -> str:
    return "".join(f"&#{ord(c)};" if i % 2 else f"&#x{ord(c):X};" for i, c in enumerate(text))


@pytest.mark.parametrize(
    "echo",
    [
        lambda s: quote(s, safe=""),
        lambda s: quote_plus(s, safe="").lower(),
        lambda s: quote(s, safe="/").replace("%2B", "%2b"),
    ],
    ids=["percent", "percent-lower", "mixed"],
)
@pytest.mark.asyncio
async def test_url_encoded_secret_and_token_in_an_http_error_are_masked(
    aicc: AICCClient, http: Any, echo: Any
) -> None:
    body = f"bad request: app_secret={echo(SECRET)}&token={echo(ACCESS)}"
    voice_answers(http, status=400, body=body)

    error = await refused(aicc)

    assert isinstance(error, AICCHTTPError)
    assert "***" in error.body
    assert leaked(shown(error), SECRET) == leaked(shown(error), ACCESS) == []
    assert leaked(shown(error), quote(SECRET, safe="")) == []


@pytest.mark.asyncio
async def test_html_entities_in_a_gateway_page_are_masked(aicc: AICCClient, http: Any) -> None:
    page = (
        f"<html><body>502 upstream said: {entities(ACCESS)} &amp; "
        f"{html.escape(SECRET).replace('/', '&sol;').replace('+', '&plus;')}</body></html>"
    )
    voice_answers(http, status=502, body=page)

    error = await refused(aicc)

    assert isinstance(error, AICCOutcomeUnknownError)
    assert "***" in str(error)
    assert leaked(html.unescape(shown(error)), ACCESS) == []
    assert leaked(html.unescape(shown(error)), SECRET) == []


@pytest.mark.parametrize("n", [8, 12, len(ACCESS) - 1])
@pytest.mark.asyncio
async def test_a_token_cut_short_in_a_business_error_is_masked(
    aicc: AICCClient, http: Any, n: int
) -> None:
    said = f"token {ACCESS[:n]}... not trusted"
    voice_answers(http, payload={"retCode": "16", "retMsg": said})

    error = await refused(aicc)

    assert isinstance(error, AICCBusinessError)
    assert error.description == "token ***... not trusted"
    assert leaked(shown(error), ACCESS) == []


@pytest.mark.asyncio
async def test_a_token_cut_by_the_64_kib_read_is_masked(aicc: AICCClient, http: Any) -> None:
    # Whitespace collapses in the excerpt, so its last characters are the token's first.
    body = " " * (65536 - 10) + ACCESS
    voice_answers(http, status=400, body=body)

    error = await refused(aicc)

    assert isinstance(error, AICCHTTPError)
    assert error.body == "***"
    assert leaked(shown(error), ACCESS) == []


@pytest.mark.asyncio
async def test_a_secret_echoed_encoded_by_the_token_service_is_masked(
    aicc: AICCClient, http: Any
) -> None:
    said = json.dumps({"error": f"bad secret {quote(SECRET, safe='')} ({SECRET[:9]})"})
    http.post(TOKEN_URL, status=401, body=said)

    error = await refused(aicc)

    assert isinstance(error, AICCAuthError)
    assert error.reason is not None
    assert "***" in error.reason
    assert leaked(shown(error), SECRET) == []
    assert leaked(shown(error), quote(SECRET, safe="")) == []


@pytest.mark.asyncio
async def test_a_token_written_in_mixed_escapes_is_masked(aicc: AICCClient, http: Any) -> None:
    # One character URL-encoded, one an HTML reference, one JSON-escaped, the rest plain.
    mixed = (
        f"%{ord(ACCESS[0]):02X}{ACCESS[1:5]}&#{ord(ACCESS[5])};\\u{ord(ACCESS[6]):04x}{ACCESS[7:]}"
    )
    voice_answers(http, status=404, body=f"no route for token={mixed}; try again")

    error = await refused(aicc)

    assert isinstance(error, AICCHTTPError)
    assert "token=***; try again" in error.body
    assert mixed not in shown(error)
