"""The ``aicc`` commands (click): notify, write-back, report, sandbox, demo."""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aicc_async.adaptive import AUTO, AutoRate
from aicc_async.bulk import CampaignKind, CampaignReport
from aicc_async.bulk.campaign import KINDS
from aicc_async.bulk.campaign.exports import export_problems, export_unanswered_rows
from aicc_async.bulk.dialer.hours import parse_calling_hours, resolve_zone
from aicc_async.bulk.dialer.specs import parse_duration, parse_limit
from aicc_async.bulk.journal import DEFAULT_LEASE, mask_dsn
from aicc_async.callbacks import MIN_SHARED_KEY
from aicc_async.cli.campaigns import Callbacks, Options, collecting_less, run_campaign
from aicc_async.cli.display import render_report
from aicc_async.cli.html_report import write_html_report
from aicc_async.cli.journals import journal_at
from aicc_async.cli.outcomes import parse_address, run_listener
from aicc_async.cli.terminal import (
    BAD_USAGE,
    INTERRUPTED,
    JOURNAL_FAILED,
    OK,
    Stop,
    Terminal,
    sdk_log,
    shown_json,
)
from aicc_async.config import DEFAULT_LIMITS
from aicc_async.errors import AICCValidationError, CampaignError, JournalError

if TYPE_CHECKING:
    pass

__all__ = ["run"]

#: A PostgreSQL DSN in a usage error's text (click may quote any argument).
_DSN = re.compile(r"postgres(?:ql)?://[^\s'\"()]+", re.IGNORECASE)

_VERBOSE = click.option(
    "-v",
    "--verbose",
    count=True,
    help="Show the SDK's log on stderr (-v: INFO, -vv: DEBUG).",
)


def _callback_key(terminal: Terminal, allow_unsigned: bool) -> str | None:
    """The shared key from ``AICC_CALLBACK_KEY`` (never from an argument)."""
    key = os.environ.get("AICC_CALLBACK_KEY") or None
    if key is None and not allow_unsigned:
        raise terminal.fail(
            "set AICC_CALLBACK_KEY to the tenant's callback shared key, or pass "
            "--allow-unsigned to accept unsigned release events (the GUI-configured URL)"
        )
    if key is not None and allow_unsigned:
        raise terminal.fail("--allow-unsigned cannot be used with AICC_CALLBACK_KEY set")
    if key is not None and len(key) < MIN_SHARED_KEY:
        raise terminal.fail(
            f"AICC_CALLBACK_KEY is too short: AICC's shared keys have at least "
            f"{MIN_SHARED_KEY} characters"
        )
    return key


def _campaign_command(
    kind: CampaignKind,
    source: Path,
    journal: str,
    campaign: str | None,
    lease: float | None,
    sandbox: bool,
    verbose: int,
    callback_url: str | None = None,
    listen: tuple[str, int] | None = None,
    wait_outcomes: float = 120.0,
    allow_unsigned: bool = False,
    **options: Any,
) -> None:
    """What ``notify`` and ``write-back`` run; ends with ``Stop(exit status)``."""
    terminal = Terminal()
    where = journal_at(terminal, journal, campaign, lease)
    dialer = _dialer(terminal, options, wait_outcomes, callback_url)
    callbacks = None
    if listen is not None and callback_url is None:
        raise terminal.fail("--listen needs --callback-url: the URL AICC posts events to")
    if callback_url is not None:
        key = None
        if listen is not None:
            key = _callback_key(terminal, allow_unsigned)
        callbacks = Callbacks(callback_url, listen, key, allow_unsigned, wait_outcomes)
    fake = None
    if sandbox:  # the simulator is imported only when asked for
        from aicc_async.testing import FakeAICC

        fake = FakeAICC(callback_key=None if callbacks is None else callbacks.shared_key)
    with sdk_log(terminal, verbose), collecting_less():
        status = asyncio.run(
            run_campaign(
                terminal,
                kind,
                source,
                where,
                Options(callbacks=callbacks, dialer=dialer, **options),
                sandbox=fake,
            )
        )
    raise Stop(status)


_DIALER_OPTIONS = (
    "calling_hours",
    "timezone",
    "no_wait",
    "do_not_call",
    "attempts",
    "redial_after",
    "contact_history",
    "max_calls_per_number",
)


