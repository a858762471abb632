"""What a SIGKILL recovery run must show, on any backend (see bench/crashrecovery.py).

Assertions on what the code promises, never on how fast a busy machine was: the dead worker's
leases end at most one lease after its last heartbeat (so at most one lease after the kill),
the survivor sends every message, and only what the dead worker held can repeat.
"""

from __future__ import annotations

from bench.crashrecovery import KillRun


def assert_recovered(run: KillRun) -> None:
    held = set(run.held)
    assert held, "the kill must land while the worker has sends in flight for this test to mean anything"
    late = {m: round(expiry - run.killed_at, 3) for m, expiry in run.held.items()
            if expiry > run.killed_at + run.lease_seconds}
    assert not late, f"leases reach beyond kill time + lease ({run.lease_seconds} s): {late}"
    assert run.statuses == {"sent": len(run.ids)}, f"every message sent: {dict(run.statuses)}"
    assert set(run.delivered) == set(run.ids), "none lost"
    # Held at the kill, as the store showed right after it: the survivor sent each again, unless
    # the dead worker's own outcome was already on its way to the server (a statement the server
    # had received still commits after the client dies): then the dead worker sent it itself.
    assert held <= set(run.survivor_sent) | set(run.victim_sent), "every message the dead worker held went out"
    duplicates = run.duplicates
    assert all(run.delivered[m] == 2 for m in duplicates)
    assert duplicates <= held, "only messages the dead worker held when it died may repeat"
    assert duplicates <= set(run.victim_sent)
    recovery = run.recovery_seconds  # None when the dead worker's own outcome landed for one it held
    again = "some went out by the dead worker's own last statement" if recovery is None else \
        f"the last went out again {recovery:.1f} s after the kill"
    print(f"{len(held)} in flight at the kill, {len(duplicates)} sent twice; {again} (lease {run.lease_seconds:g} s)")
