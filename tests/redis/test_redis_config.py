"""``redis_url`` / ``redis_fallback``: validated, read from the environment, and a
password in the URL is never shown (no Redis server needed)."""

from __future__ import annotations

import pytest

from aicc_async import AICCValidationError, ClientConfig

BASE = {"base_url": "https://aicc.example.com", "app_key": "key", "app_secret": "secret-1"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis://:pw-s3cret@",
        "redis://u:pw-s3cret@host:port/0",
        "pw-s3cret@localhost:6379",
        "",
        6379,
    ],
)
def test_bad_redis_url_is_refused_without_echoing_a_password(url: object) -> None:
    with pytest.raises(AICCValidationError) as caught:
        ClientConfig(**BASE, redis_url=url)

    assert caught.value.field == "redis_url"
    assert "redis://" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_redis_url_password_is_masked_in_repr() -> None:
    config = ClientConfig(**BASE, redis_url="rediss://user:pw-s3cret@redis.internal:6380/2")

    assert config.redis_url == "rediss://user:pw-s3cret@redis.internal:6380/2"
    assert "s3cret" not in repr(config)
    assert "rediss://***@redis.internal:6380/2" in repr(config)


def test_from_env_reads_the_redis_settings() -> None:
    env = {
        "AICC_BASE_URL": BASE["base_url"],
        "AICC_APP_KEY": "key",
        "AICC_APP_SECRET": "secret-1",
        "AICC_REDIS_URL": "redis://127.0.0.1:6379/1",
        "AICC_REDIS_FALLBACK": "local",
    }

    config = ClientConfig.from_env(env)

    assert config.redis_url == "redis://127.0.0.1:6379/1"
    assert config.redis_fallback == "local"
    assert ClientConfig(**BASE).redis_url is None
    assert ClientConfig(**BASE).redis_fallback == "fail"


def test_unknown_redis_fallback_is_refused() -> None:
    with pytest.raises(AICCValidationError) as caught:
        ClientConfig(**BASE, redis_fallback="maybe")

    assert caught.value.field == "redis_fallback"
