"""What ``aicc notify`` and ``aicc write-back`` do: bind the journal to its target, load
the input, send the pending rows, show the report."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from aicc_async.adaptive import AUTO, AutoRate
from aicc_async.bulk import Campaign, CampaignKind, Target
from aicc_async.bulk.campaign import KINDS, LoadSummary
from aicc_async.bulk.campaign.csv_input import DELIMITERS, CampaignFile
from aicc_async.bulk.journal import KeyChanged
from aicc_async.cli.display import CampaignProgress, render_report
from aicc_async.cli.journals import JournalAt
from aicc_async.cli.outcomes import (
    Listening,
    key_mismatch_message,
    receiving,
    wait_for_outcomes,
)
from aicc_async.cli.signals import Signals
from aicc_async.cli.terminal import (
    BAD_USAGE,
    INTERRUPTED,
    JOURNAL_FAILED,
    OK,
    SOME_NOT_DONE,
    Terminal,
    shown,
)
from aicc_async.client import AICCClient
from aicc_async.config import ENVIRONMENT, REQUIRED_ENVIRONMENT, ClientConfig, to_timeout
from aicc_async.errors import (
    AICCAuthError,
    AICCError,
    AICCValidationError,
    CampaignError,
    JournalError,
)

if TYPE_CHECKING:
    from aicc_async.testing import FakeAICC

__all__ = ["Callbacks", "Options", "environment_config", "run_campaign"]

_DEFAULT_POOL: int = attrs.fields(ClientConfig).max_connections.default or 100
_AUTO_POOL = 500  # --concurrency auto: the most requests in flight (connections open lazily)


@attrs.frozen
class Callbacks:
    """Release events for a voice campaign: ``url`` goes out with every notification;
    with ``listen`` (host, port) the command receives them itself, then waits up to
    ``wait`` seconds for the outstanding ones. ``url=None`` with ``listen``: the
    receiver's own loopback URL (the demo)."""

    url: str | None
    listen: tuple[str, int] | None = None
    shared_key: str | None = None
    allow_unsigned: bool = False
    wait: float = 120.0


@attrs.frozen
class Options:
    """The options of one campaign command."""

    concurrency: int | Literal["auto"]
    rate: float | AutoRate | None
    timeout: float
    retry_unknown: bool = False
    retry_failed: bool = False
    allow_repeat_numbers: bool = False
    allow_insecure_http: bool = False
    callbacks: Callbacks | None = None
    #: The input's column separator (``None``: read off its header).
    delimiter: str | None = None
    #: The dialer's options, as ``Campaign.run`` takes them (``notify``).
    dialer: dict[str, Any] = attrs.field(factory=dict)

    def client_options(self, group: str) -> dict[str, Any]:
        """``AICCClient`` options: the pool and the group's limit follow the concurrency
        (``auto``: up to ``_AUTO_POOL`` in flight, as many as the rate needs)."""
        most = _AUTO_POOL if self.concurrency == AUTO else self.concurrency
        return {
            "limits": {group: most},
            "max_connections": max(most, _DEFAULT_POOL),
            "timeout": to_timeout(self.timeout),
            "allow_insecure_http": self.allow_insecure_http,
        }


def environment_config(
    terminal: Terminal, environ: Mapping[str, str], **options: Any
) -> ClientConfig:
    """The client settings from the environment; a ``Stop`` naming the variable if bad."""
    try:
        return ClientConfig.from_env(environ, **options)
    except AICCValidationError as exc:
        field = exc.field or ""
        if field.startswith("AICC_"):  # missing variables
            missing = [v for v in REQUIRED_ENVIRONMENT if not environ.get(v)]
            message = f"set the environment variable(s) {', '.join(missing)}"
        elif field in ENVIRONMENT and _only_insecure(environ, options):
            message = (
                f"{ENVIRONMENT[field]}: an http:// URL would send the app secret and tokens "
                "in cleartext; use https://, or pass --allow-insecure-http if this network "
                "is trusted (loopback addresses are always allowed)"
            )
        elif field in ENVIRONMENT:
            message = exc.message.replace(f"{field}:", f"{ENVIRONMENT[field]}:", 1)
        else:
            message = exc.message
        raise terminal.fail(f"{message}; or try it out with --sandbox") from None


