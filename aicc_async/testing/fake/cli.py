"""The command line of ``python -m aicc_async.testing [options]``: run FakeAICC in the foreground.

Prints one JSON line ``{"url": ..., "app_key": ..., "app_secret": ...}`` to stdout
(and the ``export AICC_...`` lines for a shell to stderr), then serves until SIGINT or
SIGTERM and exits 0. ``aicc sandbox`` is the same simulator with the same options
(:func:`main` with ``for_people=True``: only the ``export`` lines, on stdout). Options::

    --host H / --port P          where to listen (default 127.0.0.1, any free port)
    --no-record                  keep counters only, not every request
    --latency SECONDS            delay every business request (FakeAICC(latency=...))
    --hidden-rate-limit R        answer 429 above R business requests per second
    --chaos-probability P        enable seeded chaos (FakeAICC.chaos) when P > 0
    --chaos-faults LIST          comma-separated Fault values, required with P > 0
    --chaos-seed N               the chaos seed (default 0)
    --chaos-delay SECONDS        the delay of chaos HANG / LATENCY faults
    --callback-key KEY           sign release events with KEY (>= 16 characters; a test
                                 key: it shows in the process list); default unsigned
    --answer-rate P              probability a call is answered (default 0.7)
    --release-delay SECONDS      wait before posting a release event (default 0.05)
    --duplicate-rate P           probability a delivered event is sent twice (default 0)
    --answers NUMBER=OUTCOMES    who answers NUMBER, per attempt (FakeAICC(answers=...)):
                                 comma-separated answered, no_answer (or never), busy,
                                 random; the last repeats. Repeatable, e.g.
                                 --answers 8613800000001=no_answer,answered
    --answers-file PATH          a JSON object of numbers to an outcome or a list of
                                 them, as answers= takes; repeatable, with --answers too
                                 (a number, compared normalised, may be given only once)

``GET <url>/_fake/stats`` answers the fake's counters as JSON (see FakeAICC.stats).
:func:`add_server_arguments`, :func:`fake_from_args` and :func:`serve` let another
command line tool offer the same options and serving loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from aicc_async._numbers import normalise_number
from aicc_async.testing.fake.answers import AnswerPlan
from aicc_async.testing.fake.faults import Fault
from aicc_async.testing.fake.server import FakeAICC

__all__ = ["add_server_arguments", "exports", "fake_from_args", "main", "serve"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_FAULT_NAMES = ", ".join(f.value for f in Fault)
_ANSWERS_EXAMPLE = "8613800000001=no_answer,answered"

#: Numbers and their outcomes as one source gave them (``answers=``'s mapping, in order).
_Planned: TypeAlias = list[tuple[str, str | Sequence[str]]]


def _non_negative_seconds(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_rate(text: str) -> float:
    """argparse type: a finite float > 0 (requests per second)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected requests per second, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    """argparse type: a float within [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text!r}")
    return value


def _fault_list(text: str) -> tuple[Fault, ...]:
    """argparse type: comma-separated :class:`Fault` values (repeats weigh the choice)."""
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(f"expected at least one of: {_FAULT_NAMES}")
    faults: list[Fault] = []
    for name in names:
        try:
            faults.append(Fault(name))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"unknown fault {name!r}; valid faults: {_FAULT_NAMES}"
            ) from None
    return tuple(faults)


def _checked(planned: _Planned) -> _Planned:
    """``planned`` unchanged once ``FakeAICC(answers=...)`` would take it (ValueError if not)."""
    AnswerPlan(dict(planned))
    return planned


def _answers_entry(text: str) -> _Planned:
    """argparse type of ``--answers``: ``NUMBER=OUTCOME[,OUTCOME...]``."""
    number, equals, outcomes = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(
            f"expected NUMBER=OUTCOMES (for example {_ANSWERS_EXAMPLE}), got {text!r}"
        )
    try:
        return _checked([(number.strip(), [word.strip() for word in outcomes.split(",")])])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _RepeatedKeyError(ValueError):
    """A JSON object names the same key twice (``json`` would keep the last silently)."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKeyError(f"{key!r} appears twice")
        found[key] = value
    return found


