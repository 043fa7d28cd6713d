"""Release events in the ``aicc`` command: a receiver that records them in a campaign's
journal (``notify --listen``, ``listen``), and waiting for the outstanding ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping

import attrs
from aiohttp import web
from rich.console import Console
from rich.live import Live
from rich.text import Text

from aicc_async.bulk import Campaign
from aicc_async.bulk.journal import Outcomes
from aicc_async.callbacks import CallbackReceiver
from aicc_async.cli.journals import JournalAt
from aicc_async.cli.serving import serve
from aicc_async.cli.signals import Signals
from aicc_async.cli.terminal import BAD_USAGE, JOURNAL_FAILED, OK, SOME_NOT_DONE, Terminal
from aicc_async.errors import CampaignError, JournalError

__all__ = [
    "Listening",
    "key_mismatch_message",
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
    receiver: CallbackReceiver | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def url(self) -> str:
        """The receiver's own URL (for a callback URL on this host)."""
        return f"http://{self.host}:{self.port}/aicc/release"

    def refused(self) -> Mapping[str, int]:
        """The events refused so far, by reason."""
        return {} if self.receiver is None else self.receiver.refused

    @property
    def key_mismatch(self) -> bool:
        """True once the events that arrived show the shared key is not AICC's."""
        return self.receiver is not None and self.receiver.key_mismatch


def key_mismatch_message(refused: int) -> str:
    """What to tell the user when the release events cannot be verified."""
    return (
        f"The shared key does not match AICC's: {refused:,} release events in a row were "
        "refused for their signature and none could be verified, so no call outcome is "
        "recorded. Set AICC_CALLBACK_KEY to the callback shared key configured on the "
        "AICC tenant (AICC delivers a refused event again later; `aicc listen` with the "
        "right key records them)."
    )


@contextlib.asynccontextmanager
async def receiving(
    campaign: Campaign,
    host: str,
    port: int,
    *,
    shared_key: str | None,
    allow_unsigned: bool,
    on_key_mismatch: Callable[[int], None] | None = None,
    max_connections: int = 512,
    deadline: float = 10.0,
) -> AsyncIterator[Listening]:
    """Receive release events on ``host:port`` (any path, POST) and record them in
    ``campaign``'s journal while the block runs. ``OSError`` if it cannot listen.
    ``on_key_mismatch(refused)`` is called once, as soon as the events show that the
    shared key is not AICC's. A connection gets ``deadline`` seconds for each request's
    headers and body, at most ``max_connections`` are open (see :func:`serve`)."""
    told = False

    async def refused(reason: str) -> None:
        nonlocal told
        if on_key_mismatch is not None and not told and receiver.key_mismatch:
            told = True
            on_key_mismatch(receiver.refused.get("signature", 0))

    receiver = campaign.callback_receiver(
        shared_key, allow_unsigned=allow_unsigned, on_refused=refused, read_timeout=deadline
    )
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/{tail:.*}", receiver.handle)
    async with serve(app, host, port, max_connections=max_connections, deadline=deadline) as served:
        yield Listening(host, served.port, receiver)


def outcome_line(outcomes: Outcomes) -> Text:
    """``answered N  not answered N  awaiting N`` as one line, then ``refused N
    (signature N, ...)`` when events were refused."""
    line = Text.assemble(
        (f"answered {outcomes.answered:,}", "green"),
        "  ",
        (f"not answered {outcomes.not_answered:,}", "red"),
        "  ",
        (f"awaiting {outcomes.awaiting:,}", "yellow"),
    )
    if outcomes.refused:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in outcomes.refused)
        line.append(f"  refused {outcomes.refused_events:,} ({reasons})", "bold red")
    return line


async def wait_for_outcomes(
    campaign: Campaign,
    console: Console,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    listening: Listening | None = None,
) -> Outcomes:
    """Wait until no sent call awaits its release event, at most ``seconds``, showing
    the counts live; returns them. Stops at once when ``listening`` shows that the
    shared key is not AICC's. A connection gets ``deadline`` seconds for each request's
    headers and body, at most ``max_connections`` are open (see :func:`serve`)."""
    deadline = clock() + seconds

    def mismatch() -> bool:
        return listening is not None and listening.key_mismatch

    outcomes = await campaign.outcomes()
    with Live(console=console, transient=True, auto_refresh=False) as live:
        while (left := deadline - clock()) > 0 and outcomes.awaiting and not mismatch():
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
    mismatch: list[int] = []
    with Signals():
        try:
            # A journal that does not exist yet is created: the campaign may start later.
            async with at.open("voice_notification", outcomes_only=True) as campaign:
                if campaign.kind != "voice_notification":
                    raise CampaignError(f"{at.shown} holds a {campaign.kind} campaign: no calls")
                stop = asyncio.Event()

                def wrong_key(refused: int) -> None:
                    mismatch.append(refused)
                    stop.set()

                try:
                    listening = receiving(
                        campaign,
                        host,
                        port,
                        shared_key=shared_key,
                        allow_unsigned=allow_unsigned,
                        on_key_mismatch=wrong_key,
                    )
                    async with listening as where:
                        terminal.note(
                            f"Receiving release events on {where.host}:{where.port} for "
                            f"{at.shown} ({'signed' if shared_key else 'unsigned'}); "
                            "Ctrl-C stops."
                        )
                        await _show_outcomes(campaign, terminal.err, stop)
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
    if mismatch:
        raise terminal.fail(key_mismatch_message(mismatch[0]), SOME_NOT_DONE)
    return OK


async def _show_outcomes(campaign: Campaign, console: Console, stop: asyncio.Event) -> None:
    """Show the outcome counts live, until cancelled or ``stop`` is set."""
    with Live(console=console, transient=True, auto_refresh=False) as live:
        while not stop.is_set():
            live.update(outcome_line(await campaign.outcomes()), refresh=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
