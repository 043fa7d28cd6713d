"""The kill loop: ``aicc notify`` SIGKILLed at random points (seeded) over several
cycles, rows removed from and added to the input between cycles, then one run to the
end.

Nobody may be phoned twice (FakeAICC's per-number counts), no row may be phoned after
it left the input, and the journal must account for every row ever given: rows still
in the input end done (or unknown: in flight at a kill), rows that left it pending
end withdrawn.
"""

from __future__ import annotations

import collections
import json
import random
import signal

CREATE = "createVoiceNotification"
SEED = 20269
CYCLES = 5
START_ROWS = 400
CONCURRENCY = 8


def test_kill_loop_with_rows_removed_and_added(
    tmp_path, start_fake, aicc, write_csv, read_journal, number_of
):
    rng = random.Random(SEED)
    fake = start_fake(0.01)
    source = tmp_path / "contacts.csv"
    journal = tmp_path / "campaign.db"
    command = ("notify", source, "--journal", journal, "--concurrency", str(CONCURRENCY))

    present = {str(i): number_of(i) for i in range(START_ROWS)}  # key -> number, in order
    ever = dict(present)
    removed: dict[str, int] = {}  # key -> calls to its number when it left the input
    next_id = START_ROWS

    def write_input() -> None:
        write_csv(
            source, ["id", "called", "text"], [[k, n, f"Hello {k}"] for k, n in present.items()]
        )

    write_input()
    for cycle in range(CYCLES):
        target = fake.processed() + rng.randint(1, 60)
        running = aicc.start(*command, env=fake.env)
        fake.wait_for(
            lambda s, target=target, running=running: (
                s["processed"][CREATE] >= target or running.proc.poll() is not None
            ),
            deadline=60,
        )
        running.signal(signal.SIGKILL)
        killed = running.wait(10)
        assert killed.returncode == -signal.SIGKILL, (
            f"cycle {cycle} ended before the kill: {killed}"
        )
        # Requests that reached FakeAICC before the kill are placed now or never.
        fake.wait_for(lambda s: s["in_flight"] == 0, deadline=10)

        calls = fake.calls()
        twice = {n: c for n, c in calls.items() if c > 1}
        assert not twice, f"cycle {cycle}: numbers phoned twice: {twice}"
        for key in rng.sample(sorted(present, key=int), rng.randint(5, 40)):
            removed[key] = calls.get(present.pop(key), 0)
        for _ in range(rng.randint(5, 40)):
            key = str(next_id)
            present[key] = ever[key] = number_of(next_id)
            next_id += 1
        write_input()

    last = aicc.run(*command, env=fake.env, timeout=120)
    assert "Traceback" not in last.output, last

    calls = fake.calls()
    twice = {n: c for n, c in calls.items() if c > 1}
    assert not twice, f"numbers phoned twice: {twice}"
    phoned_after_removal = {
        key: (at_removal, calls.get(ever[key], 0))
        for key, at_removal in removed.items()
        if calls.get(ever[key], 0) != at_removal
    }
    assert not phoned_after_removal, (
        f"rows phoned after they left the input: {phoned_after_removal}"
    )

    rows = {r["key"]: r for r in read_journal(journal)}
    assert set(rows) == set(ever), "the journal lost or invented rows"
    states = collections.Counter(r["state"] for r in rows.values())
    assert states["pending"] == states["sending"] == 0, states
    assert states["failed"] == states["duplicate"] == 0, states
    for key, row in rows.items():
        number = ever[key]
        assert row["called"] == number, row
        assert row["sends"] <= 1, row
        if key in present:
            assert row["state"] in ("done", "unknown"), row
        else:
            assert row["state"] in ("done", "unknown", "withdrawn"), row
        if row["state"] == "done":
            assert calls.get(number) == 1, row
        elif row["state"] == "withdrawn":
            assert calls.get(number, 0) == 0, row
            assert row["sends"] == 0, row
        else:  # unknown: it was in flight at a kill
            assert row["code"] == "interrupted", row
            assert row["sends"] == 1, row
    assert states["unknown"] <= CONCURRENCY * CYCLES, states
    assert states["withdrawn"] > 0, states  # the loop did remove rows before they were sent
    assert all(calls.get(n) == 1 for k, n in present.items() if rows[k]["state"] == "done")
    assert last.returncode == (1 if states["unknown"] else 0), last

    report = aicc.run("report", journal, "--json", env=fake.env)
    assert report.returncode == 0, report
    counted = json.loads(report.stdout)["states"]
    assert {k: v for k, v in counted.items() if v} == dict(states), counted
