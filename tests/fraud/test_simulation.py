"""The pumping simulation (bench/fraud.py), small and deterministic: the issue's targets hold."""

from __future__ import annotations

from bench.fraud import simulate, verdicts


def test_a_pumping_attack_is_blocked_and_legitimate_users_are_not() -> None:
    attacked = simulate(11, hours=5.0)
    calm = simulate(11, hours=5.0, attack=False)

    assert attacked["attack_requests"] > 3000 and attacked["legit_requests"] > 30000
    assert attacked["attack_blocked"] >= 0.95
    assert attacked["legit_blocked"] < 0.005
    assert attacked["legit_refused_elsewhere"] == 0, "only real users of the pumped prefixes wait"
    assert calm["legit_blocked"] == 0.0 and calm["holds"] == []
    assert {prefix for _at, prefix, _extended in attacked["holds"]} == {"+9989012", "+3712955", "+447911"}
    assert all(ok for _what, ok in verdicts([attacked, calm]))
