"""The ``aicc`` commands (click): notify, write-back, report, sandbox, demo."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

from aicc_async.bulk import Campaign, CampaignKind, CampaignReport
from aicc_async.bulk.csv_files import CampaignFile, export_problems
from aicc_async.cli.display import CampaignProgress, render_report
from aicc_async.client import AICCClient
from aicc_async.config import DEFAULT_LIMITS, ClientConfig, Timeout
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.errors import (
    AICCAuthError,
    AICCConnectionError,
    AICCValidationError,
    CampaignError,
)
from aicc_async.testing import FakeAICC, Fault
from aicc_async.testing.__main__ import serve

__all__ = ["run"]

#: Exit statuses.
OK, SOME_NOT_DONE, BAD_USAGE, INTERRUPTED = 0, 1, 2, 130

_GROUPS = {"voice_notification": "voice_notification", "write_back": "outbound"}
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop(Exception):
    """Ends a command with an exit status after its message was shown."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _consoles() -> tuple[Console, Console]:
    """(stdout for results, stderr for progress and messages)."""
    return Console(), Console(stderr=True)


def _fail(err: Console, message: str, status: int = BAD_USAGE) -> _Stop:
    err.print(f"[bold red]aicc:[/] {message}", highlight=False)
    return _Stop(status)


