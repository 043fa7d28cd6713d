"""Values from a CSV or a server never reach the operator's terminal with their control
characters: an ESC in a header cell or in AICC's ``retMsg`` would otherwise clear the
screen, retitle the window or fake output.

Real ``aicc`` processes; the campaign whose journal ``aicc report`` reads was run in this
process against a mocked AICC answering with a hostile ``retMsg``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses
from rich.console import Console

from aicc_async import AICCClient, CreateVoiceNotificationRequest, RetryPolicy
from aicc_async.bulk import Campaign, CampaignRow
from aicc_async.cli.terminal import Terminal, sdk_log

BASE = "https://aicc.test"
TOKEN_URL = BASE + "/apigovernance/api/oauth/tokenByAkSk"
VOICE_URL = BASE + "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"

#: Any C0 or C1 control character but the line break, or DEL.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def test_a_header_cell_with_an_escape_sequence_is_shown_without_it(tmp_path, fake, aicc, write_csv):
    source = write_csv(
        tmp_path / "c.csv",
        ["id", "called", "text", "\x1b]0;pwned\x07extra\x9b2J"],
        [["1", "13900000001", "Hello", "x"]],
    )
    done = aicc.run("notify", source, "--journal", tmp_path / "j.db", env=fake.env)
    assert done.returncode == 0, done
    assert "Ignoring column(s)" in done.stderr, done
    assert "pwnedextra2J" in done.stderr, done
    assert not CONTROL.search(done.output), repr(done.output)


def _run_campaign(journal: Path, message: str) -> None:
    async def run() -> None:
        policy = RetryPolicy(max_attempts=1)
        with aioresponses() as http:
            http.post(TOKEN_URL, payload={"AccessToken": "tok-123456", "Expires": "600"})
            http.post(VOICE_URL, payload={"retCode": "0200017", "retMsg": message})
            async with (
                Campaign(journal, "voice_notification") as campaign,
                AICCClient(BASE, "key-1", "secret-1", retry=policy) as client,
            ):
                row = CampaignRow(
                    key="1",
                    request=CreateVoiceNotificationRequest(
                        called="13900000001", voice_content="$Hi$"
                    ),
                )
                await campaign.load([row])
                await campaign.run(client)

    asyncio.run(run())


@pytest.mark.parametrize("option", [(), ("--json",)])
def test_a_server_message_with_escapes_is_shown_without_them(
    tmp_path, aicc, plain_env, option: Any
):
    journal = tmp_path / "j.db"
    _run_campaign(journal, "\x1b[2J\x1b[Hcleared\x08\x07 screen\x9b31m")
    done = aicc.run("report", journal, *option, env=plain_env)
    assert done.returncode == 0, done
    assert "[2J[Hcleared screen31m" in done.stdout, done
    assert not CONTROL.search(done.output), repr(done.output)


def test_the_sdk_log_shown_with_v_carries_no_control_characters():
    terminal = Terminal()
    terminal.err = Console(file=io.StringIO(), width=200)
    with sdk_log(terminal, 2):
        logging.getLogger("aicc_async.test").warning("AICC said %s", "\x1b]0;owned\x07 it")
    written = terminal.err.file.getvalue()
    assert "AICC said ]0;owned it" in written, written
    assert not CONTROL.search(written), repr(written)