def _only_insecure(environ: Mapping[str, str], options: Mapping[str, Any]) -> bool:
    """Whether the settings are refused only for an http:// URL (they pass with
    ``--allow-insecure-http``)."""
    if options.get("allow_insecure_http"):
        return False
    try:
        ClientConfig.from_env(environ, **{**options, "allow_insecure_http": True})
    except AICCValidationError:
        return False
    return True


@contextlib.asynccontextmanager
async def _client(
    config: ClientConfig | None, sandbox: FakeAICC | None, options: dict[str, Any]
) -> AsyncIterator[AICCClient]:
    if sandbox is not None:  # started by run_campaign
        async with sandbox.client(**options) as aicc:
            yield aicc
    else:
        assert config is not None
        async with AICCClient.from_config(config) as aicc:
            yield aicc


@contextlib.contextmanager
def collecting_less() -> Iterator[None]:
    """Garbage collection tuned for a campaign while it runs (the ``aicc`` process is
    the command's own; the library never does this). Each claim starts dozens of
    requests at once, so with Python's default thresholds the collector runs every
    dozen rows and takes about a sixth of the CPU: the objects made before are frozen
    out of its scans, and a young collection waits for 10,000 allocations."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def run_campaign(
    terminal: Terminal,
    kind: CampaignKind,
    source: Path,
    where: JournalAt,
    options: Options,
    *,
    sandbox: FakeAICC | None,
) -> int:
    """Load ``source`` into the journal ``where`` and send its pending rows; returns the
    exit status.

    With ``sandbox`` the rows go to that FakeAICC; otherwise to the tenant the
    environment names (checked before anything is read). On a PostgreSQL journal
    this process is one worker of the campaign: the status and report are the whole
    campaign's, once no row is in flight on any worker.
    """
    group = KINDS[kind].group
    client_options = options.client_options(group)
    config = None
    if sandbox is None:
        config = environment_config(terminal, os.environ, **client_options)
        if config.redis_url is not None and options.rate is not None:
            # Shared through Redis: --rate (auto too) holds for every process of the
            # tenant together.
            config = attrs.evolve(config, rate_limits={**config.rate_limits, group: options.rate})
        target = Target(config.base_url, config.app_key)
    else:
        target = Target("sandbox", sandbox.app_key, sandbox=True)
    with Signals() as signals:
        try:
            with CampaignFile(source, kind, delimiter=options.delimiter) as rows:
                if rows.guessed and rows.delimiter != ",":
                    terminal.note(
                        f"Reading {source}: its columns are separated by "
                        f"{DELIMITERS[rows.delimiter]} (--delimiter sets another separator)."
                    )
                if rows.ignored:
                    terminal.warn(f"Ignoring column(s) {', '.join(rows.ignored)}")
                async with (
                    where.open(kind) as campaign,
                    contextlib.AsyncExitStack() as stack,
                ):
                    _say_interrupted(terminal, campaign, where)
                    await campaign.bind(target)
                    if sandbox is not None:  # until the last release event is in
                        await stack.enter_async_context(sandbox)
                    callbacks = options.callbacks
                    callback_url = None if callbacks is None else callbacks.url
                    listening: Listening | None = None
                    if callbacks is not None and callbacks.listen is not None:
                        listening = await _listen(terminal, stack, campaign, callbacks)
                        callback_url = callbacks.url or listening.url
                    if where.postgres:
                        terminal.note(f"Working on {where.shown} as one of its workers.")
                    refused = None if listening is None else listening.refused
                    with CampaignProgress(terminal.err, refused) as progress:
                        status = await _load_and_send(
                            terminal,
                            campaign,
                            rows,
                            progress,
                            signals,
                            options,
                            client=lambda: _client(config, sandbox, client_options),
                            target=target,
                            callback_url=callback_url,
                        )
                    # --no-wait returned: the events of the calls it placed still come.
                    waits = status == SOME_NOT_DONE and campaign.waiting is not None
                    if listening is not None and callbacks is not None and (status == OK or waits):
                        await _wait(terminal, campaign, where, signals, callbacks.wait, listening)
                    report = await campaign.report()
        except JournalError as exc:
            raise terminal.fail(exc.message, JOURNAL_FAILED) from None
        except KeyChanged as exc:  # raised by the load: the file was open
            raise terminal.fail(rows.key_changed(exc)) from None
        except CampaignError as exc:
            raise terminal.fail(exc.message) from None
        except asyncio.CancelledError:
            terminal.note("Stopped. Run the same command again to resume.", "yellow")
            return INTERRUPTED
        terminal.out.print(render_report(report, where.argument, hints=not where.temporary))
    if status != OK:
        return status
    if listening is not None and listening.key_mismatch:
        return SOME_NOT_DONE
    return OK if report.counts.settled else SOME_NOT_DONE


async def _listen(
    terminal: Terminal, stack: contextlib.AsyncExitStack, campaign: Campaign, callbacks: Callbacks
) -> Listening:
    """Start receiving release events (told at once if the shared key is not AICC's)."""
    assert callbacks.listen is not None
    host, port = callbacks.listen

    def mismatch(refused: int) -> None:
        terminal.note(key_mismatch_message(refused), "bold red")

    try:
        listening = await stack.enter_async_context(
            receiving(
                campaign,
                host,
                port,
                shared_key=callbacks.shared_key,
                allow_unsigned=callbacks.allow_unsigned,
                on_key_mismatch=mismatch,
            )
        )
    except OSError as exc:
        raise CampaignError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    terminal.note(
        f"Receiving release events on {listening.host}:{listening.port} "
        f"({'signed' if callbacks.shared_key else 'unsigned'})."
    )
    return listening


async def _wait(
    terminal: Terminal,
    campaign: Campaign,
    where: JournalAt,
    signals: Signals,
    seconds: float,
    listening: Listening,
) -> None:
    """Wait for the outstanding release events; Ctrl-C stops waiting (not the command),
    and so does a shared key that is not AICC's."""
    waiting = asyncio.ensure_future(
        wait_for_outcomes(campaign, terminal.err, seconds, listening=listening)
    )

    def stop_waiting() -> None:
        waiting.cancel()

    signals.soft = stop_waiting
    try:
        outcomes = await waiting
    except asyncio.CancelledError:
        if not waiting.cancelled() or signals.count > 1:
            raise
        outcomes = await campaign.outcomes()
    finally:
        signals.soft = None
    if outcomes.settled:  # during the run or the wait: counted in the journal
        terminal.note(
            f"{outcomes.settled:,} rows whose outcome was unknown were settled by their "
            "release event: AICC placed those calls (they are done, never sent again)."
        )
    if listening.key_mismatch:
        return
    if outcomes.awaiting:
        later = (
            "this temporary journal goes with the command."
            if where.temporary
            else f"`aicc listen --journal {where.argument} --listen HOST:PORT` records them later."
        )
        terminal.note(
            f"{outcomes.awaiting:,} calls still await their release event: {later}", "yellow"
        )


def _nothing_to_send(
    terminal: Terminal, campaign: Campaign, rows: CampaignFile, options: Options, counts: Any
) -> bool:
    """Say what a resume will do; True (and say so) when there is nothing left to send."""
    idempotent = KINDS[campaign.kind].idempotent
    if options.retry_unknown and counts.unknown and not idempotent:
        terminal.note(
            f"--retry-unknown: sending {counts.unknown:,} rows whose outcome was unknown "
            "again. Anyone among them who was already called is called twice.",
            "bold yellow",
        )
        return False
    if (
        counts.pending
        or options.retry_failed
        or (idempotent and counts.unknown)
        or (options.allow_repeat_numbers and counts.duplicate)
    ):
        return False
    terminal.note(
        f"Nothing left to send: every row of {rows.path} already has an outcome in "
        f"{campaign.location}."
    )
    return True


def _say_interrupted(terminal: Terminal, campaign: Campaign, where: JournalAt) -> None:
    if not campaign.interrupted:
        return
    when = "the last run stopped"
    if where.postgres:
        when = "a worker stopped (its lease expired)"
    if KINDS[campaign.kind].idempotent:
        terminal.note(
            f"{campaign.interrupted:,} rows were in flight when {when}: "
            "they will be sent again (harmless for a write-back).",
            "yellow",
        )
    else:
        terminal.note(
            f"{campaign.interrupted:,} rows were in flight when {when}: their "
            "outcome is unknown and they will not be sent again.",
            "yellow",
        )


def _say_loaded(terminal: Terminal, summary: LoadSummary, source: Path) -> None:
    if not summary.read:
        raise CampaignError(f"{source} has a header but no rows: there is nothing to send")
    if summary.resumed and summary.added:
        terminal.note(f"{summary.added:,} new rows added to the campaign from {source}.")
    if summary.replaced:
        terminal.note(f"{summary.replaced:,} rows changed since the last run and were never sent.")
    if summary.withdrawn:
        terminal.note(
            f"{summary.withdrawn:,} rows not yet sent are no longer in {source}: they are "
            "withdrawn and will not be sent.",
            "yellow",
        )


async def _load_and_send(
    terminal: Terminal,
    campaign: Campaign,
    rows: CampaignFile,
    progress: CampaignProgress,
    signals: Signals,
    options: Options,
    *,
    client: Any,
    target: Target,
    callback_url: str | None,
) -> int:
    """A new campaign streams its input (the first rows leave while the rest is read); a
    resume reads the whole input first, so that rows removed from it are never sent."""
    stream = (await campaign.report()).counts.total == 0
    if not stream:
        try:
            summary = await campaign.load(
                rows.rows(), source=rows.path, on_progress=progress.loading
            )
        except asyncio.CancelledError:
            terminal.note("Stopped while reading the input; nothing was sent.", "yellow")
            return INTERRUPTED
        progress.loaded(summary.read)
        _say_loaded(terminal, summary, rows.path)
        if _nothing_to_send(terminal, campaign, rows, options, (await campaign.report()).counts):
            return OK

    def soft() -> None:
        campaign.stop()
        terminal.note(
            "Stopping: letting the requests in flight finish. Ctrl-C again to abandon them "
            "(they will be recorded as unknown).",
            "yellow",
        )

    def on_progress(counts: Any) -> None:
        progress.throttling(campaign.rate_limiter, campaign.requeued)
        progress.waiting(campaign.waiting)
        progress.sending(counts)

    signals.soft = soft
    try:
        async with client() as aicc:
            counts = await campaign.run(
                aicc,
                concurrency=options.concurrency,
                rate=options.rate,
                retry_unknown=options.retry_unknown,
                retry_failed=options.retry_failed,
                allow_repeat_numbers=options.allow_repeat_numbers,
                target=target,
                callback_url=callback_url,
                on_progress=on_progress,
                rows=rows.rows() if stream else None,
                source=rows.path if stream else None,
                on_load=progress.loading if stream else None,
                **options.dialer,
            )
        progress.sending(counts)  # the end: with other workers, theirs counted too
        if stream and campaign.loaded is not None:
            progress.loaded(campaign.loaded.read)
            _say_loaded(terminal, campaign.loaded, rows.path)
    except asyncio.CancelledError:
        # Abandoned: the rows in flight were recorded (unknown) after the last update.
        progress.sending((await campaign.report()).counts)
    except AICCAuthError as exc:
        terminal.fail(f"{exc.message}. The rows not sent stay pending.")
        return BAD_USAGE
    except (CampaignError, JournalError):
        raise  # the caller says what became of the journal
    except AICCValidationError as exc:  # a do-not-call list, a zone: before any call
        terminal.fail(exc.message)
        return BAD_USAGE
    except AICCError as exc:  # unreachable, or a failure the SDK did not expect
        terminal.fail(
            f"{exc.message} Stopped; the rows not sent stay pending: run the same command "
            "again to send them."
        )
        return SOME_NOT_DONE
    finally:
        signals.soft = None
    if signals.count:
        terminal.note("Stopped. Run the same command again to resume.", "yellow")
        return INTERRUPTED
    progress.waiting(None)
    if campaign.waiting is not None:  # --no-wait, and every row left waits
        terminal.note(
            f"{shown(campaign.waiting.text)}. Run the same command again then: it goes on.",
            "yellow",
        )
        return SOME_NOT_DONE
    return OK
