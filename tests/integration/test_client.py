"""The client's lifecycle, configuration and secret hygiene."""

from __future__ import annotations

import gc
import logging

import aiohttp
import pytest
from aicc_helpers import VOICE

from aicc_async import (
    AICCClient,
    AICCConnectionError,
    AICCError,
    AICCValidationError,
    ClientConfig,
)
from aicc_async.testing import FakeAICC, Fault


def test_from_env_reads_the_documented_variables() -> None:
    env = {
        "AICC_BASE_URL": "https://aicc.test/",
        "AICC_APP_KEY": "key",
        "AICC_APP_SECRET": "secret",
        "AICC_TOKEN_URL": "https://aicc.test:28070",
    }
    client = AICCClient.from_env(env, token_ttl=900)
    assert client.config.base_url == "https://aicc.test"
    assert client.config.token_endpoint == (
        "https://aicc.test:28070/apigovernance/api/oauth/tokenByAkSk"
    )
    assert client.config.token_ttl == 900


def test_from_env_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AICC_APP_KEY", raising=False)
    monkeypatch.delenv("AICC_APP_SECRET", raising=False)
    monkeypatch.setenv("AICC_BASE_URL", "https://aicc.test")
    with pytest.raises(AICCValidationError, match="AICC_APP_KEY, AICC_APP_SECRET"):
        AICCClient.from_env()


def test_repr_shows_url_and_key_never_the_secret() -> None:
    client = AICCClient("https://aicc.test", "the-key", "the-secret")
    assert repr(client) == "AICCClient(base_url='https://aicc.test', app_key='the-key')"
    config = ClientConfig(base_url="https://aicc.test", app_key="k", app_secret="the-secret")
    assert "the-secret" not in repr(config)


@pytest.mark.asyncio
async def test_unclosed_client_warns(fake_aicc: FakeAICC) -> None:
    aicc = fake_aicc.client()
    await aicc.voice_notification.create(called="1", voice_content="$a$")
    session = aicc._transport._shared.session
    assert session is not None
    with pytest.warns(ResourceWarning, match="unclosed AICCClient"):  # noqa: PT031
        del aicc  # the warning comes from __del__, at once or at the next collection
        gc.collect()
    await session.close()


@pytest.mark.asyncio
async def test_caller_session_is_used_and_left_open(fake_aicc: FakeAICC) -> None:
    async with aiohttp.ClientSession() as session:
        async with fake_aicc.client(session=session) as aicc:
            await aicc.voice_notification.create(called="1", voice_content="$a$")
        assert not session.closed
        async with session.get(fake_aicc.url + "/nowhere") as resp:  # still usable
            assert resp.status == 404
    assert len(fake_aicc.processed(VOICE)) == 1


@pytest.mark.asyncio
async def test_close_is_idempotent_and_closed_client_refuses_calls(fake_aicc: FakeAICC) -> None:
    aicc = fake_aicc.client()
    await aicc.voice_notification.create(called="1", voice_content="$a$")
    await aicc.close()
    await aicc.close()
    with pytest.raises(AICCConnectionError, match="closed"):  # typed: nothing was sent
        await aicc.voice_notification.create(called="2", voice_content="$a$")
    assert len(fake_aicc.received(VOICE)) == 1


@pytest.mark.asyncio
async def test_no_secret_or_token_in_logs_errors_or_reprs(
    fake_aicc: FakeAICC, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[AICCError] = []
    async with fake_aicc.client() as aicc:
        await aicc.voice_notification.create(called="13800001111", voice_content="$a$")
        fake_aicc.expire_tokens()  # rejection, refresh, replay
        await aicc.voice_notification.create(called="13800002222", voice_content="$a$")
        for fault in (Fault.HTML_502, Fault.HTTP_500, Fault.RESET_AFTER_PROCESSING):
            fake_aicc.inject(fault, endpoint=VOICE)
            try:
                await aicc.voice_notification.create(called="13800003333", voice_content="$a$")
            except AICCError as exc:
                errors.append(exc)
        fake_aicc.inject(Fault.TOKEN_EXPIRED, times=2, endpoint=VOICE)
        try:
            await aicc.voice_notification.create(called="13800004444", voice_content="$a$")
        except AICCError as exc:
            errors.append(exc)
        client_repr = repr(aicc) + repr(aicc.config)
    async with AICCClient(fake_aicc.url, fake_aicc.app_key, "bad-secret") as bad:
        try:
            await bad.voice_notification.create(called="1", voice_content="$a$")
        except AICCError as exc:
            errors.append(exc)

    tokens = {r.headers["Authorization"].split()[-1] for r in fake_aicc.received(VOICE)}
    assert len(tokens) >= 2
    assert len(errors) == 5
    texts = [r.getMessage() for r in caplog.records]
    texts += [str(e) + repr(e) + repr(vars(e)) for e in errors]
    texts.append(client_repr)
    secrets = [fake_aicc.app_secret, "bad-secret", *tokens]
    leaks = [(s, t) for t in texts for s in secrets if s in t]
    assert leaks == []
    assert any("retrying" in t or "rejected" in t for t in texts)  # the logs did say things
    # Full phone numbers never appear at INFO or above.
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [t for t in loud if "1380000" in t]


@pytest.mark.asyncio
async def test_retry_log_does_not_repeat_server_text(
    fake_aicc: FakeAICC, caplog: pytest.LogCaptureFixture
) -> None:
    # A busy answer whose text echoes the number must not put it in an INFO record.
    caplog.set_level(logging.INFO, logger="aicc_async")
    fake_aicc.inject(Fault.BUSY, endpoint=VOICE)
    async with fake_aicc.client() as aicc:
        await aicc.voice_notification.create(called="13800005555", voice_content="$a$")
    (record,) = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert record.getMessage().startswith(
        "createVoiceNotification: attempt 1 failed (AICCBusinessError 1), retrying in"
    )
    assert "try again later" not in record.getMessage()  # the server's retMsg stays out