@contextlib.contextmanager
def _log_to(err: Console) -> Any:
    """Show the SDK's warnings on ``err`` while a command runs."""
    logger = logging.getLogger("aicc_async")
    handler = RichHandler(console=err, show_time=False, show_path=False)
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM while a command runs: the first calls ``soft`` if it
    is set, otherwise it cancels the command's task, as every later one does."""

    def __init__(self) -> None:
        self.count = 0
        self.soft: Callable[[], None] | None = None
        task = asyncio.current_task()
        assert task is not None
        self._task = task

    def _handle(self) -> None:
        self.count += 1
        if self.count == 1 and self.soft is not None:
            self.soft()
        else:
            self._task.cancel()

    def __enter__(self) -> _Signals:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt
                loop.add_signal_handler(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _client(
    sandbox: FakeAICC | None, group: str, concurrency: int, timeout: float
) -> AsyncIterator[AICCClient]:
    options: dict[str, Any] = {
        "limits": {group: concurrency},
        "timeout": Timeout(total=timeout, connect=min(5.0, timeout / 2)),
    }
    if sandbox is not None:
        async with sandbox, sandbox.client(**options) as aicc:
            yield aicc
    else:
        async with AICCClient.from_config(ClientConfig.from_env(os.environ, **options)) as aicc:
            yield aicc


def _check_environment(err: Console) -> None:
    try:
        ClientConfig.from_env(os.environ)
    except AICCValidationError as exc:
        raise _fail(err, f"{exc.message}; or try it out with --sandbox") from None


async def _campaign(
    kind: CampaignKind,
    source: Path,
    journal: Path,
    *,
    concurrency: int,
    rate: float | None,
    timeout: float,
    sandbox: FakeAICC | None,
    retry_unknown: bool,
    retry_failed: bool,
    out: Console,
    err: Console,
) -> int:
    """Load ``source`` into ``journal`` and send its pending rows; returns the exit status."""
    group = _GROUPS[kind]
    with _Signals() as signals:
        try:
            with CampaignFile(source, kind) as rows:
                if rows.ignored:
                    err.print(f"[yellow]Ignoring column(s) {', '.join(rows.ignored)}[/]")
                async with Campaign(journal, kind) as campaign:
                    with CampaignProgress(err) as progress:
                        status = await _load_and_send(
                            campaign,
                            rows,
                            progress,
                            lambda: _client(sandbox, group, concurrency, timeout),
                            signals,
                            concurrency=concurrency,
                            rate=rate,
                            retry_unknown=retry_unknown,
                            retry_failed=retry_failed,
                            err=err,
                        )
                    report = await campaign.report()
        except CampaignError as exc:
            raise _fail(err, exc.message) from None
        except asyncio.CancelledError:
            err.print("[yellow]Stopped. Run the same command again to resume.[/]")
            return INTERRUPTED
        out.print(render_report(report))
    if status != OK:
        return status
    counts = report.counts
    return OK if counts.done == counts.total else SOME_NOT_DONE


async def _load_and_send(
    campaign: Campaign,
    rows: CampaignFile,
    progress: CampaignProgress,
    client: Callable[[], contextlib.AbstractAsyncContextManager[AICCClient]],
    signals: _Signals,
    *,
    concurrency: int,
    rate: float | None,
    retry_unknown: bool,
    retry_failed: bool,
    err: Console,
) -> int:
    try:
        summary = await campaign.load(rows.rows(), on_progress=progress.loading)
    except asyncio.CancelledError:
        err.print("[yellow]Stopped while reading the input; nothing was sent.[/]")
        return INTERRUPTED
    progress.loaded(summary.read)
    if summary.replaced:
        err.print(f"{summary.replaced:,} rows changed since the last run and were never sent.")
    if retry_unknown:
        unknown = (await campaign.report()).counts.unknown
        if unknown:
            err.print(
                f"[bold yellow]--retry-unknown: sending {unknown:,} rows whose outcome was "
                "unknown again. Anyone among them who was already called is called twice.[/]"
            )

    def soft() -> None:
        campaign.stop()
        err.print(
            "[yellow]Stopping: letting the requests in flight finish. Ctrl-C again to "
            "abandon them (they will be recorded as unknown).[/]"
        )

    signals.soft = soft
    try:
        async with client() as aicc:
            await campaign.run(
                aicc,
                concurrency=concurrency,
                rate=rate,
                retry_unknown=retry_unknown,
                retry_failed=retry_failed,
                on_progress=progress.sending,
            )
    except asyncio.CancelledError:
        pass
    except AICCAuthError as exc:
        err.print(f"[bold red]aicc:[/] {exc.message}. The rows not sent stay pending.")
        return BAD_USAGE
    except AICCConnectionError as exc:
        err.print(
            f"[bold red]aicc:[/] {exc.message} Stopped; the rows not sent stay pending: "
            "run the same command again to send them."
        )
        return SOME_NOT_DONE
    finally:
        signals.soft = None
    if signals.count:
        err.print("[yellow]Stopped. Run the same command again to resume.[/]")
        return INTERRUPTED
    return OK


def _campaign_command(
    kind: CampaignKind,
    source: Path,
    journal: Path,
    concurrency: int,
    rate: float | None,
    timeout: float,
    sandbox: bool,
    retry_failed: bool,
    retry_unknown: bool = False,
) -> None:
    """What ``notify`` and ``write-back`` run; ends with ``_Stop(exit status)``."""
    out, err = _consoles()
    if not sandbox:
        _check_environment(err)
    with _log_to(err):
        status = asyncio.run(
            _campaign(
                kind,
                source,
                journal,
                concurrency=concurrency,
                rate=rate,
                timeout=timeout,
                sandbox=FakeAICC() if sandbox else None,
                retry_unknown=retry_unknown,
                retry_failed=retry_failed,
                out=out,
                err=err,
            )
        )
    raise _Stop(status)


def _campaign_options(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    group = _GROUPS[kind]

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        options = [
            click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
            click.option(
                "--journal",
                required=True,
                type=click.Path(dir_okay=False, path_type=Path),
                help="SQLite journal of the campaign; the same path resumes it.",
            ),
            click.option(
                "--concurrency",
                type=click.IntRange(1, 1000),
                default=DEFAULT_LIMITS[group],
                show_default=True,
                help="Requests in flight at once.",
            ),
            click.option(
                "--rate",
                type=click.FloatRange(0, min_open=True),
                help="At most this many rows started per second.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(0.5, 300),
                default=15.0,
                show_default=True,
                help="Seconds to wait for each answer.",
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
    AICC_TOKEN_URL). Exit status: 0 every row done, 1 some rows failed or unknown,
    2 bad usage, configuration or input, 130 stopped by Ctrl-C (run it again to resume).
    """


@aicc.command()
@_campaign_options("voice_notification")
@click.option(
    "--retry-unknown",
    is_flag=True,
    help="Send rows whose outcome is unknown again: anyone already called is called twice.",
)
def notify(**kwargs: Any) -> None:
    """Phone everyone in SOURCE (CSV) with a voice notification.

    Columns: called, and voice_content or text (read aloud); optional caller_present,
    callback_url, priority and id (the row's key; default: its line number). Running
    the same command again resumes: rows already sent are never sent again.
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
@click.argument("journal", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--export",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the failed and unknown rows to this CSV file.",
)
def report(journal: Path, as_json: bool, export: Path | None) -> None:
    """Show how a campaign went: rows per state and failures by code."""
    out, err = _consoles()

    async def work() -> tuple[CampaignReport, int | None]:
        async with Campaign(journal) as campaign:
            exported = None if export is None else await export_problems(campaign, export)
            return await campaign.report(), exported

    try:
        with _log_to(err):
            result, exported = asyncio.run(work())
    except CampaignError as exc:
        raise _fail(err, exc.message) from None
    if as_json:
        out.print_json(json.dumps(result.to_json()))
    else:
        out.print(render_report(result))
    if exported is not None:
        err.print(f"Wrote {exported:,} failed and unknown rows to {export}.")
    raise _Stop(OK)


@aicc.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (default: any).")
@click.option(
    "--latency",
    type=click.FloatRange(0, 60),
    default=0.0,
    help="Seconds every answer is delayed.",
)
def sandbox(host: str, port: int, latency: float) -> None:
    """Run FakeAICC, a local AICC simulator, until Ctrl-C. Nobody is called."""
    out, err = _consoles()

    def ready(fake: FakeAICC) -> None:
        out.print(
            f"FakeAICC is listening on {fake.url} (Ctrl-C to stop). In another shell:\n\n"
            f"  export AICC_BASE_URL={fake.url}\n"
            f"  export AICC_APP_KEY={fake.app_key}\n"
            f"  export AICC_APP_SECRET={fake.app_secret}\n",
            highlight=False,
            soft_wrap=True,
        )

    try:
        asyncio.run(serve(FakeAICC(host=host, port=port, record=False, latency=latency), ready))
    except OSError as exc:
        raise _fail(err, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    raise _Stop(OK)


def _demo_contacts() -> Path:
    packaged = resources.files("aicc_async") / "_demo" / "contacts.csv"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "examples" / "contacts.csv"


def _demo_fake(contacts: Path) -> FakeAICC:
    """A FakeAICC that behaves like a busy tenant: some numbers not on the trial
    trustlist, a few busy answers, and rare connection resets after processing."""
    fake = FakeAICC(record=False, latency=0.02)
    with CampaignFile(contacts, "voice_notification") as source:
        called = [
            row.request.called
            for row in source.rows()
            if isinstance(row.request, CreateVoiceNotificationRequest)
        ]
    fake.trial_trustlist = {n for i, n in enumerate(called) if i % 250 != 7}
    fake.chaos(
        seed=2026,
        probability=0.01,
        faults=[Fault.BUSY, Fault.BUSY, Fault.RESET_AFTER_PROCESSING],
    )
    return fake


@aicc.command()
def demo() -> None:
    """Run a sample campaign of a few thousand rows against a local AICC simulator."""
    out, err = _consoles()
    contacts = _demo_contacts()
    journal = Path(tempfile.mkdtemp(prefix="aicc-demo-")) / "campaign.db"
    err.print(
        f"[bold]aicc demo[/]: the voice campaign in {contacts.name} against FakeAICC, a "
        "local AICC simulator (nobody is called). Some numbers are not on the simulated "
        "tenant's trustlist, a few answers are 'busy' (retried) and a few connections "
        "drop after the call was placed (recorded as unknown, never re-sent).\n",
        highlight=False,
    )
    with _log_to(err):
        asyncio.run(
            _campaign(
                "voice_notification",
                contacts,
                journal,
                concurrency=DEFAULT_LIMITS["voice_notification"],
                rate=None,
                timeout=15.0,
                sandbox=_demo_fake(contacts),
                retry_unknown=False,
                retry_failed=False,
                out=out,
                err=err,
            )
        )
    err.print(
        f"\nThe journal is {journal}: `aicc report {journal}` shows this report again. "
        "Next: `aicc sandbox` in one shell, then `aicc notify YOUR.csv --journal "
        "campaign.db` in another.",
        highlight=False,
    )
    raise _Stop(OK)


def run(argv: Sequence[str] | None) -> int:
    """Run the ``aicc`` group; returns the exit status."""
    try:
        aicc.main(args=argv, prog_name="aicc", standalone_mode=False)
    except _Stop as stop:
        return stop.status
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return BAD_USAGE
    except click.Abort:
        return INTERRUPTED
    return OK
