"""What ``aicc`` shows: the live progress of a campaign (stderr) and its report (stdout)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from aicc_async.adaptive import AdaptiveRate
from aicc_async.bulk import CampaignReport, StateCounts, Waiting
from aicc_async.callbacks import RELEASE_REASONS
from aicc_async.cli.terminal import plain, shown

__all__ = ["CampaignProgress", "render_report"]

_STATE_STYLES = {
    "done": "green",
    "failed": "red",
    "unknown": "yellow",
    "duplicate": "blue",
    "withdrawn": "dim",
    "suppressed": "blue",
    "limited": "yellow",
    "pending": "cyan",
    "sending": "magenta",
}
#: How the report names a state, where its name alone would mislead.
_STATE_LABELS = {"sending": "in flight"}


class _RateColumn(ProgressColumn):
    """Rows per second over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class _Progress(Progress):
    """The bars, then one line of counts per state under them: a line of its own, so
    that on a narrow terminal each count stays beside its label."""

    counts: StateCounts | None = None
    refused: Callable[[], Mapping[str, int]] | None = None
    limiter: AdaptiveRate | None = None
    requeued: int = 0
    waiting: str | None = None

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        if self.counts is not None:
            line = Text("  ")
            for state in ("done", "failed", "unknown", "duplicate", "suppressed", "limited"):
                value = getattr(self.counts, state)
                if value or state in ("done", "failed", "unknown"):
                    line.append(f"{state} {value:,}", style=_STATE_STYLES[state])
                    line.append("  ")
            refused = {} if self.refused is None else self.refused()
            if refused:
                reasons = ", ".join(f"{reason} {count:,}" for reason, count in refused.items())
                line.append(f"events refused {sum(refused.values()):,} ({reasons})", "bold red")
                line.append("  ")
            if self.limiter is not None:
                line.append(f"rate auto {self.limiter.rate:,.0f}/s", style="progress.data.speed")
                line.append("  ")
            if self.limiter is not None or self.requeued:
                # Throttle answers (429, busy): not processed; those rows are sent again later.
                answers = self.requeued if self.limiter is None else self.limiter.throttled
                line.append(f"throttled {answers:,}", style="yellow")
            yield line
        if self.waiting is not None:
            yield Text(f"  {shown(self.waiting)}", style="bold yellow")


class CampaignProgress:
    """Progress bars for reading the input and sending the rows, drawn on ``console``.

    Use as a context manager; the bars are redrawn a few times a second. ``refused``:
    the release events refused so far, by reason (shown on the counts line).
    """

    def __init__(
        self, console: Console, refused: Callable[[], Mapping[str, int]] | None = None
    ) -> None:
        self._progress = _Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=2,  # a redraw costs the campaign's CPU: twice a second is enough
        )
        self._progress.refused = refused  # release events refused so far, by reason
        self._console = console
        self._said: tuple[int, float | None] | None = None  # the wait last written
        self._loading: TaskID | None = None
        self._sending: TaskID | None = None

    def __enter__(self) -> CampaignProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def loading(self, read: int) -> None:
        """``read`` input rows have been recorded in the journal."""
        if self._loading is None:
            self._loading = self._progress.add_task("Reading", total=None)
        self._progress.update(self._loading, completed=read)

    def loaded(self, read: int) -> None:
        """Reading the input is over."""
        if self._loading is not None:
            self._progress.update(self._loading, total=read, completed=read)

    def throttling(self, limiter: AdaptiveRate | None, requeued: int) -> None:
        """The adaptive rate (``--rate auto``) and the rows throttled so far."""
        self._progress.limiter = limiter
        self._progress.requeued = requeued

    def waiting(self, waiting: Waiting | None) -> None:
        """What the campaign waits for (calling hours, redials...), or ``None``. Where
        nothing is drawn live (stderr not a terminal: cron, a log file), each new wait
        is written as a line of its own."""
        said = None if waiting is None else (waiting.rows, waiting.until)
        if waiting is not None and said != self._said and not self._console.is_terminal:
            self._console.print(Text(shown(waiting.text), style="yellow"))
        self._said = said
        self._progress.waiting = None if waiting is None else waiting.text

    def sending(self, counts: StateCounts) -> None:
        """The campaign's counts after a journal commit."""
        if self._sending is None:
            self._sending = self._progress.add_task("Sending", total=counts.total)
        self._progress.counts = counts
        # While the input is still being read, the total is the rows read so far.
        self._progress.update(self._sending, total=counts.total, completed=counts.finished)


