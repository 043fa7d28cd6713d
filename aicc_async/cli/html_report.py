"""``aicc report J --html FILE``: the report as one self-contained HTML page with charts.

The page needs nothing from outside: plotly.js, which the ``plotly`` package of the
``html`` extra ships, is embedded in it (about 4.8 MB), and a Content-Security-Policy
forbids every fetch, so it opens the same offline, from a mail attachment or a
shared drive. Every value from the journal (paths, codes, AICC's messages, release
reasons) is escaped before it is written, in the page and in the charts' labels.

Each chart is a :class:`Chart`: a key, a title and (label, value) points. Adding one
(the request rate over time, for instance) is building a ``Chart`` from a series and
appending it in :func:`charts`; :func:`render` draws whatever it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import attrs

from aicc_async.bulk.campaign import Campaign
from aicc_async.bulk.campaign.exports import check_target
from aicc_async.bulk.journal import TALK_BUCKETS, Activity
from aicc_async.callbacks import RELEASE_REASONS
from aicc_async.cli.terminal import shown
from aicc_async.errors import CampaignError, is_number

__all__ = ["Chart", "charts", "render", "write_html_report"]

#: Colours per row state and outcome (the terminal report's, as CSS colours).
_COLOURS = {
    "pending": "#17becf",
    "sending": "#b300b3",
    "done": "#2ca02c",
    "failed": "#d62728",
    "unknown": "#e6a700",
    "withdrawn": "#999999",
    "duplicate": "#1f77b4",
    "suppressed": "#3b4cc0",
    "limited": "#ff7f0e",
    "answered": "#2ca02c",
    "not answered": "#d62728",
    "awaiting an event": "#e6a700",
}
_MAX_LABEL = 200
#: An axis label's length (the whole value is on hover, and in the page's table).
_MAX_TICK = 24
_INSTALL = "--html needs plotly: pip install 'aicc-async[html]'"
#: No fetch of any kind; inline script and style only (plotly draws SVG in place).
_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)


@attrs.frozen
class Chart:
    """One chart: ``points`` are (label, value); labels are shown as text, escaped."""

    key: str
    title: str
    kind: Literal["bar", "line", "pie"]
    points: tuple[tuple[str, float], ...]
    x_title: str = ""
    y_title: str = ""
    note: str = ""
    """A sentence under the title saying how to read it."""
    colours: tuple[str, ...] = ()
    hover: tuple[str, ...] = ()
    """A longer text per point, shown on hover."""
    x_type: Literal["category", "date", "linear"] = "category"
    """How the labels read: names, times (``YYYY-MM-DD HH:MM[:SS]``) or numbers."""


def _label(value: object, limit: int = _MAX_LABEL) -> str:
    """A journal value as a chart or page shows it: no control characters, at most
    ``limit`` characters, HTML-escaped (plotly reads labels as HTML)."""
    text = shown(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def _tick(value: object) -> str:
    return _label(value, _MAX_TICK)


def _talk_range(lower: int, upper: int | None) -> str:
    def unit(seconds: int) -> str:
        return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"

    return f"{unit(lower)} or more" if upper is None else f"{unit(lower)} to {unit(upper)}"


def charts(report: Mapping[str, Any], activity: Activity) -> list[Chart]:
    """The charts of a campaign: ``report`` is :meth:`CampaignReport.to_json
    <aicc_async.bulk.CampaignReport.to_json>`'s dict, ``activity`` the journal's
    timeline. Charts without data are left out."""
    found: list[Chart] = []
    if activity.sent_per_minute:
        found.append(
            Chart(
                "sent",
                "Rows sent per minute",
                "bar",
                tuple(
                    (datetime.fromtimestamp(minute * 60).strftime("%Y-%m-%d %H:%M"), count)
                    for minute, count in activity.sent_per_minute
                ),
                x_title="minute (this computer's time)",
                y_title="rows",
                x_type="date",
                note="By when each sent row's answer or failure was recorded.",
            )
        )
    rate = [
        sample
        for sample in report.get("rate", [])
        if isinstance(sample, Mapping)
        and is_number(sample.get("time"))
        and is_number(sample.get("rate"))
    ]
    if rate:
        found.append(
            Chart(
                "rate",
                "Sending rate over time (--rate auto)",
                "line",
                tuple(
                    (
                        datetime.fromtimestamp(sample["time"]).strftime("%Y-%m-%d %H:%M:%S"),
                        round(float(sample["rate"]), 1),
                    )
                    for sample in rate
                ),
                x_title="time (this computer's time)",
                y_title="requests per second allowed",
                x_type="date",
                note=(
                    f"The rate the adaptive limiter allowed; it cut it at each throttle "
                    f"answer ({int(report.get('throttled', 0)):,} in all, "
                    f"{int(report.get('requeued', 0)):,} rows sent again later)."
                ),
            )
        )
    states = {k: v for k, v in report.get("states", {}).items() if v}
    if states:
        found.append(
            Chart(
                "states",
                "Rows by state",
                "bar",
                tuple((_label(state), count) for state, count in states.items()),
                y_title="rows",
                colours=tuple(_COLOURS.get(state, "#7f7f7f") for state in states),
            )
        )
    outcomes = report.get("outcomes", {})
    named = {
        "answered": outcomes.get("answered", 0),
        "not answered": outcomes.get("not_answered", 0),
        "awaiting an event": outcomes.get("awaiting", 0),
    }
    if any(named.values()):
        found.append(
            Chart(
                "outcomes",
                "Call outcomes (release events)",
                "pie",
                tuple((name, n) for name, n in named.items() if n),
                colours=tuple(_COLOURS[name] for name, n in named.items() if n),
                note="Calls sent with a callback URL.",
            )
        )
    attempts = report.get("attempts")
    if isinstance(attempts, Mapping) and any(calls != "1" for calls in attempts):  # redials
        found.append(
            Chart(
                "attempts",
                "Rows by calls made (redials of the unanswered included)",
                "bar",
                tuple((f"{_label(n)} call(s)", _count(value)) for n, value in attempts.items()),
                y_title="rows",
            )
        )
    reasons = report.get("release_reasons", {})
    if reasons:
        found.append(
            Chart(
                "release_reasons",
                "Release reasons",
                "bar",
                tuple((_tick(code or "(none)"), count) for code, count in reasons.items()),
                x_title="releaseReason",
                y_title="calls",
                hover=tuple(
                    _label(f"{code}: {RELEASE_REASONS.get(code, 'undocumented')}")
                    for code in reasons
                ),
            )
        )
    problems = report.get("problems", [])
    if problems:
        found.append(
            Chart(
                "problems",
                "Rows not done, by code",
                "bar",
                tuple((_tick(f"{p['state']} {p['code']}"), p["count"]) for p in problems),
                y_title="rows",
                colours=tuple(_COLOURS.get(p["state"], "#7f7f7f") for p in problems),
                hover=tuple(_label(f"{p['code']}: {p['example']}") for p in problems),
            )
        )
    if activity.talk_durations:
        bounds = dict(itertools.pairwise(TALK_BUCKETS))
        found.append(
            Chart(
                "talk_durations",
                "Talk duration of answered calls",
                "bar",
                tuple(
                    (_talk_range(lower, bounds.get(lower)), count)
                    for lower, count in activity.talk_durations
                ),
                y_title="calls",
            )
        )
    return found


def _count(value: object) -> float:
    """A count from the report (anything else: 0)."""
    return float(value) if isinstance(value, (int, float)) else 0.0


def _figure(chart: Chart) -> dict[str, Any]:
    labels: list[str] = []
    for label, _ in chart.points:  # shortened labels may repeat: keep the bars apart
        labels.append(label if label not in labels else f"{label} #{len(labels) + 1}")
    values = [value for _, value in chart.points]
    trace: dict[str, Any]
    if chart.kind == "pie":
        trace = {"type": "pie", "labels": labels, "values": values, "hole": 0.45, "sort": False}
        if chart.colours:
            trace["marker"] = {"colors": list(chart.colours)}
    else:
        trace = {"type": "bar" if chart.kind == "bar" else "scatter", "x": labels, "y": values}
        if chart.kind == "line":
            trace["mode"] = "lines+markers"
        if chart.colours:
            trace["marker"] = {"color": list(chart.colours)}
    if chart.hover:
        trace["customdata"] = list(chart.hover)
        trace["hovertemplate"] = "%{x}: %{y}<br>%{customdata}<extra></extra>"
    layout = {
        "margin": {"l": 60, "r": 20, "t": 20, "b": 60},
        "height": 340,
        "xaxis": {"title": {"text": chart.x_title}, "automargin": True, "type": chart.x_type},
        "yaxis": {"title": {"text": chart.y_title}, "rangemode": "tozero"},
        "showlegend": chart.kind == "pie",
    }
    return {"data": [trace], "layout": layout}


def _plotly() -> tuple[Any, str]:
    """plotly.io and the plotly.js source (``CampaignError`` if not installed)."""
    try:
        import plotly.io
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise CampaignError(_INSTALL) from None
    return plotly.io, get_plotlyjs()


def render(report: Mapping[str, Any], drawn: Sequence[Chart]) -> str:
    """The whole page for ``report`` (``CampaignReport.to_json()``) with ``drawn``."""
    pio, plotly_js = _plotly()
    sections = []
    for chart in drawn:
        plot = pio.to_html(
            _figure(chart),
            include_plotlyjs=False,
            full_html=False,
            div_id=f"plot-{chart.key}",
            validate=False,
            config={"displaylogo": False, "responsive": True},
        )
        note = f'<p class="note">{html.escape(chart.note)}</p>' if chart.note else ""
        sections.append(
            f'<section class="card"><h2>{html.escape(chart.title)}</h2>{note}'
            f'<div class="chart" id="chart-{chart.key}">{plot}</div></section>'
        )
    return _PAGE.format(
        policy=_POLICY,
        title=_label(f"Campaign report: {report.get('journal', '')}"),
        summary=_summary(report),
        problems=_problems(report),
        charts="\n".join(sections),
        generated=html.escape(datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        plotly=plotly_js.replace("</script", "<\\/script"),
    )


def _summary(report: Mapping[str, Any]) -> str:
    target = report.get("target")
    where = ""
    if isinstance(target, Mapping):
        sandbox = " (sandbox)" if target.get("sandbox") else ""
        where = f", sent to {_label(target.get('base_url'))}{sandbox}"
    states = "".join(
        f'<tr><td><span class="dot" style="background:{_COLOURS.get(s, "#7f7f7f")}"></span>'
        f"{_label(s)}</td><td>{int(n):,}</td></tr>"
        for s, n in report.get("states", {}).items()
        if n or s in ("done", "failed", "unknown")
    )
    outcomes = "".join(
        f"<tr><td>{_label(name.replace('_', ' '))}</td><td>{int(n):,}</td></tr>"
        for name, n in report.get("outcomes", {}).items()
        if isinstance(n, int)
    )
    return (
        f'<p class="lead">{_label(report.get("journal", ""))} '
        f"({_label(report.get('kind', ''))}): {int(report.get('rows', 0)):,} rows{where}</p>"
        f'<div class="tables"><table><caption>Rows by state</caption>{states}</table>'
        f"<table><caption>Call outcomes</caption>{outcomes}</table></div>"
    )


def _problems(report: Mapping[str, Any]) -> str:
    problems = report.get("problems", [])
    if not problems:
        return ""
    rows = "".join(
        f"<tr><td>{_label(p['state'])}</td><td>{_label(p['code'])}</td>"
        f"<td>{int(p['count']):,}</td><td>{_label(p['example'])}</td></tr>"
        for p in problems
    )
    return (
        '<table class="problems"><caption>Rows not done, by code'
        "</caption><tr><th>state</th><th>code</th><th>rows</th>"
        f"<th>what AICC or the SDK said (one example)</th></tr>{rows}</table>"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }}
h1 {{ font-size: 1.4em; margin: 0 0 4px; }}
h2 {{ font-size: 1.05em; margin: 0 0 4px; }}
.lead {{ margin: 0 0 16px; color: #444; word-break: break-all; }}
.tables {{ display: flex; gap: 32px; flex-wrap: wrap; margin-bottom: 16px; }}
table {{ border-collapse: collapse; background: #fff; }}
caption {{ text-align: left; font-weight: 600; padding: 4px 0; }}
td, th {{ padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }}
td:nth-child(2) {{ text-align: right; }}
.problems td:nth-child(3) {{ text-align: right; }}
.problems td:last-child {{ word-break: break-word; max-width: 60ch; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px;
        margin-right: 6px; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr));
         gap: 16px; margin-top: 16px; }}
.card {{ background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 12px; }}
.note {{ margin: 0 0 6px; color: #666; font-size: 0.9em; }}
footer {{ margin-top: 24px; color: #888; font-size: 0.85em; }}
</style>
<script>{plotly}</script>
</head>
<body>
<h1>{title}</h1>
{summary}
{problems}
<div class="grid">
{charts}
</div>
<footer>Made by <code>aicc report --html</code> on {generated}.</footer>
</body>
</html>
"""


async def write_html_report(campaign: Campaign, path: str | os.PathLike[str]) -> None:
    """Write the campaign's report with its charts to ``path`` (replaced only once the
    page is complete). Raises ``CampaignError`` if plotly is missing, or ``path`` is
    the journal, a file beside it, the campaign's input or any SQLite database, or
    cannot be written."""
    given = Path(os.fspath(path))
    source = await campaign.source()
    protected = (*campaign.files, *(() if source is None else (source,)))
    target = check_target(given, protected, "the report")
    _plotly()  # before reading the journal: say what to install first
    report = (await campaign.report()).to_json()
    page = render(report, charts(report, await campaign.activity()))
    await asyncio.to_thread(_replace, given, target, page)


def _replace(given: Path, target: Path, page: str) -> None:
    """Write ``page`` beside ``target`` under a temporary name, then rename it over."""
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise CampaignError(f"cannot write {given}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(page)
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise CampaignError(f"cannot write {given}: {exc.strerror or exc}") from None
