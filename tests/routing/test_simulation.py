"""The routing simulation is deterministic (seeded, simulated clock), so its targets are tests."""

from __future__ import annotations

from bench.routing import run, verdicts


def test_adaptive_meets_the_routing_targets_against_the_oracle():
    rows = run(messages=3000, seed=11)
    by = {r["strategy"]: r for r in rows}
    assert set(by) == {"priority", "cheapest", "most-reliable", "adaptive", "oracle"}
    for what, ok in verdicts(rows):
        assert ok, what
    assert by["priority"]["outage_first_choices"] > 100, "the fixed map keeps using the failing channel"
