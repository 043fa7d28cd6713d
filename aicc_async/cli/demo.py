"""``aicc demo``: the bundled sample campaign against an in-process FakeAICC."""

from __future__ import annotations

import secrets
import tempfile
from importlib import resources
from pathlib import Path

from aicc_async.bulk.campaign.csv_input import CampaignFile
from aicc_async.bulk.journal import JournalLocation
from aicc_async.cli.campaigns import Callbacks, Options, run_campaign
from aicc_async.cli.journals import JournalAt
from aicc_async.cli.terminal import INTERRUPTED, OK, Terminal
from aicc_async.config import DEFAULT_LIMITS
from aicc_async.endpoints.voice_notification import CreateVoiceNotificationRequest
from aicc_async.testing import FakeAICC, Fault

__all__ = ["run_demo"]


def _contacts() -> Path:
    packaged = resources.files("aicc_async") / "_demo" / "contacts.csv"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "examples" / "contacts.csv"


# The dialer loop the demo shows: every day, all day, in UTC (open whenever the demo
# runs, so it never waits for a window); a second call for the unanswered after the
# shortest wait the dialer accepts; the numbers of every 500th contact opted out.
_CALLING_HOURS = "00:00-24:00"
_ZONE = "UTC"
_ATTEMPTS = 2
_REDIAL_AFTER = "3s"
_OPTED_OUT_EVERY = 500


def _called(contacts: Path) -> list[str]:
    """The numbers of the contacts' voice notifications, in file order."""
    with CampaignFile(contacts, "voice_notification") as source:
        return [
            row.request.called
            for row in source.rows()
            if isinstance(row.request, CreateVoiceNotificationRequest)
        ]


def _answers(number: str, attempt: int) -> str:
    """Who answers: numbers ending in 0 or 1 only on the second call, those ending in 2
    never, everyone else on the first."""
    last = number[-1:]
    if last in ("0", "1"):
        return "no_answer" if attempt == 1 else "answered"
    return "never" if last == "2" else "answered"


def _busy_tenant(called: list[str], callback_key: str) -> FakeAICC:
    """A FakeAICC that behaves like a busy tenant: some numbers not on the trial
    trustlist, a few busy answers, rare connection resets after processing, and a
    signed release event for every call, answered as :func:`_answers` says."""
    fake = FakeAICC(
        record=False, latency=0.02, callback_key=callback_key, release_delay=0.2, answers=_answers
    )
    fake.trial_trustlist = {n for i, n in enumerate(called) if i % 250 != 7}
    fake.chaos(
        seed=2026,
        probability=0.01,
        faults=[Fault.BUSY, Fault.BUSY, Fault.RESET_AFTER_PROCESSING],
    )
    return fake


def _write_do_not_call(called: list[str], scratch: Path) -> tuple[Path, int]:
    """The demo's do-not-call list (in its scratch directory): the numbers of every
    500th contact. Returns the file and how many numbers it holds."""
    opted_out = list(dict.fromkeys(called[100::_OPTED_OUT_EVERY]))
    path = scratch / "do-not-call.txt"
    path.write_text(
        "# Opted out: never phone these numbers\n" + "".join(f"{n}\n" for n in opted_out),
        encoding="utf-8",
    )
    return path, len(opted_out)


async def run_demo(terminal: Terminal, journal: Path | None) -> int:
    """Run the demo campaign into ``journal`` (default: a temporary one, removed after)."""
    contacts = _contacts()
    called = _called(contacts)
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="aicc-demo-") as scratch:
        do_not_call, opted_out = _write_do_not_call(called, Path(scratch))
        terminal.note(
            f"aicc demo: the voice campaign in {contacts.name} against FakeAICC, a local AICC "
            "simulator (nobody is called). Some numbers are not on the simulated tenant's "
            "trustlist, a few answers are 'busy' (retried) and a few connections drop after "
            "the call was placed (recorded as unknown, never re-sent, until their release "
            "event settles them). Each call's release event (answered or not) comes back to "
            "a receiver in this process and is recorded in the journal.\n"
            "The dialer: a do-not-call list of "
            f"{opted_out} of its numbers ({do_not_call.name}, a temporary file the demo "
            "writes and removes) makes their rows suppressed, never phoned. Numbers ending "
            f"in 0 or 1 answer only a second call, placed {_REDIAL_AFTER} after the first "
            "one's release event says not answered (--attempts "
            f"{_ATTEMPTS} --redial-after {_REDIAL_AFTER}; a real campaign waits longer, "
            f"30m by default); those ending in 2 never answer. Calling hours are "
            f"'{_CALLING_HOURS}' {_ZONE}, every day all day, so nothing waits here: with "
            'narrower hours (--calling-hours "mon-fri 09:00-20:00"), rows outside their '
            "window wait for it to open, and the live line says until when.\n"
        )
        options = Options(
            concurrency=DEFAULT_LIMITS["voice_notification"],
            rate=None,
            timeout=15.0,
            callbacks=Callbacks(url=None, listen=("127.0.0.1", 0), shared_key=key, wait=30.0),
            dialer={
                "calling_hours": _CALLING_HOURS,
                "timezone": _ZONE,
                "do_not_call": [do_not_call],
                "attempts": _ATTEMPTS,
                "redial_after": _REDIAL_AFTER,
                "wait_outcomes": 30.0,
            },
        )
        path = Path(scratch) / "campaign.db" if journal is None else journal
        status = await run_campaign(
            terminal,
            "voice_notification",
            contacts,
            JournalAt(JournalLocation(path), temporary=journal is None),
            options,
            sandbox=_busy_tenant(called, key),
        )
    kept = (
        f"The journal is {journal}: `aicc report {journal}` shows this report again. "
        if journal is not None
        else "The demo's journal was temporary (keep one with --journal PATH). "
    )
    terminal.note(
        f"\n{kept}Next: `aicc sandbox` in one shell, then `aicc notify YOUR.csv --journal "
        "campaign.db` in another (`aicc notify --help` lists the dialer's options: "
        "--calling-hours, --do-not-call, --attempts, --redial-after...)."
    )
    return INTERRUPTED if status == INTERRUPTED else OK
