"""FakeAICC features for tests that drive it from another process.

``latency=``, :meth:`FakeAICC.stats`, the ``GET /_fake/stats`` control route and the
``python -m aicc_async.testing`` options (latency, seeded chaos).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from aicc_async import AICCBusinessError, AICCClient, RetryPolicy
from aicc_async.testing import FakeAICC, Fault
from aicc_async.testing.fake import cli
from aicc_async.testing.fake.cli import add_server_arguments, fake_from_args, main, serve

REPO_ROOT = Path(__file__).resolve().parents[1]
STATS_PATH = "/_fake/stats"
TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
VOICE_PATH = "/apiaccess/rest/voiceNotification/v1/createVoiceNotification"
TOKEN = "tokenByAkSk"
VOICE = "createVoiceNotification"
MIDRESULT = "midresult"
ALL_ENDPOINTS = {
    TOKEN,
    VOICE,
    "applyToken",
    "doLeaveMessage",
    "createcall",
    "getCalledInfo",
    MIDRESULT,
    "unknown",
}
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


def counts(**nonzero: int) -> dict[str, int]:
    """A per-endpoint count dict: every endpoint 0 except those given."""
    return {name: nonzero.get(name, 0) for name in ALL_ENDPOINTS}


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def get_stats(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url + STATS_PATH) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        stats = await resp.json()
    assert isinstance(stats, dict)
    return stats


async def get_token(session: aiohttp.ClientSession, fake: FakeAICC) -> str:
    body = {"app_key": fake.app_key, "app_secret": fake.app_secret}
    async with session.post(fake.url + TOKEN_PATH, json=body) as resp:
        assert resp.status == 200
        token = (await resp.json())["AccessToken"]
    assert isinstance(token, str)
    return token


async def post_voice(session: aiohttp.ClientSession, fake: FakeAICC, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "X-APP-Key": fake.app_key}
    body = {"called": "88880000", "voiceContent": "$hi$"}
    async with session.post(fake.url + VOICE_PATH, json=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- latency


def test_latency_must_be_finite_and_not_negative() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeAICC(latency=-1)
    with pytest.raises(ValueError, match="latency"):
        FakeAICC(latency=float("nan"))
    FakeAICC(latency=0)  # the boundary is accepted


@pytest.mark.asyncio
async def test_latency_delays_a_voice_notification() -> None:
    async with FakeAICC(latency=0.2) as fake, fake.client() as aicc:
        started = time.monotonic()
        await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        elapsed = time.monotonic() - started
        assert elapsed >= 0.2
        assert fake.calls_to("88880000") == 1
        assert fake.max_in_flight == 1
        assert fake.in_flight == 0


@pytest.mark.asyncio
async def test_delayed_request_is_received_not_processed_and_stats_still_answer(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(latency=3600, record=False) as fake:
        token = await get_token(session, fake)  # tokenByAkSk is never delayed
        pending = asyncio.create_task(post_voice(session, fake, token))
        try:

            async def until_in_flight() -> dict[str, Any]:
                while True:  # each round trip yields to the loop; no sleeping
                    stats = await get_stats(session, fake.url)
                    if stats["in_flight"]:
                        return stats

            stats = await asyncio.wait_for(until_in_flight(), 5)
            assert stats["in_flight"] == 1
            assert stats["received"] == counts(tokenByAkSk=1, createVoiceNotification=1)
            assert stats["processed"] == counts(tokenByAkSk=1)
            assert stats["calls"] == {}
        finally:
            await fake.close()
            # close() cut the hour-long wait short and dropped the connection, unprocessed
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(pending, 5)
    assert fake.calls_to("88880000") == 0
    assert fake.stats()["processed"][VOICE] == 0
    assert fake.in_flight == 0


# ---------------------------------------------------------------------- stats()


@pytest.mark.asyncio
async def test_stats_counts_without_recording() -> None:
    async with FakeAICC(record=False) as fake, fake.client() as aicc:
        await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        await aicc.voice_notification.create(called="88880001", voice_content="$hi$")
        await aicc.outbound.write_back_result(
            sub_cc_no=1, vdn_id=88, unique_id="u1", service_id="s1"
        )
        stats = fake.stats()
        assert fake.requests == []
    assert stats == {
        "calls": {"88880000": 2, "88880001": 1},
        "call_tasks": {},
        "write_backs": {"u1": 1},
        "received": counts(tokenByAkSk=1, createVoiceNotification=3, midresult=1),
        "processed": counts(tokenByAkSk=1, createVoiceNotification=3, midresult=1),
        "token_requests": 1,
        "rejected_token_requests": 0,
        "in_flight": 0,
        "max_in_flight": 1,
        "release_events": dict.fromkeys(
            (
                "scheduled",
                "pending",
                "delivered",
                "failed",
                "cancelled",
                "answered",
                "not_answered",
                "attempts",
                "duplicates",
            ),
            0,
        ),
    }
    assert json.loads(json.dumps(stats)) == stats


@pytest.mark.asyncio
async def test_stats_separates_received_from_processed_and_counts_unknown(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(record=False) as fake:
        fake.inject(Fault.BUSY)
        async with fake.client(retry=ONE_ATTEMPT) as aicc:
            with pytest.raises(AICCBusinessError):
                await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        fake.expire_tokens()
        assert await post_voice(session, fake, "stale") == 401
        async with session.get(fake.url + "/nowhere") as resp:
            assert resp.status == 404
        stats = fake.stats()
    assert stats["received"] == counts(tokenByAkSk=1, createVoiceNotification=2, unknown=1)
    assert stats["processed"] == counts(tokenByAkSk=1)
    assert stats["rejected_token_requests"] == 1
    assert stats["calls"] == {}


# ---------------------------------------------------------------------- GET /_fake/stats


@pytest.mark.asyncio
async def test_stats_route_answers_the_snapshot_and_is_invisible(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeAICC(latency=0.05) as fake:
        async with fake.client() as aicc:
            await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        before = fake.stats()
        assert await get_stats(session, fake.url) == before
        async with session.post(fake.url + STATS_PATH, json={}) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET"
        async with session.put(fake.url + STATS_PATH) as resp:
            assert resp.status == 405
        assert await get_stats(session, fake.url) == before
        assert fake.stats() == before
        assert [r.endpoint for r in fake.requests] == [TOKEN, VOICE]
    assert before["received"] == counts(tokenByAkSk=1, createVoiceNotification=1)


@pytest.mark.asyncio
async def test_stats_route_gets_no_faults(session: aiohttp.ClientSession) -> None:
    async with FakeAICC() as fake:
        fake.inject(Fault.RESET_BEFORE_PROCESSING)
        fake.chaos(seed=1, probability=1.0, faults=[Fault.HANG])
        stats = await get_stats(session, fake.url)
        assert stats["received"] == counts()
        assert stats["in_flight"] == 0
        # the queued fault is still waiting for a business request
        token = await get_token(session, fake)
        with pytest.raises(aiohttp.ClientError):
            await post_voice(session, fake, token)
        assert fake.requests[-1].fault is Fault.RESET_BEFORE_PROCESSING


# ---------------------------------------------------------------------- command line


def test_fake_from_args_defaults() -> None:
    fake = fake_from_args(parse([]))
    assert fake._host == "127.0.0.1"
    assert fake._port == 0
    assert fake._record is True
    assert fake._latency == 0.0
    assert fake._chaos is None


def test_fake_from_args_applies_host_port_record_latency() -> None:
    fake = fake_from_args(
        parse(["--host", "::1", "--port", "8123", "--no-record", "--latency", "1.5"])
    )
    assert (fake._host, fake._port, fake._record, fake._latency) == ("::1", 8123, False, 1.5)


def test_fake_from_args_zero_probability_leaves_chaos_off() -> None:
    fake = fake_from_args(parse(["--chaos-probability", "0", "--chaos-faults", "busy"]))
    assert fake._chaos is None


@pytest.mark.asyncio
async def test_fake_from_args_chaos_matches_seed_zero_by_default(
    session: aiohttp.ClientSession,
) -> None:
    faults = [Fault.BUSY, Fault.HTTP_500, Fault.HTML_503]
    argv = ["--chaos-probability", "0.7", "--chaos-faults", " busy, http_500 ,html_503"]
    from_args = fake_from_args(parse(argv))
    assert from_args._chaos is not None
    assert from_args._chaos.faults == tuple(faults)
    reference = FakeAICC()
    reference.chaos(seed=0, probability=0.7, faults=faults)
    other_seed = fake_from_args(parse([*argv, "--chaos-seed", "5", "--chaos-delay", "0.25"]))
    assert other_seed._chaos is not None
    assert other_seed._chaos.delay == 0.25

    sequences = []
    for fake in (from_args, reference, other_seed):
        async with fake:
            for _ in range(20):
                await post_voice(session, fake, "no-token")
            sequences.append([r.fault for r in fake.requests])
    assert sequences[0] == sequences[1]
    assert sequences[0] != sequences[2]
    assert set(sequences[0]) == {None, *faults}


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make main() fail fast instead of serving forever if it accepts the options."""

    async def refuse(fake: FakeAICC, on_ready: Any) -> None:
        raise AssertionError("main() accepted the options and started serving")

    monkeypatch.setattr(cli, "serve", refuse)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--chaos-probability", "0.5"], "above 0 needs --chaos-faults"),
        (
            ["--chaos-probability", "1", "--chaos-faults", "nosuch"],
            "argument --chaos-faults: unknown fault 'nosuch'",
        ),
        (["--chaos-faults", "busy,"], "argument --chaos-faults: unknown fault ''"),
        (
            ["--chaos-probability", "1.5", "--chaos-faults", "busy"],
            "argument --chaos-probability: must be within [0, 1]",
        ),
        (
            ["--chaos-probability", "x", "--chaos-faults", "busy"],
            "argument --chaos-probability: expected a number",
        ),
        (["--chaos-seed", "3"], "--chaos-seed given without --chaos-probability"),
        (
            ["--chaos-faults", "busy", "--chaos-delay", "1"],
            "--chaos-faults and --chaos-delay given without --chaos-probability",
        ),
        (
            ["--chaos-probability", "1", "--chaos-faults", "hang", "--chaos-delay", "-2"],
            "argument --chaos-delay: must be a finite number >= 0",
        ),
        (["--latency", "-1"], "argument --latency: must be a finite number >= 0"),
        (["--latency", "nan"], "argument --latency: must be a finite number >= 0"),
        (["--latency", "soon"], "argument --latency: expected a number of seconds"),
    ],
)
def test_main_rejects_bad_options(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], no_serving: None
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error_line = captured.err.strip().splitlines()[-1]
    assert "error:" in error_line
    assert expected in error_line