def _dialer(
    terminal: Terminal, options: dict[str, Any], wait: float, callback_url: str | None
) -> dict[str, Any]:
    """The dialer's options of ``notify`` (taken out of ``options``), as
    ``Campaign.run`` takes them; the zone of ``TZ`` when no ``--timezone`` is given."""
    dialer = {name: options.pop(name) for name in _DIALER_OPTIONS if name in options}
    if not dialer:
        return {}
    if dialer["max_calls_per_number"] is not None and dialer["contact_history"] is None:
        raise terminal.fail("--max-calls-per-number needs --contact-history to count calls in")
    if dialer["calling_hours"] is not None and dialer["timezone"] is None:
        variable = os.environ.get("TZ")
        if variable:
            try:
                resolve_zone(variable.removeprefix(":"), field="TZ")
            except AICCValidationError as exc:
                raise terminal.fail(f"{exc.message}; or give --timezone NAME") from None
            dialer["timezone"] = variable.removeprefix(":")
    if dialer["attempts"] > 1 and callback_url is None:
        terminal.warn(
            "--attempts: only calls whose release event says not answered are redialed; "
            "without --callback-url (and --listen, or `aicc listen` on this journal) only "
            "rows with a callback_url of their own can be"
        )
    return {**dialer, "do_not_call": list(dialer["do_not_call"]), "wait_outcomes": wait}


