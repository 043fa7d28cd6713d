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


def _busy_tenant(contacts: Path, callback_key: str) -> FakeAICC:
    """A FakeAICC that behaves like a busy tenant: some numbers not on the trial
    trustlist, a few busy answers, rare connection resets after processing, and a
    signed release event for every call, 70 % of them answered."""
    fake = FakeAICC(
        record=False, latency=0.02, callback_key=callback_key, release_delay=0.2, answer_rate=0.7
    )
    with CampaignFile(contacts, "voice_notification") as source:
        called = [
            row.request.called
            for row in source.rows()
            if isinstance(row.request, CreateVoiceNotificationRequest)
        ]
    fake.trial_trustlist = {n for i, n in enumerate(called) if i % 250 != 7}
    fake.chaos(
        seed=2026,
        probability=0.01,
        faults=[Fault.BUSY, Fault.BUSY, Fault.RESET_AFTER_PROCESSING],
    )
    return fake


async def run_demo(terminal: Terminal, journal: Path | None) -> int:
    """Run the demo campaign into ``journal`` (default: a temporary one, removed after)."""
    contacts = _contacts()
    terminal.note(
        f"aicc demo: the voice campaign in {contacts.name} against FakeAICC, a local AICC "
        "simulator (nobody is called). Some numbers are not on the simulated tenant's "
        "trustlist, a few answers are 'busy' (retried) and a few connections drop after "
        "the call was placed (recorded as unknown, never re-sent, until their release event "
        "settles them). Each call's release event (answered or not) comes back to a "
        "receiver in this process and is recorded in the journal.\n"
    )
    key = secrets.token_urlsafe(24)
    options = Options(
        concurrency=DEFAULT_LIMITS["voice_notification"],
        rate=None,
        timeout=15.0,
        callbacks=Callbacks(url=None, listen=("127.0.0.1", 0), shared_key=key, wait=30.0),
    )
    with tempfile.TemporaryDirectory(prefix="aicc-demo-") as scratch:
        path = Path(scratch) / "campaign.db" if journal is None else journal
        status = await run_campaign(
            terminal,
            "voice_notification",
            contacts,
            JournalAt(JournalLocation(path), temporary=journal is None),
            options,
            sandbox=_busy_tenant(contacts, key),
        )
    kept = (
        f"The journal is {journal}: `aicc report {journal}` shows this report again. "
        if journal is not None
        else "The demo's journal was temporary (keep one with --journal PATH). "
    )
    terminal.note(
        f"\n{kept}Next: `aicc sandbox` in one shell, then `aicc notify YOUR.csv --journal "
        "campaign.db` in another."
    )
    return INTERRUPTED if status == INTERRUPTED else OK
