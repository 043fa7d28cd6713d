"""What the SDK logs: one DEBUG line per request with its latency, attempt number,
AICC's request id and (in a campaign) the row's key; loggers named per module under
``aicc_async``; never a full phone number or a secret at INFO or above.
HTTP mocked with aioresponses."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

import aicc_async
from aicc_async import AICCClient, CreateVoiceNotificationRequest, RetryPolicy, Timeout
from aicc_async.bulk import Campaign, CampaignRow

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
SECRET = "s3cr3t-app-secret-value"
TOKEN = "tok-0123456789abcdef"
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)

#: "POST name -> HTTP status, n bytes in 1.2 ms (attempt n[, request id x][, row k])"
LINE = re.compile(
    r"POST (?P<name>\w+) -> HTTP (?P<status>\d+), \d+ bytes in [\d.]+ ms "
    r"\(attempt (?P<attempt>\d+)(?:, request id (?P<rid>[^,)]+))?(?:, row (?P<row>[^)]+))?\)"
)


def request_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    found = []
    for record in caplog.records:
        match = LINE.fullmatch(record.getMessage())
        if match and match["name"] == name:
            assert record.levelno == logging.DEBUG
            assert record.name == "aicc_async._transport"
            found.append(match.groupdict())
    return found


@pytest.mark.asyncio
async def test_each_request_has_a_debug_line_with_latency_attempt_and_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aicc_async")
    with aioresponses() as http:
        http.post(TOKEN_URL, payload={"AccessToken": TOKEN, "Expires": "600"})
        http.post(VOICE_URL, payload={"retCode": "1", "retMsg": "busy"})  # not taken: retried
        http.post(
            VOICE_URL,
            payload={"retCode": "0", "result": {"callSerialNo": "77"}},
            headers={"X-Request-Id": "req-42"},
        )
        async with AICCClient(BASE, "key-1", SECRET, retry=FAST) as aicc:
            await aicc.voice_notification.create("88880000", "$Hi$")
    first, second = request_lines(caplog, "createVoiceNotification")
    assert (first["status"], first["attempt"], first["rid"], first["row"]) == (
        "200",
        "1",
        None,
        None,
    )
    assert (second["attempt"], second["rid"], second["row"]) == ("2", "req-42", None)


@pytest.mark.asyncio
async def test_in_a_campaign_the_line_names_the_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aicc_async")
    with aioresponses() as http:
        http.post(TOKEN_URL, payload={"AccessToken": TOKEN, "Expires": "600"})
        http.post(VOICE_URL, payload={"retCode": "0", "result": {"callSerialNo": "1"}}, repeat=True)
        async with (
            Campaign(tmp_path / "c.db", "voice_notification") as campaign,
            AICCClient(BASE, "key-1", SECRET, retry=FAST) as aicc,
        ):
            await campaign.load(
                CampaignRow(
                    key=f"row-{i}",
                    request=CreateVoiceNotificationRequest(
                        called=f"1390000000{i}", voice_content="$Hi$"
                    ),
                )
                for i in range(3)
            )
            await campaign.run(aicc)
    rows = sorted(line["row"] for line in request_lines(caplog, "createVoiceNotification"))
    assert rows == ["row-0", "row-1", "row-2"]


NUMBERS = [f"1390000{i:04d}" for i in range(6)]


@pytest.mark.asyncio
async def test_no_full_number_or_secret_is_logged_at_info_or_above(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aicc_async")
    answers = iter(
        [
            {"payload": {"retCode": "1", "retMsg": f"busy {NUMBERS[0]} {SECRET}"}},
            {"payload": {"retCode": "0200017", "retMsg": f"{NUMBERS[1]} is barred, {TOKEN}"}},
            {"status": 502, "body": f"<html>{NUMBERS[2]} {SECRET}</html>"},
            {"exception": TimeoutError()},
        ]
    )

    def answer(url: Any, **kwargs: Any) -> Any:
        from aioresponses import CallbackResult

        spec = next(answers, {"payload": {"retCode": "0", "result": {"callSerialNo": "5"}}})
        if "exception" in spec:
            raise spec["exception"]
        return CallbackResult(**spec)

    with aioresponses() as http:
        http.post(TOKEN_URL, payload={"AccessToken": TOKEN, "Expires": "600"}, repeat=True)
        http.post(VOICE_URL, callback=answer, repeat=True)
        async with (
            Campaign(tmp_path / "c.db", "voice_notification") as campaign,
            AICCClient(
                BASE, "key-1", SECRET, retry=FAST, timeout=Timeout(total=0.5, connect=0.2)
            ) as aicc,
        ):
            await campaign.load(
                CampaignRow(
                    key=str(i),
                    request=CreateVoiceNotificationRequest(called=n, voice_content="$Hi$"),
                )
                for i, n in enumerate(NUMBERS)
            )
            await campaign.run(aicc, concurrency=1)
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert loud, "the retries and failures are logged at INFO or above"
    for record in loud:
        text = record.getMessage() + (
            caplog.handler.formatter.formatException(record.exc_info) if record.exc_info else ""
        )
        for secret in (*NUMBERS, SECRET, TOKEN):
            assert secret not in text, (record.name, text)


def test_every_module_logs_to_its_own_logger() -> None:
    """``logging.getLogger(__name__)`` everywhere, so one module's log can be tuned."""
    package = Path(aicc_async.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and path.name != "terminal.py"  # the CLI sets the package's level
            ):
                pytest.fail(f"{path.relative_to(package)} logs to {node.args[0].value!r}")
