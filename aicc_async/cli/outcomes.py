"""Release events in the ``aicc`` command: a receiver that records them in a campaign's
journal (``notify --listen``, ``listen``), and waiting for the outstanding ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import attrs
from aiohttp import web
from rich.console import Console
from rich.live import Live
from rich.text import Text

from aicc_async.bulk import Campaign
from aicc_async.bulk.journal import Outcomes
from aicc_async.cli.journals import JournalAt
from aicc_async.cli.signals import Signals
from aicc_async.cli.terminal import BAD_USAGE, JOURNAL_FAILED, OK, Terminal
from aicc_async.errors import CampaignError, JournalError

__all__ = [
    "Listening",
    "outcome_line",
    "parse_address",
    "receiving",
    "run_listener",
    "wait_for_outcomes",
]


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port); ``ValueError`` if bad."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 0.0.0.0:8080)")
    return host, int(port)


@attrs.frozen
class Listening:
    """Where a receiver is listening (the port is the real one when 0 was asked)."""

    host: str
    port: int


@contextlib.asynccontextmanager
async def receiving(
    campaign: Campaign,
    host: str,
    port: int,
    *,
    shared_key: str | None,
    allow_unsigned: bool,
) -> AsyncIterator[Listening]:
    """Receive release events on ``host:port`` (any path, POST) and record them in
    ``campaign``'s journal while the block runs. ``OSError`` if it cannot listen."""
    receiver = campaign.callback_receiver(shared_key, allow_unsigned=allow_unsigned)
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = next(iter(runner.addresses), (host, port))
        yield Listening(host, int(bound[1]))
    finally:
        await runner.cleanup()


def outcome_line(outcomes: Outcomes) -> Text:
    """``answered N  not answered N  awaiting N`` as one line."""
    return Text.assemble(
        (f"answered {outcomes.answered:,}", "green"),
        "  ",
        (f"not answered {outcomes.not_answered:,}", "red"),
        "  ",
        (f"awaiting {outcomes.awaiting:,}", "yellow"),
    )


async def wait_for_outcomes(
    campaign: Campaign,
    console: Console,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Outcomes:
    """Wait until no sent call awaits its release event, at most ``seconds``, showing
    the counts live; returns them."""
    deadline = clock() + seconds
    outcomes = await campaign.outcomes()
    with Live(console=console, transient=True, auto_refresh=False) as live:
        while (left := deadline - clock()) > 0 and outcomes.awaiting:
            line = Text.assemble(
                "Waiting for release events: ", outcome_line(outcomes), f"  ({left:.0f} s)"
            )
            live.update(line, refresh=True)
            await asyncio.sleep(min(0.5, left))
            outcomes = await campaign.outcomes()
    console.print(Text.assemble("Release events: ", outcome_line(outcomes)))
    return outcomes


async def run_listener(
    terminal: Terminal,
    at: JournalAt,
    address: tuple[str, int],
    shared_key: str | None,
    allow_unsigned: bool,
) -> int:
    """``aicc listen``: record release events in the journal ``at`` until Ctrl-C;
    returns the exit status."""
    host, port = address
    with Signals():
        try:
            async with at.open(outcomes_only=True) as campaign:
                if campaign.kind != "voice_notification":
                    raise CampaignError(f"{at.shown} holds a {campaign.kind} campaign: no calls")
                try:
                    listening = receiving(
                        campaign, host, port, shared_key=shared_key, allow_unsigned=allow_unsigned
                    )
                    async with listening as where:
                        terminal.note(
                            f"Receiving release events on {where.host}:{where.port} for "
                            f"{at.shown} ({'signed' if shared_key else 'unsigned'}); "
                            "Ctrl-C stops."
                        )
                        await _show_outcomes(campaign, terminal.err)
                except OSError as exc:
                    raise CampaignError(
                        f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                    ) from None
        except JournalError as exc:
            raise terminal.fail(exc.message, JOURNAL_FAILED) from None
        except CampaignError as exc:
            raise terminal.fail(exc.message) from None
        except asyncio.CancelledError:
            pass
    try:
        async with at.open(read_only=True) as campaign:
            outcomes = await campaign.outcomes()
    except (CampaignError, JournalError) as exc:  # the journal went away meanwhile
        status = JOURNAL_FAILED if isinstance(exc, JournalError) else BAD_USAGE
        raise terminal.fail(
            f"stopped; the outcomes cannot be read: {exc.message}", status
        ) from None
    terminal.out.print(Text.assemble("Stopped. ", outcome_line(outcomes)))
    return OK


async def _show_outcomes(campaign: Campaign, console: Console) -> None:
    """Show the outcome counts live, until cancelled."""
    with Live(console=console, transient=True, auto_refresh=False) as live:
        while True:
            live.update(outcome_line(await campaign.outcomes()), refresh=True)
            await asyncio.sleep(1.0)
