"""FakeAICC(answers=...): who answers, per number and per attempt, seen through real
release events posted to a real CallbackReceiver."""

from __future__ import annotations

import pytest
import test_fake_release_events
from test_fake_release_events import KEY, Receiver

from aicc_async import ReleaseEvent
from aicc_async.testing import FakeAICC
from aicc_async.testing.fake.answers import AnswerPlan, Answers

receiver = test_fake_release_events.receiver  # the same fixture: a real receiver


def simulator(answers: Answers | None, answer_rate: float = 0.7) -> FakeAICC:
    """A FakeAICC sending signed release events at once."""
    return FakeAICC(callback_key=KEY, release_delay=0, answer_rate=answer_rate, answers=answers)


async def call(fake: FakeAICC, url: str | None, numbers: list[str]) -> list[str]:
    """One notification per entry of ``numbers``, in order; their serial numbers."""
    serials: list[str] = []
    async with fake.client() as aicc:
        for number in numbers:
            result = await aicc.voice_notification.create(
                called=number, voice_content="$hi$", callback_url=url
            )
            assert result.call_serial_no is not None
            serials.append(result.call_serial_no)
    return serials


async def outcomes(fake: FakeAICC, receiver: Receiver, numbers: list[str]) -> list[ReleaseEvent]:
    """The release events of calls to ``numbers``, in the order they were placed."""
    serials = await call(fake, receiver.url, numbers)
    await fake.wait_release_events()
    by_serial = {e.call_serial_no: e for e in receiver.events}
    assert len(by_serial) == len(serials)
    return [by_serial[s] for s in serials]


@pytest.mark.asyncio
async def test_the_nth_call_to_a_number_gets_the_nth_outcome_the_last_repeating(
    receiver: Receiver,
) -> None:
    answers = {"88880001": ["no_answer", "answered"]}
    async with simulator(answers) as fake:
        events = await outcomes(fake, receiver, ["88880001"] * 3)
    assert [e.answered for e in events] == [False, True, True]
    first, second, _ = events
    assert first.release_reason == "4"
    assert first.alerting_time  # it rang
    assert not first.talking_time
    assert first.talk_duration == 0
    assert second.release_reason in {"0", "1"}
    assert second.talking_time
    assert second.talk_duration is not None
    assert second.talk_duration > 0


@pytest.mark.asyncio
async def test_never_and_busy_are_never_answered_with_their_documented_reasons(
    receiver: Receiver,
) -> None:
    answers = {"88880002": "never", "88880003": "busy"}
    async with simulator(answers, 1.0) as fake:
        events = await outcomes(fake, receiver, ["88880002", "88880003"] * 3)
        stats = fake.stats()
    never, busy = events[0::2], events[1::2]
    assert [(e.answered, e.release_reason) for e in never] == [(False, "4")] * 3
    assert [(e.answered, e.release_reason) for e in busy] == [(False, "6")] * 3
    assert all(e.alerting_time for e in never)
    assert not any(e.alerting_time for e in busy)  # a busy line never rings
    assert busy[0].release_reason_meaning == "the call failed before ringing"
    assert stats["release_events"]["not_answered"] == 6


@pytest.mark.asyncio
async def test_numbers_are_matched_normalised(receiver: Receiver) -> None:
    answers = {"+86 138-0000-0001": "never"}
    async with simulator(answers, 1.0) as fake:
        events = await outcomes(fake, receiver, ["008613800000001", "+8613800000001"])
    assert [e.answered for e in events] == [False, False]


@pytest.mark.asyncio
async def test_a_callable_chooses_by_normalised_number_and_attempt(receiver: Receiver) -> None:
    asked: list[tuple[str, int]] = []

    def choose(number: str, attempt: int) -> str | None:
        asked.append((number, attempt))
        if number == "88880009":
            return None  # the default: answer_rate, here always answered
        return "answered" if attempt >= 3 else "busy"

    async with simulator(choose, 1.0) as fake:
        events = await outcomes(fake, receiver, ["+8613800000001"] * 3 + ["88880009"])
    assert [e.answered for e in events] == [False, False, True, True]
    assert [e.release_reason for e in events[:2]] == ["6", "6"]
    assert asked == [
        ("008613800000001", 1),
        ("008613800000001", 2),
        ("008613800000001", 3),
        ("88880009", 1),
    ]


@pytest.mark.asyncio
async def test_numbers_left_out_keep_the_seeded_random_outcomes(receiver: Receiver) -> None:
    numbers = [f"8888{i:04d}" for i in range(30)]
    async with simulator(None, 0.5) as plain:
        before = await outcomes(plain, receiver, numbers)
    answers = {"88880000": "answered", "88880007": "busy"}
    other = Receiver()  # the same serial numbers again: a new receiver, not replays
    await other.start()
    try:
        async with simulator(answers, 0.5) as chosen:
            after = await outcomes(chosen, other, numbers)
    finally:
        await other.close()
    left_out = [i for i in range(30) if numbers[i] not in answers]
    assert [before[i].answered for i in left_out] == [after[i].answered for i in left_out]
    assert 0 < sum(before[i].answered for i in left_out) < len(left_out)
    assert after[0].answered
    assert not before[0].answered  # so the chosen call drew differently
    assert (after[7].answered, after[7].release_reason) == (False, "6")


@pytest.mark.asyncio
async def test_a_call_without_a_callback_url_still_counts_as_an_attempt(
    receiver: Receiver,
) -> None:
    answers = {"88880001": ["no_answer", "answered"]}
    async with simulator(answers) as fake:
        await call(fake, None, ["88880001"])  # attempt 1: no event asked for
        events = await outcomes(fake, receiver, ["88880001"])
    assert [e.answered for e in events] == [True]


@pytest.mark.parametrize(
    ("answers", "says"),
    [
        ({"88880001": "maybe"}, "'maybe' is not one of"),
        ({"88880001": ["answered", "later"]}, "'later' is not one of"),
        ({"88880001": []}, "must be an outcome or a list"),
        ({"88880001": 3}, "must be an outcome or a list"),
        ({"not a number": "busy"}, "'not a number' is not a phone number"),
        ({"\u0661\u0662\u0663": "busy"}, "is not a phone number"),
        (["88880001"], "must be a mapping"),
    ],
)
def test_a_bad_answers_option_is_refused_naming_it(answers: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        FakeAICC(answers=answers)  # type: ignore[arg-type]


def test_a_callable_answering_junk_is_refused_naming_the_call() -> None:
    plan = AnswerPlan(lambda number, attempt: "perhaps")
    with pytest.raises(ValueError, match=r"answers\('88880001', 1\): 'perhaps' is not one of"):
        plan.next("88880001")


def test_random_in_a_list_keeps_the_default_for_that_attempt() -> None:
    plan = AnswerPlan({"88880001": ["busy", "random", "answered"]})
    assert [plan.next("88880001") for _ in range(4)] == ["busy", None, "answered", "answered"]
    assert plan.next("88880002") is None
    assert AnswerPlan(None).next("88880001") is None
