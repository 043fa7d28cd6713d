"""How ``aicc`` talks to its user: exit statuses, messages on stderr, the SDK's log.

Every value that comes from an input file, a journal or a server is shown as plain
text (``rich.text.Text``): never parsed as markup, control characters removed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.console import Console
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
    "sdk_log",
]

#: Exit statuses.
OK, SOME_NOT_DONE, BAD_USAGE, JOURNAL_FAILED, INTERRUPTED = 0, 1, 2, 3, 130


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
        """Show ``message`` (plain text) on stderr."""
        self.err.print(Text(message, style=style))

    def fail(self, message: str, status: int = BAD_USAGE) -> Stop:
        """Show ``aicc: message`` on stderr; returns the ``Stop`` to raise."""
        self.err.print(Text.assemble(("aicc: ", "bold red"), message))
        return Stop(status)


@contextlib.contextmanager
def sdk_log(terminal: Terminal, verbosity: int) -> Iterator[None]:
    """Show the SDK's log on stderr while a command runs: nothing by default (the
    command says what matters itself), INFO with ``-v``, DEBUG with ``-vv``."""
    logger = logging.getLogger("aicc_async")
    level = logging.CRITICAL + 1
    if verbosity:
        level = logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler = RichHandler(
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
