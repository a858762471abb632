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


@pytest.mark.parametrize("scenario", scenarios(SCALE), ids=lambda s: s.name)
def test_adaptive_meets_every_target_on_the_scenario(scenario, tmp_path: Path):
    _s, by, checks = run_scenario(scenario, tmp_path)
    missed = [what for what, ok in checks if not ok]
    assert not missed, f"{scenario.name}: {missed}"
    if scenario.failures:
        assert by["priority"]["failing_firsts"] > 50, "the fixed map keeps using the failing channel"
