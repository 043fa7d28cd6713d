"""Who answers FakeAICC's calls: a chosen outcome per number and per attempt.

``FakeAICC(answers=...)`` takes either a mapping from numbers to outcomes::

    FakeAICC(answers={
        "88880001": ["no_answer", "answered"],  # 1st call not answered, 2nd and later answered
        "88880002": "never",                    # never answers
        "88880003": "busy",                     # busy every time
    })

or a callable ``answers(number, attempt)`` returning an outcome or None, where
``number`` is the called number normalised
(:func:`aicc_async._numbers.normalise_number`) and ``attempt`` counts from 1. The
Nth notification processed for a number uses the Nth entry of its list, the last
entry repeating. Numbers are matched normalised (``+86 138...`` is ``0086138...``).
A number not in the mapping, a None from the callable and the outcome ``"random"``
keep the default: answered with probability ``answer_rate``.

Outcomes and the release event each one gives (the documented ``releaseReason``
codes, see :data:`aicc_async.callbacks.RELEASE_REASONS`):

- ``"answered"``: ``talkingTime`` and a ``talkDuration`` above 0, reason ``0`` or ``1``;
- ``"no_answer"`` (``"never"`` is the same): it rang and nobody answered, reason ``4``
  with an ``alertingTime``, ``talkDuration`` 0;
- ``"busy"``: the line was busy, so it never rang: reason ``6`` (the call failed
  before ringing), no ``alertingTime``, ``talkDuration`` 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal, TypeAlias

from aicc_async._numbers import normalise_number

__all__ = ["OUTCOMES", "REASONS", "AnswerPlan", "Answers", "Outcome"]

Outcome: TypeAlias = Literal["answered", "no_answer", "busy"]
Answers: TypeAlias = Mapping[str, str | Sequence[str]] | Callable[[str, int], str | None]
"""What ``FakeAICC(answers=...)`` takes (see the module doc)."""

OUTCOMES: Final[Mapping[str, Outcome | None]] = {
    "answered": "answered",
    "no_answer": "no_answer",
    "never": "no_answer",
    "busy": "busy",
    "random": None,
}
"""Each outcome name and what it means (None: answered with ``answer_rate``)."""

#: The release reason of each unanswered outcome.
REASONS: Final[Mapping[Outcome, str]] = {"no_answer": "4", "busy": "6"}


def _outcome(value: object, where: str) -> Outcome | None:
    if not isinstance(value, str) or value not in OUTCOMES:
        raise ValueError(f"answers{where}: {value!r} is not one of {sorted(OUTCOMES)}")
    return OUTCOMES[value]


def _number(value: object) -> str:
    key = normalise_number(value) if isinstance(value, str) else ""
    if not (key.isascii() and key.isdigit()):
        raise ValueError(f"answers: {value!r} is not a phone number")
    return key


class AnswerPlan:
    """Turns the ``answers`` option into an outcome per notification.

    Raises ValueError for a number that is not one, an unknown outcome or an empty
    list (the message names it); a callable's result is checked on each call.
    """

    def __init__(self, answers: Answers | None) -> None:
        self._calls: Counter[str] = Counter()
        self._function: Callable[[str, int], str | None] | None = None
        self._table: dict[str, tuple[Outcome | None, ...]] = {}
        if answers is None:
            return
        if callable(answers):
            self._function = answers
            return
        if not isinstance(answers, Mapping):
            raise ValueError("answers must be a mapping of numbers to outcomes, or a callable")
        for number, value in answers.items():
            entries = [value] if isinstance(value, str) else value
            if not isinstance(entries, Sequence) or not entries:
                raise ValueError(f"answers[{number!r}] must be an outcome or a list of them")
            where = f"[{number!r}]"
            self._table[_number(number)] = tuple(_outcome(e, where) for e in entries)

    def next(self, called: str) -> Outcome | None:
        """The outcome of the next notification to ``called`` (None: at random)."""
        if self._function is None and not self._table:
            return None
        key = normalise_number(called)
        self._calls[key] += 1
        attempt = self._calls[key]
        if self._function is not None:
            chosen = self._function(key, attempt)
            return None if chosen is None else _outcome(chosen, f"({key!r}, {attempt})")
        entries = self._table.get(key)
        if entries is None:
            return None
        return entries[min(attempt, len(entries)) - 1]
