"""What ``aicc`` shows: the live progress of a campaign (stderr) and its report (stdout)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from aicc_async.bulk import CampaignReport, StateCounts

__all__ = ["CampaignProgress", "render_report"]

_STATE_STYLES = {
    "done": "green",
    "failed": "red",
    "unknown": "yellow",
    "pending": "cyan",
    "sending": "magenta",
}


class _RateColumn(ProgressColumn):
    """Rows per second over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


class _CountsColumn(ProgressColumn):
    """Done / failed / unknown rows, for the sending bar."""

    def render(self, task: Task) -> Text:
        if "done" not in task.fields:
            return Text("")
        return Text.assemble(
            (f"{task.fields['done']:,} done", "green"),
            " ",
            (f"{task.fields['failed']:,} failed", "red"),
            " ",
            (f"{task.fields['unknown']:,} unknown", "yellow"),
        )


class CampaignProgress:
    """Progress bars for reading the input and sending the rows, drawn on ``console``.

    Use as a context manager; the bars are redrawn a few times a second.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _CountsColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
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

    def sending(self, counts: StateCounts) -> None:
        """The campaign's counts after a journal commit."""
        if self._sending is None:
            self._sending = self._progress.add_task("Sending", total=counts.total)
        self._progress.update(
            self._sending,
            completed=counts.finished,
            done=counts.done,
            failed=counts.failed,
            unknown=counts.unknown,
        )


def render_report(report: CampaignReport) -> RenderableType:
    """The report as ``aicc report`` prints it: counts per state, then problems by code."""
    counts = report.counts
    states = Table.grid(padding=(0, 2))
    states.add_column()
    states.add_column(justify="right")
    for state, style in _STATE_STYLES.items():
        value = getattr(counts, state)
        if value or state in ("done", "failed", "unknown"):
            states.add_row(Text(state, style=style), f"{value:,}")
    parts: list[RenderableType] = [
        Text.assemble(
            ("Campaign ", "bold"),
            (report.path, "bold cyan"),
            f" ({report.kind}): {counts.total:,} rows",
        ),
        states,
    ]
    if report.problems:
        table = Table(title="Failed and unknown rows by code", title_justify="left")
        table.add_column("state")
        table.add_column("code")
        table.add_column("rows", justify="right")
        table.add_column("what AICC or the SDK said (one example)", overflow="fold")
        for p in report.problems:
            table.add_row(
                Text(p.state, style=_STATE_STYLES[p.state]), p.code, f"{p.count:,}", p.example
            )
        parts.append(table)
        parts.append(
            Text(
                f"`aicc report {report.path} --export FILE` writes these rows to a CSV.",
                style="dim",
            )
        )
    if counts.unknown and report.kind == "write_back":
        parts.append(
            Text(
                "unknown: no answer came back. A write-back can be repeated safely: "
                "run the same command again to send them again.",
                style="yellow",
            )
        )
    elif counts.unknown:
        parts.append(
            Text(
                "unknown: AICC may have processed these rows: the person may have been "
                "called. They are never sent again on their own. Check them first (release "
                "callbacks carry the call serial number); re-send with --retry-unknown only "
                "those that did not go out.",
                style="yellow",
            )
        )
    if counts.pending:
        parts.append(
            Text("pending: not sent yet. Run the same command again to send them.", style="cyan")
        )
    return Group(*parts)
