"""Contract: shared key/values (circuit state, pauses, learned routing, idempotency records)."""

from __future__ import annotations

from otpagent.protocols import SharedState
from otpagent.testing.contract.base import ContractBase

__all__ = ["SharedStateContract"]


class SharedStateContract(ContractBase):
    """The shared state capability."""

    def test_state_is_stored_and_replaced(self, shared_state: SharedState) -> None:
        assert shared_state.get_state("circuit:SMS") is None

        assert shared_state.put_state("circuit:SMS", "open") == "open"
        assert shared_state.put_state("circuit:SMS", "closed") == "closed"

        assert shared_state.get_state("circuit:SMS") == "closed"

    def test_only_if_absent_keeps_the_existing_value(self, shared_state: SharedState) -> None:
        first = shared_state.put_state("otp-key", "first", only_if_absent=True)
        second = shared_state.put_state("otp-key", "second", only_if_absent=True)

        assert (first, second, shared_state.get_state("otp-key")) == ("first", "first", "first")

    def test_update_state_reads_modifies_and_writes(self, shared_state: SharedState) -> None:
        seen: list[str | None] = []

        def bump(current: str | None) -> str:
            seen.append(current)
            return str(int(current or "0") + 1)

        assert shared_state.update_state("counter", bump) == "1"
        assert shared_state.update_state("counter", bump) == "2"
        assert seen[0] is None
        assert seen[-1] == "1"
        assert shared_state.get_state("counter") == "2"

    def test_states_with_prefix_match_the_prefix_literally(self, shared_state: SharedState) -> None:
        for key in ("circuit:SMS", "circuit:EMAIL", "circuits", "rate_1", "rateX1", "pause:SMS"):
            shared_state.put_state(key, key.upper())

        assert shared_state.states_with_prefix("circuit:") == {"circuit:SMS": "CIRCUIT:SMS",
                                                                "circuit:EMAIL": "CIRCUIT:EMAIL"}
        assert shared_state.states_with_prefix("rate_") == {"rate_1": "RATE_1"}
        assert shared_state.states_with_prefix("nothing") == {}