def _checked(parse: Callable[[Any], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: ``value`` given as written if ``parse`` accepts it (exit 2 with
    its message otherwise)."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            parse(value)
        except AICCValidationError as exc:
            raise click.BadParameter(exc.message.split(": ", 1)[-1]) from None
        return value

    return check


def _concurrency(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    if value == AUTO:
        return AUTO
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 1000:
        raise click.BadParameter(f"expected a number from 1 to 1000 or auto, got {value!r}")
    return number


def _rate(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> float | AutoRate | None:
    """``--rate R``, ``--rate auto`` or both (R is then the ceiling of auto)."""
    auto = AUTO in values
    numbers: list[float] = []
    for value in values:
        if value == AUTO:
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise click.BadParameter(f"expected rows per second > 0 or auto, got {value!r}")
        numbers.append(number)
    if len(numbers) > 1 or values.count(AUTO) > 1:
        raise click.BadParameter("give one number, auto, or auto and one number (its ceiling)")
    if auto:
        return AutoRate(ceiling=numbers[0] if numbers else None)
    return numbers[0] if numbers else None


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _delimiter(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return "\t" if value == "tab" else value


_LISTEN = click.option(
    "--listen",
    metavar="HOST:PORT",
    callback=_address,
    help="Receive the release events here (the shared key comes from AICC_CALLBACK_KEY).",
)
_CAMPAIGN = click.option(
    "--campaign",
    metavar="NAME",
    help="With a PostgreSQL journal (postgresql://...): the campaign's name in it.",
)
_ALLOW_UNSIGNED = click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept unsigned release events (no AICC_CALLBACK_KEY: the GUI-configured URL).",
)


def _campaign_options(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    group = KINDS[kind].group

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        options = [
            click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
            click.option(
                "--journal",
                required=True,
                type=click.Path(dir_okay=False),
                metavar="FILE|DSN",
                help="SQLite journal of the campaign (with its -wal file); the same path "
                "resumes it. Or a PostgreSQL database (postgresql://USER@HOST:PORT/DB, with "
                "--campaign): several workers then run the campaign together.",
            ),
            _CAMPAIGN,
            click.option(
                "--lease",
                type=click.FloatRange(1, 3600),
                metavar="SECONDS",
                help=f"PostgreSQL journal: this worker's lease, renewed every third of it "
                f"(default {DEFAULT_LEASE:g}). When a worker dies, the others record its "
                "rows in flight as unknown once its lease expired.",
            ),
            click.option(
                "--concurrency",
                default=str(DEFAULT_LIMITS[group]),
                show_default=True,
                metavar="N|auto",
                callback=_concurrency,
                help="Requests in flight at once (the connection pool follows it); auto: "
                "what the rate needs at the latency seen (rate x latency).",
            ),
            click.option(
                "--rate",
                multiple=True,
                metavar="R|auto",
                callback=_rate,
                help="At most R rows started per second (with AICC_REDIS_URL: across every "
                "process sharing that Redis, e.g. all workers of a campaign). auto: find "
                "the tenant's limit from AICC's answers; '--rate auto --rate R' never goes "
                "above R.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(0.5, 300),
                default=15.0,
                show_default=True,
                help="Seconds to wait for each answer.",
            ),
            click.option(
                "--delimiter",
                type=click.Choice([",", ";", "tab"]),
                callback=_delimiter,
                help="What separates SOURCE's columns (default: read off its header line: "
                "commas, semicolons as Excel writes in much of Europe, or tabs).",
            ),
            click.option(
                "--sandbox",
                is_flag=True,
                help="Send to an in-process FakeAICC instead (nobody is called).",
            ),
            click.option(
                "--retry-failed",
                is_flag=True,
                help="Send rows AICC refused again (not rows with invalid input).",
            ),
            click.option(
                "--allow-insecure-http",
                is_flag=True,
                help="Allow an http:// AICC_BASE_URL / AICC_TOKEN_URL off this machine "
                "(the app secret then travels in cleartext).",
            ),
            _VERBOSE,
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aicc-async")
def aicc() -> None:
    """Bulk voice notifications and outbound-result write-backs for Huawei Cloud AICC.

    Credentials come from AICC_BASE_URL, AICC_APP_KEY and AICC_APP_SECRET (optional
    AICC_TOKEN_URL). Exit status: 0 every row done (or withdrawn, or a duplicate), 1
    some rows failed, unknown or pending, 2 bad usage, configuration or input, 3 the
    journal could not be read or written, 130 stopped by Ctrl-C (run it again to resume).
    """


@aicc.command()
@_campaign_options("voice_notification")
@click.option(
    "--retry-unknown",
    is_flag=True,
    help="Send rows whose outcome is unknown again: anyone already called is called twice.",
)
@click.option(
    "--allow-repeat-numbers",
    is_flag=True,
    help="Phone a number once per row that has it (default: once per campaign; later "
    "rows with the same number are recorded as duplicate).",
)
@click.option(
    "--callback-url",
    help="Where AICC posts each call's release event (rows without a callback_url).",
)
@_LISTEN
@click.option(
    "--wait-outcomes",
    type=click.FloatRange(0, 86400),
    default=120.0,
    show_default=True,
    help="With --listen: seconds to wait for outstanding release events after the last send.",
)
@_ALLOW_UNSIGNED
@click.option(
    "--calling-hours",
    metavar="SPEC",
    callback=_checked(parse_calling_hours),
    help='Start a row only inside these windows of its zone, e.g. "mon-fri 09:00-20:00, '
    'sat 10:00-16:00"; the run waits for the next window.',
)
@click.option(
    "--timezone",
    metavar="NAME",
    callback=_checked(resolve_zone),
    help="IANA zone (Asia/Shanghai) of rows without a timezone column value; default: "
    "the machine's.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="When every row left waits (calling hours, a redial), exit 1 at once saying until "
    "when, instead of sleeping (cron: the next run goes on).",
)
@click.option(
    "--do-not-call",
    "do_not_call",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Numbers never to phone: one per line, or a CSV with a called column (repeatable). "
    "Re-read when it changes; such rows are suppressed.",
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 10),
    default=1,
    show_default=True,
    help="Calls per row in all: a row whose release event says not answered is redialed.",
)
@click.option(
    "--redial-after",
    default="30m",
    show_default=True,
    metavar="DURATION",
    callback=_checked(parse_duration),
    help="How long after an unanswered call its row is redialed (90s, 30m, 2h).",
)
@click.option(
    "--contact-history",
    metavar="PATH|DSN",
    help="Record every call in this SQLite file or PostgreSQL database, shared by "
    "campaigns and workers.",
)
@click.option(
    "--max-calls-per-number",
    metavar="N/PERIOD",
    callback=_checked(parse_limit),
    help="Do not phone a number that had N calls within PERIOD in the contact history "
    "(1/1d, 3/7d): its row is limited, checked again by a later run.",
)
def notify(**kwargs: Any) -> None:
    """Phone everyone in SOURCE (CSV) with a voice notification.

    Columns: called, and voice_content or text (read aloud); optional caller_present,
    callback_url, priority and id (the row's key; default: its line number). Running
    the same command again resumes: rows already sent are never sent again, rows
    removed from SOURCE are not sent, and a number is phoned once per campaign.
    With --callback-url and --listen, the calls' release events (answered or not) are
    recorded in the journal as they arrive. With --journal postgresql://... and
    --campaign NAME, several workers (this command with the same SOURCE, on one or
    more machines) run the campaign together.
    """
    _campaign_command("voice_notification", **kwargs)


@aicc.command("write-back")
@_campaign_options("write_back")
def write_back(**kwargs: Any) -> None:
    """Write back the outbound-call results in SOURCE (CSV).

    Columns: sub_cc_no, vdn_id, unique_id, service_id; optional status, device_type,
    phone_number, fail_code, asr_result, fetch_time, write_start_time, end_call_time,
    call_id and id (the row's key; default: its line number). Running the same
    command again resumes, re-sending rows whose outcome was unknown (harmless).
    """
    _campaign_command("write_back", **kwargs)


@aicc.command()
@click.argument("journal", type=click.Path(dir_okay=False))
@_CAMPAIGN
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--html",
    "as_html",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write the report with charts as one self-contained HTML page (needs "
    "pip install 'aicc-async[html]').",
)
@click.option(
    "--export",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the failed, unknown and duplicate rows to this CSV file.",
)
@click.option(
    "--export-unanswered",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rows whose call was not answered to this CSV, in the input format "
    "(the input of a follow-up campaign).",
)
@_VERBOSE
def report(
    journal: str,
    campaign: str | None,
    as_json: bool,
    as_html: Path | None,
    export: Path | None,
    export_unanswered: Path | None,
    verbose: int,
) -> None:
    """Show how a campaign went: rows per state, problems by code, call outcomes.

    JOURNAL is a SQLite journal file, or a PostgreSQL DSN with --campaign NAME. Reads
    the journal without writing to it, also while a campaign runs on it.
    """
    terminal = Terminal()
    where = journal_at(terminal, journal, campaign)

    async def work() -> tuple[CampaignReport, int | None, int | None]:
        async with where.open(read_only=True) as opened:
            exported = None if export is None else await export_problems(opened, export)
            unanswered = None
            if export_unanswered is not None:
                unanswered = await export_unanswered_rows(opened, export_unanswered)
            if as_html is not None:
                await write_html_report(opened, as_html)
            return await opened.report(), exported, unanswered

    try:
        with sdk_log(terminal, verbose):
            result, exported, unanswered = asyncio.run(work())
    except JournalError as exc:
        raise terminal.fail(exc.message, JOURNAL_FAILED) from None
    except CampaignError as exc:
        raise terminal.fail(exc.message) from None
    if as_json:
        terminal.out.print_json(data=shown_json(result.to_json()))
    else:
        terminal.out.print(render_report(result, where.argument))
    if exported is not None:
        terminal.note(f"Wrote {exported:,} failed, unknown and duplicate rows to {export}.")
    if as_html is not None:
        terminal.note(f"Wrote the report to {as_html} (open it in a web browser).")
    if unanswered is not None:
        terminal.note(
            f"Wrote {unanswered:,} rows whose call was not answered to {export_unanswered}: "
            f"`aicc notify {export_unanswered} --journal "
            f"{'DSN --campaign NEW-NAME' if where.postgres else 'NEW.db'}` calls them again."
        )
    raise Stop(OK)


@aicc.command()
@click.option(
    "--journal",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE|DSN",
    help="The voice campaign's journal to record the release events in (a SQLite "
    "file, or a PostgreSQL DSN with --campaign).",
)
@_CAMPAIGN
@click.option(
    "--listen",
    "address",
    metavar="HOST:PORT",
    required=True,
    callback=_address,
    help="Where to receive the release events (any path, POST).",
)
@_ALLOW_UNSIGNED
@_VERBOSE
def listen(
    journal: str,
    campaign: str | None,
    address: tuple[str, int],
    allow_unsigned: bool,
    verbose: int,
) -> None:
    """Receive AICC's release events and record each call's outcome in JOURNAL, until
    Ctrl-C. The shared key comes from AICC_CALLBACK_KEY. A campaign may be running on
    the same journal meanwhile.
    """
    terminal = Terminal()
    where = journal_at(terminal, journal, campaign)
    key = _callback_key(terminal, allow_unsigned)
    with sdk_log(terminal, verbose):
        raise Stop(asyncio.run(run_listener(terminal, where, address, key, allow_unsigned)))


@aicc.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
def sandbox(options: tuple[str, ...]) -> None:
    """Run FakeAICC, a local AICC simulator, until Ctrl-C. Nobody is called.

    The options of `python -m aicc_async.testing` (see `aicc sandbox --help`): where
    to listen, latency, a hidden rate limit, seeded faults, release events.
    """
    from aicc_async.testing.fake.cli import main  # the simulator, only when asked for

    raise Stop(main(options, prog="aicc sandbox", for_people=True))


@aicc.command()
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the demo's journal here (default: a temporary one, removed afterwards).",
)
def demo(journal: Path | None) -> None:
    """Run a sample campaign of a few thousand rows against a local AICC simulator."""
    terminal = Terminal()
    with sdk_log(terminal, 0):
        from aicc_async.cli.demo import run_demo  # it brings the simulator

        raise Stop(asyncio.run(run_demo(terminal, journal)))


def run(argv: Sequence[str] | None) -> int:
    """Run the ``aicc`` group; returns the exit status."""
    try:
        aicc.main(args=argv, prog_name="aicc", standalone_mode=False)
    except Stop as stop:
        return stop.status
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.ClickException as exc:  # shown with any DSN's password masked
        shown = io.StringIO()
        exc.show(file=shown)
        sys.stderr.write(_DSN.sub(lambda found: mask_dsn(found.group()), shown.getvalue()))
        return BAD_USAGE
    except click.Abort:
        return INTERRUPTED
    return OK