def render_report(
    report: CampaignReport, argument: str | None = None, *, hints: bool = True
) -> RenderableType:
    """The report as ``aicc report`` prints it: counts per state, then problems by code.
    ``argument``: the journal as the hints' ``aicc report`` command gives it (default:
    the report's path); ``hints=False`` leaves those hints out (a journal that will
    not be there to report on).

    Every value from the journal is shown as plain text (no markup, no control
    characters: :func:`~aicc_async.cli.terminal.shown`).
    """
    counts = report.counts
    journal = shown(report.path if argument is None else argument)
    states = Table.grid(padding=(0, 2))
    states.add_column()
    states.add_column(justify="right")
    for state, style in _STATE_STYLES.items():
        value = getattr(counts, state)
        if value or state in ("done", "failed", "unknown"):
            states.add_row(Text(_STATE_LABELS.get(state, state), style=style), f"{value:,}")
    heading = Text.assemble(
        ("Campaign ", "bold"),
        (shown(report.path), "bold cyan"),
        f" ({report.kind}): {counts.total:,} rows",
    )
    if report.target is not None:
        heading.append(shown(f", sent to {report.target.describe()}"))
    parts: list[RenderableType] = [heading, states]
    if report.problems:
        table = Table(title="Rows not done, by code", title_justify="left")
        table.add_column("state")
        table.add_column("code")
        table.add_column("rows", justify="right")
        table.add_column("what AICC or the SDK said (one example)", overflow="fold")
        for p in report.problems:
            table.add_row(
                Text(p.state, style=_STATE_STYLES[p.state]),
                plain(p.code),
                f"{p.count:,}",
                plain(p.example),
            )
        parts.append(table)
        if hints:
            parts.append(
                Text(
                    f"`aicc report {journal} --export FILE` writes these rows to a CSV.",
                    style="dim",
                )
            )
    outcomes = report.outcomes
    if outcomes.answered or outcomes.not_answered:
        parts.append(
            Text.assemble(
                ("Call outcomes (release events): ", "bold"),
                (f"answered {outcomes.answered:,}", "green"),
                "  ",
                (f"not answered {outcomes.not_answered:,}", "red"),
                "  ",
                (f"awaiting an event {outcomes.awaiting:,}", "yellow"),
            )
        )
        reasons = Table(title="Release reasons", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("meaning")
        reasons.add_column("calls", justify="right")
        for code, count in outcomes.reasons:
            reasons.add_row(plain(code), Text(RELEASE_REASONS.get(code, "")), f"{count:,}")
        parts.append(reasons)
        if outcomes.not_answered and hints:
            parts.append(
                Text(
                    f"`aicc report {journal} --export-unanswered FILE` writes the "
                    "unanswered rows as the input of a follow-up campaign.",
                    style="dim",
                )
            )
    if outcomes.refused:
        reasons_text = ", ".join(f"{reason} {count:,}" for reason, count in outcomes.refused)
        parts.append(
            Text(
                f"Release events refused: {outcomes.refused_events:,} ({reasons_text}). "
                + (_REFUSED_SIGNATURE if dict(outcomes.refused).get("signature") else ""),
                style="red",
            )
        )
    if outcomes.unmatched:
        parts.append(
            Text(
                f"Release events kept for no row: {outcomes.unmatched:,}. {_UNMATCHED}",
                style="yellow",
            )
        )
    if report.kind == "voice_notification" and any(calls > 1 for calls, _ in report.attempts):
        parts.append(
            Text.assemble(
                ("Calls per row: ", "bold"),
                "  ".join(
                    f"{calls} call{'s' if calls > 1 else ''} {rows:,}"
                    for calls, rows in report.attempts
                ),
            )
        )
    if report.rate or report.requeued:
        parts.append(_throttling(report))
    notes = [
        (counts.sending, _SENDING, "magenta"),
        (
            counts.unknown,
            _UNKNOWN_WRITE_BACK if report.kind == "write_back" else _UNKNOWN,
            "yellow",
        ),
        (counts.duplicate, _DUPLICATE, "blue"),
        (counts.withdrawn, _WITHDRAWN, "dim"),
        (counts.suppressed, _SUPPRESSED, "blue"),
        (counts.limited, _LIMITED, "yellow"),
        (counts.pending, _PENDING, "cyan"),
    ]
    parts.extend(Text(text, style=style) for count, text, style in notes if count)
    return Group(*parts)


_REFUSED_SIGNATURE = (
    "An event refused for its signature was signed with another key: check that "
    "AICC_CALLBACK_KEY is the callback shared key configured on the AICC tenant."
)


def _throttling(report: CampaignReport) -> Text:
    """What throttling did to this run: the answers, the rows sent again, the rate found."""
    text = Text("Throttling: ", style="bold")
    if report.rate:
        rates = [sample.rate for sample in report.rate]
        text.append(
            f"--rate auto: {rates[0]:,.0f}/s at the start, {rates[-1]:,.0f}/s after "
            f"{report.rate[-1].at:,.0f} s (between {min(rates):,.0f} and "
            f"{max(rates):,.0f}/s); {report.throttled:,} throttle answers. "
        )
    text.append(f"{report.requeued:,} rows", style="yellow")
    text.append(
        " answered 'throttled' (HTTP 429 or busy: not processed) after their retries went "
        "back to the queue and were sent again later."
    )
    return text


_SENDING = (
    "in flight: being sent by a campaign that is running now, or, if none is, in flight "
    "when its run stopped: the next run records them as unknown (a write-back sends "
    "them again)."
)
_UNKNOWN_WRITE_BACK = (
    "unknown: no answer came back. A write-back can be repeated safely: run the same "
    "command again to send them again."
)
_UNKNOWN = (
    "unknown: AICC may have processed these rows: the person may have been called. They "
    "are never sent again on their own. A row whose release event arrives is settled "
    "(done) by it; check the others first, and re-send with --retry-unknown only those "
    "that did not go out."
)
_UNMATCHED = (
    "Their call serial number is on no row, and their number matches no single unknown "
    "row sent before them (two rows with one number, or a call of another campaign): "
    "they settle nothing."
)
_DUPLICATE = (
    "duplicate: not sent, because another row of this campaign already used the number "
    "(--allow-repeat-numbers phones a number once per row)."
)
_WITHDRAWN = "withdrawn: removed from the input before they were sent; never phoned."
_PENDING = (
    "pending: not sent yet (waiting for calling hours or a redial, or the run stopped). "
    "Run the same command again to send them."
)
_SUPPRESSED = "suppressed: the number is on a do-not-call list; never phoned."
_LIMITED = (
    "limited: not phoned, because the number already had as many calls as "
    "--max-calls-per-number allows within its period; a later run checks them again."
)
