"""Client settings: which http:// URLs count as this machine, and the settings the
command line shares with ``ClientConfig`` (environment variables, timeouts)."""

from __future__ import annotations

from typing import Any

import pytest

from aicc_async import AICCClient, AICCValidationError, ClientConfig, Timeout
from aicc_async.cli.campaigns import Options, environment_config
from aicc_async.cli.terminal import Stop, Terminal


@pytest.mark.parametrize(
    "url",
    [
        "http://anything.localhost",
        "http://aicc.localhost:8080",
        "http://localhost.attacker.example",
        "http://127.0.0.1.nip.io",
        "http://localhost.",
    ],
)
@pytest.mark.parametrize("field", ["base_url", "token_url"])
def test_a_name_that_only_looks_local_is_not_loopback(url: str, field: str) -> None:
    # Such a name is resolved by DNS (or a hosts file) like any other: the app
    # secret would cross the network in cleartext.
    urls = {"base_url": "https://aicc.example.com", field: url}
    with pytest.raises(AICCValidationError, match="allow_insecure_http") as caught:
        AICCClient(app_key="k", app_secret="s", **urls)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080",
        "http://LOCALHOST",
        "http://127.0.0.1",
        "http://127.9.8.7:1",
        "http://[::1]:1",
    ],
)
def test_literal_loopback_addresses_and_localhost_are_accepted(url: str) -> None:
    assert AICCClient(url, "k", "s").config.base_url == url


_ENV = {"AICC_BASE_URL": "https://aicc.example.com", "AICC_APP_KEY": "k", "AICC_APP_SECRET": "s"}


def test_the_command_line_names_the_variable_of_every_bad_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(Stop):
        environment_config(Terminal(), {**_ENV, "AICC_REDIS_FALLBACK": "sometimes"})
    said = capsys.readouterr().err
    assert "AICC_REDIS_FALLBACK" in said
    assert ClientConfig.from_env({**_ENV, "AICC_REDIS_FALLBACK": "local"}).redis_fallback == "local"


def test_the_command_line_names_every_missing_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Stop):
        environment_config(Terminal(), {"AICC_APP_KEY": "k"})
    said = capsys.readouterr().err
    assert "AICC_BASE_URL" in said
    assert "AICC_APP_SECRET" in said
    assert "AICC_APP_KEY" not in said


@pytest.mark.parametrize("seconds", [0.5, 4.0, 30.0])
def test_a_timeout_in_seconds_means_the_same_on_the_command_line(seconds: float) -> None:
    options: Any = Options(concurrency=5, rate=None, timeout=seconds)
    cli = options.client_options("voice_notification")["timeout"]
    assert (
        cli
        == ClientConfig(
            base_url="https://aicc.example.com", app_key="k", app_secret="s", timeout=seconds
        ).timeout
    )
    assert isinstance(cli, Timeout)