def test_unknown_fault_lists_the_valid_names(
    capsys: pytest.CaptureFixture[str], no_serving: None
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--chaos-probability", "1", "--chaos-faults", "busy,nosuch"])
    assert info.value.code == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown fault 'nosuch'" in error_line
    for fault in Fault:
        assert fault.value in error_line


@pytest.mark.asyncio
async def test_serve_closes_the_fake_and_removes_handlers_when_on_ready_fails(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeAICC()
    seen: list[str] = []

    def on_ready(started: FakeAICC) -> None:
        seen.append(started.url)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(serve(fake, on_ready), 10)
    assert len(seen) == 1
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(seen[0] + STATS_PATH)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        assert loop.remove_signal_handler(sig) is False  # nothing left installed


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.asyncio
async def test_module_with_chaos_answers_busy_and_serves_stats(
    session: aiohttp.ClientSession,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aicc_async.testing",
        "--port",
        "0",
        "--no-record",
        "--latency",
        "0",
        "--chaos-probability",
        "1",
        "--chaos-faults",
        "busy",
        "--chaos-seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        info = json.loads(line)
        assert set(info) == {"url", "app_key", "app_secret"}
        client = AICCClient(
            base_url=info["url"],
            app_key=info["app_key"],
            app_secret=info["app_secret"],
            retry=ONE_ATTEMPT,
        )
        async with client as aicc:
            with pytest.raises(AICCBusinessError) as caught:
                await aicc.voice_notification.create(called="88880000", voice_content="$hi$")
        assert caught.value.code == "1"
        stats = await get_stats(session, info["url"])
        assert stats["received"] == counts(tokenByAkSk=1, createVoiceNotification=1)
        assert stats["processed"] == counts(tokenByAkSk=1)
        assert stats["calls"] == {}
        assert stats["token_requests"] == 1
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
