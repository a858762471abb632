"""The routing scenarios are deterministic (seeded fates, simulated clock), so their targets are tests.

Each scenario runs at a reduced size (``SCALE``, never below the scenario's own minimum: late
reports run at full size, or their failure would end before anyone could see it) to keep the
suite quick; ``python -m bench.routing``
runs them at full size and docs/routing.md shows those tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.routing import run_scenario
from bench.routing.scenarios import scenarios

SCALE = 0.4
#: Scenarios where adaptive misses a target today (docs/routing.md would say which and why).
#: Strict: when one starts passing, the test says so and it leaves this list.
KNOWN_MISSES: frozenset[str] = frozenset()


@pytest.mark.parametrize("scenario", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason="a known miss, see docs/routing.md"))
    if s.name in KNOWN_MISSES else s for s in scenarios(SCALE)], ids=lambda s: s.name)
def test_adaptive_meets_every_target_on_the_scenario(scenario, tmp_path: Path):
    _s, by, checks = run_scenario(scenario, tmp_path)
    missed = [what for what, ok in checks if not ok]
    assert not missed, f"{scenario.name}: {missed}"
    if scenario.failures:
        assert by["priority"]["failing_firsts"] > 50, "the fixed map keeps using the failing channel"
