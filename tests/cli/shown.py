"""What the CLI tests read off a finished ``aicc`` run's output."""

from __future__ import annotations

from typing import Any


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space (rich wraps long lines)."""
    return " ".join(text.split())


def no_traceback(done: Any) -> None:
    assert "Traceback" not in done.output, done


def one_message(done: Any) -> str:
    """The one ``aicc:`` error message on stderr, whitespace flattened."""
    no_traceback(done)
    starts = [line for line in done.stderr.splitlines() if line.startswith("aicc:")]
    assert len(starts) == 1, done
    return flat(done.stderr[done.stderr.index("aicc:") :])