def _answers_file(text: str) -> tuple[str, _Planned]:
    """argparse type of ``--answers-file``: the path and the JSON object it holds."""
    try:
        raw = Path(text).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {exc.strerror or exc}") from None
    try:
        plan = json.loads(raw, object_pairs_hook=_no_repeated_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON: {exc}") from None
    except _RepeatedKeyError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if not isinstance(plan, dict):
        raise argparse.ArgumentTypeError(
            f"{text!r} must hold a JSON object mapping numbers to outcomes, "
            'for example {"8613800000001": ["no_answer", "answered"]}'
        )
    try:
        return text, _checked(list(plan.items()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _planned_answers(args: argparse.Namespace) -> dict[str, str | Sequence[str]] | None:
    """The ``answers=`` mapping of ``--answers-file`` then ``--answers`` (None: neither).

    Raises ValueError when two entries name the same number, compared normalised.
    """
    sources: list[tuple[str, _Planned]] = list(args.answers_file or ())
    sources += [("--answers", planned) for planned in args.answers or ()]
    if not sources:
        return None
    answers: dict[str, str | Sequence[str]] = {}
    first: dict[str, tuple[str, str]] = {}
    for source, planned in sources:
        for number, outcomes in planned:
            key = normalise_number(number)
            if key in first:
                where, written = first[key]
                raise ValueError(
                    f"{key} is given twice: {written!r} by {where} and {number!r} by {source}; "
                    "give each number one list of outcomes"
                )
            first[key] = (source, number)
            answers[number] = outcomes
    return answers


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the FakeAICC options (host, port, recording, latency, chaos) to ``parser``.

    Single values are checked while parsing (argparse error, exit 2); the
    combination is checked by :func:`fake_from_args`.
    """
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free)")
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="do not keep every request in memory (for long benchmarks); counters are kept",
    )
    parser.add_argument(
        "--latency",
        type=_non_negative_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before handling each business request (default 0)",
    )
    parser.add_argument(
        "--hidden-rate-limit",
        type=_positive_rate,
        metavar="PER_SECOND",
        help="answer HTTP 429 (unprocessed) above this many business requests per second",
    )
    chaos = parser.add_argument_group(
        "chaos", "random faults with a fixed seed; enabled by --chaos-probability > 0"
    )
    chaos.add_argument(
        "--chaos-probability",
        type=_probability,
        default=None,
        metavar="P",
        help="probability in [0, 1] that a business request gets a fault",
    )
    chaos.add_argument(
        "--chaos-faults",
        type=_fault_list,
        default=None,
        metavar="LIST",
        help=f"comma-separated faults to choose from, among: {_FAULT_NAMES}",
    )
    chaos.add_argument(
        "--chaos-seed", type=int, default=None, metavar="N", help="random seed (default 0)"
    )
    chaos.add_argument(
        "--chaos-delay",
        type=_non_negative_seconds,
        default=None,
        metavar="SECONDS",
        help="how long hang/latency faults wait (default: hang forever, latency 0.5 s)",
    )
    _add_release_arguments(parser)


def _add_release_arguments(parser: argparse.ArgumentParser) -> None:
    release = parser.add_argument_group(
        "release events", "posted to each notification's callBackUrl (seeded, reproducible)"
    )
    release.add_argument(
        "--callback-key",
        default=None,
        metavar="KEY",
        help="shared key signing release events (>= 16 characters; default: unsigned)",
    )
    release.add_argument(
        "--answer-rate",
        type=_probability,
        default=0.7,
        metavar="P",
        help="probability in [0, 1] that a call is answered (default 0.7)",
    )
    release.add_argument(
        "--release-delay",
        type=_non_negative_seconds,
        default=0.05,
        metavar="SECONDS",
        help="wait this long after a notification before posting its event (default 0.05)",
    )
    release.add_argument(
        "--duplicate-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability in [0, 1] that a delivered event is sent a second time (default 0)",
    )
    release.add_argument(
        "--answers",
        type=_answers_entry,
        action="append",
        metavar="NUMBER=OUTCOMES",
        help="who answers NUMBER, per attempt: comma-separated answered, no_answer (or "
        "never), busy or random, the last repeating (for example "
        f"{_ANSWERS_EXAMPLE}); repeatable. Other numbers: --answer-rate",
    )
    release.add_argument(
        "--answers-file",
        type=_answers_file,
        action="append",
        metavar="PATH",
        help='a JSON object of numbers to an outcome or a list of them ({"8613800000001": '
        '["no_answer", "answered"], "8613800000002": "never"}); repeatable',
    )


def fake_from_args(args: argparse.Namespace) -> FakeAICC:
    """Build the (not yet started) FakeAICC that options from :func:`add_server_arguments` ask for.

    Raises ValueError when the chaos options do not fit together (``--chaos-probability``
    above 0 without ``--chaos-faults``, or another chaos option without
    ``--chaos-probability``), or when a release-event option is refused (a
    ``--callback-key`` under 16 characters), or when ``--answers`` and
    ``--answers-file`` name a number twice; pass the message to ``parser.error`` to exit 2.
    """
    probability: float | None = args.chaos_probability
    faults: tuple[Fault, ...] | None = args.chaos_faults
    seed: int | None = args.chaos_seed
    delay: float | None = args.chaos_delay
    if probability is None:
        given = [
            option
            for option, value in (
                ("--chaos-faults", faults),
                ("--chaos-seed", seed),
                ("--chaos-delay", delay),
            )
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)} given without --chaos-probability, which enables chaos"
            )
    elif probability > 0 and faults is None:
        raise ValueError(
            f"--chaos-probability above 0 needs --chaos-faults (among: {_FAULT_NAMES})"
        )
    answers = _planned_answers(args)
    fake = FakeAICC(
        host=args.host,
        port=args.port,
        record=not args.no_record,
        latency=args.latency,
        hidden_rate_limit=args.hidden_rate_limit,
        callback_key=args.callback_key,
        answer_rate=args.answer_rate,
        release_delay=args.release_delay,
        duplicate_rate=args.duplicate_rate,
        answers=answers,
    )
    if probability is not None and probability > 0 and faults is not None:
        fake.chaos(
            seed=seed if seed is not None else 0,
            probability=probability,
            faults=faults,
            delay=delay,
        )
    return fake


async def serve(fake: FakeAICC, on_ready: Callable[[FakeAICC], None]) -> None:
    """Start ``fake``, call ``on_ready(fake)`` once it listens, serve until SIGINT/SIGTERM.

    The signal handlers are installed on the running loop (where supported) and
    removed afterwards; ``fake`` is closed on the way out, whatever happens.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        async with fake:
            on_ready(fake)
            await stop.wait()
    finally:
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


def exports(fake: FakeAICC, callback_key: str | None) -> str:
    """The shell lines that point ``aicc`` (and ``ClientConfig.from_env``) at ``fake``."""
    lines = [
        f"export AICC_BASE_URL={fake.url}",
        f"export AICC_APP_KEY={fake.app_key}",
        f"export AICC_APP_SECRET={fake.app_secret}",
    ]
    if callback_key is not None:
        lines.append(f"export AICC_CALLBACK_KEY={callback_key}")
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "python -m aicc_async.testing",
    for_people: bool = False,
) -> int:
    """Entry point of ``python -m aicc_async.testing`` and ``aicc sandbox`` (``prog``,
    ``for_people``): the same options, faults and serving loop. Prints the JSON line on
    stdout (for scripts) and the ``export`` lines on stderr; ``for_people``: only the
    ``export`` lines, on stdout, with a fresh ``--callback-key`` unless one is given
    and no request kept in memory. Returns the exit code (argparse exits 2 on bad
    options; 2 too when the address cannot be bound)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the FakeAICC simulator (nobody is called) until SIGINT/SIGTERM.",
    )
    add_server_arguments(parser)
    if for_people:
        parser.set_defaults(no_record=True, callback_key=secrets.token_urlsafe(24))
    args = parser.parse_args(argv)
    try:
        fake = fake_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))

    def ready(fake: FakeAICC) -> None:
        if not for_people:
            line = {"url": fake.url, "app_key": fake.app_key, "app_secret": fake.app_secret}
            print(json.dumps(line), flush=True)
        signed = "a signed" if args.callback_key is not None else "an unsigned"
        print(
            f"FakeAICC is listening on {fake.url} (Ctrl-C to stop). In another shell:\n\n"
            f"{exports(fake, args.callback_key)}\n\n"
            f"It posts {signed} release event for each notification with a callback URL "
            "(--callback-url).\n",
            file=sys.stdout if for_people else sys.stderr,
            flush=True,
        )

    try:
        asyncio.run(serve(fake, ready))
    except KeyboardInterrupt:  # a SIGINT that arrived before the handler was installed
        return 0
    except OSError as exc:
        parser.exit(2, f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
    return 0
