"""How ``aicc`` talks to its user: exit statuses, messages on stderr, the SDK's log.

Every value that comes from an input file, a journal or a server is shown as plain
text (``rich.text.Text``, never parsed as markup) after :func:`shown` removed its
control characters: an escape sequence in a CSV cell or in AICC's ``retMsg`` cannot
clear the screen, retitle the window or fake a line of output.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from rich.console import Console, ConsoleRenderable
from rich.logging import RichHandler
from rich.text import Text

__all__ = [
    "BAD_USAGE",
    "INTERRUPTED",
    "JOURNAL_FAILED",
    "OK",
    "SOME_NOT_DONE",
    "Stop",
    "Terminal",
    "plain",
    "sdk_log",
    "shown",
]

#: Exit statuses.
OK, SOME_NOT_DONE, BAD_USAGE, JOURNAL_FAILED, INTERRUPTED = 0, 1, 2, 3, 130


#: C0 controls (ESC, BEL, backspace...), DEL and the C1 controls (CSI as one byte...).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The same but the line break.
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
#: Whitespace controls, shown as a space rather than dropped (words stay apart).
_SPACES = str.maketrans(dict.fromkeys("\t\r\x0b\x0c", " "))


def shown(value: object, *, lines: bool = False) -> str:
    """``value`` as text fit for a terminal: every control character removed (ESC
    included, so no escape sequence survives), tabs made spaces, line breaks made
    spaces too unless ``lines``. The one function every shown value goes through:
    messages, the report, ``--json``, the SDK's log lines."""
    text = str(value).translate(_SPACES)
    if lines:
        return _CONTROL_BUT_LINES.sub("", text)
    return _CONTROL.sub("", text.replace("\n", " "))


def plain(value: object, style: str = "") -> Text:
    """``value`` as a rich ``Text`` after :func:`shown` (one line, never markup)."""
    return Text(shown(value), style=style)


def shown_json(value: Any) -> Any:
    """A JSON value with :func:`shown` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown(k): shown_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown_json(v) for v in value]
    return value


class Stop(Exception):
    """Ends a command with an exit status after its message was shown."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Terminal:
    """stdout for results, stderr for progress and messages."""

    def __init__(self) -> None:
        self.out = Console()
        self.err = Console(stderr=True)

    def note(self, message: str, style: str = "") -> None:
        """Show ``message`` (plain text, see :func:`shown`) on stderr."""
        self.err.print(Text(shown(message, lines=True), style=style))

    def warn(self, message: str) -> None:
        """Show ``aicc: message`` on stderr: something the user should look at, the
        command goes on."""
        self.err.print(
            Text.assemble(("aicc: ", "bold yellow"), (shown(message, lines=True), "yellow"))
        )

    def fail(self, message: str, status: int = BAD_USAGE) -> Stop:
        """Show ``aicc: message`` on stderr; returns the ``Stop`` to raise."""
        self.err.print(Text.assemble(("aicc: ", "bold red"), shown(message, lines=True)))
        return Stop(status)


class _LogHandler(RichHandler):
    """The SDK's log lines, their text passed through :func:`shown` (a logged server
    answer can hold anything)."""

    def render_message(self, record: logging.LogRecord, message: str) -> ConsoleRenderable:
        return super().render_message(record, shown(message, lines=True))


@contextlib.contextmanager
def sdk_log(terminal: Terminal, verbosity: int) -> Iterator[None]:
    """Show the SDK's log on stderr while a command runs: nothing by default (the
    command says what matters itself), INFO with ``-v``, DEBUG with ``-vv``."""
    logger = logging.getLogger("aicc_async")
    level = logging.CRITICAL + 1
    if verbosity:
        level = logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler = _LogHandler(
        console=terminal.err, show_time=verbosity > 1, show_path=False, markup=False
    )
    handler.setLevel(level)
    saved = logger.level
    if verbosity:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
