"""Phone numbers compared as AICC would dial them: the one function every number
comparison in the project goes through (once-per-number checks, release events
matched to rows, do-not-call lists, contact history)."""

from __future__ import annotations

import re

__all__ = ["normalise_number"]

#: What people put between digits: spaces, dashes, dots, brackets, slashes.
_SEPARATORS = re.compile(r"[\s\-./()]+")


def normalise_number(number: str) -> str:
    """``number`` with its separators dropped and a leading ``+`` read as ``00``.

    ``"+86 138-1234-5678"``, ``"008613812345678"`` and ``"+8613812345678"`` all give
    ``"008613812345678"``. It does not validate: a value that is not a number
    afterwards (letters, an inner ``+``) comes back as it is, separators dropped, so it
    only ever equals another value that is the same text.
    """
    if number.isdigit():  # nothing to drop (most numbers, and every normalised one)
        return number
    plain = _SEPARATORS.sub("", number)
    return "00" + plain[1:] if plain.startswith("+") else plain
