"""``python -m aicc_async.testing``: the options, serve() and the module run for real."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import test_fake_release_events
from fake_http import STATS_PATH, TOKEN_PATH, VOICE_PATH, counts, get_stats, subprocess_env
from test_fake_answers import outcomes
from test_fake_release_events import KEY, Receiver

from aicc_async import AICCBusinessError, AICCClient, RetryPolicy
from aicc_async.testing import FakeAICC, Fault
from aicc_async.testing.fake import cli
from aicc_async.testing.fake.cli import add_server_arguments, fake_from_args, main, serve

ONE_ATTEMPT = RetryPolicy(max_attempts=1)
receiver = test_fake_release_events.receiver  # a real CallbackReceiver on 127.0.0.1
#: Signed release events at once; a number left out of the plan is always answered.
RELEASE_NOW = ["--callback-key", KEY, "--release-delay", "0", "--answer-rate", "1"]


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


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make main() fail fast instead of serving forever if it accepts the options."""

    async def refuse(fake: FakeAICC, on_ready: Any) -> None:
        raise AssertionError("main() accepted the options and started serving")

    monkeypatch.setattr(cli, "serve", refuse)


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """main(argv)'s error line, once it has exited 2 having printed nothing on stdout."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error_line = captured.err.strip().splitlines()[-1]
    assert "error:" in error_line
    return error_line


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_main_prints_json_and_stops_on_signal(
    session: aiohttp.ClientSession, sig: signal.Signals
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aicc_async.testing",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        info = json.loads(line)
        assert set(info) == {"url", "app_key", "app_secret"}
        assert info["url"].startswith("http://127.0.0.1:")
        payload = {"app_key": info["app_key"], "app_secret": info["app_secret"]}
        async with session.post(info["url"] + TOKEN_PATH, json=payload) as resp:
            assert resp.status == 200
            assert "AccessToken" in await resp.json()
        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await proc.stdout.read() == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


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
    assert expected in refusal(argv, capsys)


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


def test_fake_from_args_sets_the_hidden_rate_limit() -> None:
    fake = fake_from_args(parse(["--hidden-rate-limit", "150"]))
    assert fake._hidden is not None
    assert (fake._hidden.rate, fake._hidden.burst) == (150.0, 30.0)
    with pytest.raises(SystemExit):
        parse(["--hidden-rate-limit", "0"])


@pytest.mark.asyncio
async def test_answers_options_plan_the_outcome_per_number_and_attempt(receiver: Receiver) -> None:
    argv = [
        *RELEASE_NOW,
        "--answers",
        "8613800000001=no_answer,answered",
        "--answers",
        "+86 138 0000 0002 = never",
        "--answers",
        "8613800000003=busy , random",
    ]
    numbers = ["8613800000001", "008613800000002", "8613800000003", "88880009"] * 2
    async with fake_from_args(parse(argv)) as fake:
        events = await outcomes(fake, receiver, numbers)
    seen = [(e.answered, e.release_reason) for e in events]
    first = [(False, "4"), (False, "4"), (False, "6"), (True, seen[3][1])]
    second = [(True, seen[4][1]), (False, "4"), (True, seen[6][1]), (True, seen[7][1])]
    assert seen == first + second
    assert {seen[i][1] for i in (3, 4, 6, 7)} <= {"0", "1"}


@pytest.mark.asyncio
async def test_answers_file_plans_the_outcomes_beside_the_option(
    receiver: Receiver, tmp_path: Path
) -> None:
    plan = tmp_path / "answers.json"
    plan.write_text(json.dumps({"+8613800000001": ["busy", "answered"], "88880002": "never"}))
    argv = [*RELEASE_NOW, "--answers-file", str(plan), "--answers", "88880003=no_answer"]
    numbers = ["8613800000001", "88880002", "88880003"] * 2
    async with fake_from_args(parse(argv)) as fake:
        events = await outcomes(fake, receiver, ["+" + numbers[0], *numbers[1:]])
    seen = [(e.answered, e.release_reason) for e in events]
    assert seen[:3] == [(False, "6"), (False, "4"), (False, "4")]
    assert seen[3][0] is True
    assert seen[4:] == [(False, "4"), (False, "4")]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--answers", "8613800000001=no_answer,maybe"],
            "argument --answers: answers['8613800000001']: 'maybe' is not one of ['answered', "
            "'busy', 'never', 'no_answer', 'random']",
        ),
        (["--answers", "8613800000001="], "argument --answers: answers['8613800000001']: ''"),
        (["--answers", "8613800000001=busy,"], "argument --answers: answers['8613800000001']: ''"),
        (["--answers", "alice=busy"], "argument --answers: answers: 'alice' is not a phone number"),
        (["--answers", "=busy"], "argument --answers: answers: '' is not a phone number"),
        (
            ["--answers", "8613800000001"],
            "argument --answers: expected NUMBER=OUTCOMES (for example "
            "8613800000001=no_answer,answered), got '8613800000001'",
        ),
        (
            ["--answers", "008613800000001=busy", "--answers", "+86 13800000001=never"],
            "008613800000001 is given twice: '008613800000001' by --answers and "
            "'+86 13800000001' by --answers",
        ),
    ],
)
def test_main_rejects_bad_answers(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], no_serving: None
) -> None:
    assert expected in refusal(argv, capsys)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "argument --answers-file: cannot read '{path}': No such file or directory"),
        ('{"8613800000001": "busy",}', "argument --answers-file: '{path}' is not valid JSON:"),
        ('{"8613800000001\xff": "busy"}', "argument --answers-file: '{path}' is not valid JSON:"),
        (
            '{"8613800000001": "busy", "8613800000001": "never"}',
            "argument --answers-file: '{path}': '8613800000001' appears twice",
        ),
        (
            '["8613800000001"]',
            "argument --answers-file: '{path}' must hold a JSON object mapping numbers to outcomes",
        ),
        (
            '{"8613800000001": ["answered", "later"]}',
            "argument --answers-file: '{path}': answers['8613800000001']: 'later' is not one of",
        ),
        (
            '{"8613800000001": {"first": "busy"}}',
            "argument --answers-file: '{path}': answers['8613800000001'] must be an outcome",
        ),
        (
            '{"008613800000001": "busy", "+8613800000001": "never"}',
            "008613800000001 is given twice: '008613800000001' by {path} and '+8613800000001' "
            "by {path}",
        ),
    ],
)
def test_main_rejects_a_bad_answers_file(
    content: str | None,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_serving: None,
) -> None:
    path = tmp_path / "answers.json"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    assert expected.format(path=path) in refusal(["--answers-file", str(path)], capsys)


def test_answers_given_by_the_option_and_the_file_at_once_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_serving: None
) -> None:
    path = tmp_path / "answers.json"
    path.write_text('{"+8613800000001": "busy"}')
    error_line = refusal(
        ["--answers-file", str(path), "--answers", "008613800000001=answered"], capsys
    )
    assert (
        f"008613800000001 is given twice: '+8613800000001' by {path} and "
        "'008613800000001' by --answers"
    ) in error_line
