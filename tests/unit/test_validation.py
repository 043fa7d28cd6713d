"""Bad input raises AICCValidationError before any I/O, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from aioresponses import aioresponses

from aicc_async import (
    AICCClient,
    AICCValidationError,
    ClientConfig,
    CreateVoiceNotificationRequest,
    RetryPolicy,
    Timeout,
    VoiceContent,
)

GOOD: dict[str, Any] = {"called": "88880000", "voice_content": "$Hello$"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"called": ""}, "called"),
        ({"called": None}, "called"),
        ({"called": 88880000}, "called"),  # int, not str
        ({"called": "8888 0000"}, "called"),
        ({"called": "88880000; DROP"}, "called"),
        ({"called": "1" * 33}, "called"),
        ({"called": "+"}, "called"),
        ({"voice_content": ""}, "voice_content"),
        ({"voice_content": "   "}, "voice_content"),
        ({"voice_content": "x" * 1001}, "voice_content"),
        ({"voice_content": None}, "voice_content"),
        ({"voice_content": b"$hi$"}, "voice_content"),
        ({"caller_present": "95599a"}, "caller_present"),
        ({"caller_present": ""}, "caller_present"),
        ({"caller_present": 95599}, "caller_present"),
        ({"callback_url": "https://cb.example.com/?a=1"}, "callback_url"),  # '=' refused
        ({"callback_url": "https://cb.example.com/a b"}, "callback_url"),
        ({"callback_url": "https://cb.example.com/%20"}, "callback_url"),
        ({"callback_url": "ftp://cb.example.com/"}, "callback_url"),
        ({"callback_url": "aHR0cHM6Ly9jYi5leGFtcGxlLmNvbQ=="}, "callback_url"),  # pre-encoded
        ({"priority": 0}, "priority"),
        ({"priority": 10}, "priority"),
        ({"priority": "3"}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": 2.0}, "priority"),
        ({"voice_content": "$line\nbreak$"}, "voice_content"),
        ({"voice_content": "$nul\x00$"}, "voice_content"),
        ({"voice_content": "$lone \udc80 surrogate$"}, "voice_content"),
        ({"callback_url": "https://cb.example.com/" + "a" * 1000}, "callback_url"),
    ],
)
@pytest.mark.asyncio
async def test_bad_request_raises_before_any_io(changes: dict[str, Any], field: str) -> None:
    with aioresponses() as http:  # no routes: any request would fail loudly
        async with AICCClient("https://aicc.test", "k", "s") as aicc:
            with pytest.raises(AICCValidationError) as caught:
                await aicc.voice_notification.create(**{**GOOD, **changes})
        assert http.requests == {}
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert field in str(caught.value)


def test_voice_content_is_limited_to_1000_characters() -> None:
    assert CreateVoiceNotificationRequest(called="1", voice_content="x" * 1000)
    with pytest.raises(AICCValidationError, match="1001 characters"):
        CreateVoiceNotificationRequest(called="1", voice_content=VoiceContent().text("x" * 999))


@pytest.mark.parametrize("part", ["", "  ", "a~b", "$x", 5, None])
def test_voice_content_builder_refuses_bad_parts(part: Any) -> None:
    with pytest.raises(AICCValidationError):
        VoiceContent().text(part)
    with pytest.raises(AICCValidationError):
        VoiceContent().voice(part)


def test_voice_content_builder_renders_parts_in_order() -> None:
    content = VoiceContent().voice("1133").text("Tom").voice("2225")
    assert str(content) == "1133~$Tom$~2225"
    assert VoiceContent().text("a").parts == ("$a$",)  # each call returns a new object


@pytest.mark.asyncio
async def test_send_refuses_other_objects_and_non_bool_retry_unsafe() -> None:
    with aioresponses() as http:
        async with AICCClient("https://aicc.test", "k", "s") as aicc:
            with pytest.raises(AICCValidationError, match="CreateVoiceNotificationRequest"):
                await aicc.voice_notification.send({"called": "1"})  # type: ignore[arg-type]
            with pytest.raises(AICCValidationError, match="retry_unsafe"):
                await aicc.voice_notification.create(
                    "1",
                    "$x$",
                    retry_unsafe="no",  # type: ignore[arg-type]
                )
        assert http.requests == {}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": ""}, "base_url"),
        ({"base_url": "service.besclouds.com"}, "base_url"),  # no scheme
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "https://x/?a=1"}, "base_url"),
        ({"base_url": None}, "base_url"),
        ({"base_url": "https://user:pw@aicc.test"}, "base_url"),
        ({"app_key": ""}, "app_key"),
        ({"app_key": "k\r\nX-Evil: 1"}, "app_key"),  # header injection
        ({"app_secret": ""}, "app_secret"),
        ({"app_secret": None}, "app_secret"),
        ({"token_url": "nope"}, "token_url"),
        ({"token_ttl": 59}, "token_ttl"),
        ({"token_ttl": 3601}, "token_ttl"),
        ({"token_ttl": "600"}, "token_ttl"),
        ({"max_connections": 0}, "max_connections"),
        ({"timeout": -1}, "timeout.total"),
        ({"timeout": "10"}, "timeout"),
        ({"limits": {"voice_notification": 0}}, "limits['voice_notification']"),
        ({"limits": {"voice": 5}}, "limits"),
        ({"limits": [("voice_notification", 5)]}, "limits"),
        ({"limits": []}, "limits"),
        ({"rate_limits": {"outbound": -2}}, "rate_limits['outbound']"),
        ({"rate_limits": {"outbound": True}}, "rate_limits['outbound']"),
        ({"retry": {"max_attempts": 3}}, "retry"),
        ({"messaging_channel_id": ""}, "messaging_channel_id"),
        ({"messaging_locale": "english"}, "messaging_locale"),
        ({"messaging_locale": None}, "messaging_locale"),
    ],
)
def test_bad_client_options_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"base_url": "https://aicc.test", "app_key": "k", "app_secret": "s"}
    with pytest.raises(AICCValidationError) as caught:
        AICCClient(**{**args, **kwargs})
    assert caught.value.field == field


def test_bad_session_type_is_refused() -> None:
    with pytest.raises(TypeError, match=r"aiohttp\.ClientSession"):
        AICCClient("https://aicc.test", "k", "s", session=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"base_delay": 0}, "base_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"max_elapsed": "5"}, "max_elapsed"),
    ],
)
def test_bad_retry_policy_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("total", "connect", "field"),
    [(5, 5, "timeout.connect"), (5, 6, "timeout.connect"), (5, float("nan"), "timeout.connect"),
     (0, 1, "timeout.total"), (True, 1, "timeout.total")],
)  # fmt: skip
def test_timeout_connect_must_be_shorter_than_total(total: Any, connect: Any, field: str) -> None:
    # A pool wait that ends in the total timeout could not prove nothing was sent.
    with pytest.raises(AICCValidationError) as caught:
        Timeout(total=total, connect=connect)
    assert caught.value.field == field


def test_timeout_number_means_total_per_attempt() -> None:
    config = ClientConfig(base_url="https://a.test", app_key="k", app_secret="s", timeout=2)
    assert config.timeout == Timeout(total=2.0, connect=1.0)  # connect < total, always
    assert ClientConfig(base_url="https://a.test/", app_key="k", app_secret="s").base_url == (
        "https://a.test"
    )


def test_limits_merge_over_defaults() -> None:
    config = ClientConfig(
        base_url="https://a.test", app_key="k", app_secret="s", limits={"outbound": 7}
    )
    assert config.limits["outbound"] == 7
    assert config.limits["voice_notification"] == 50
