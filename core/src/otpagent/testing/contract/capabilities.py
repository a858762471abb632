"""Contract: the backend declares its capabilities honestly, and has the core every agent needs."""

from __future__ import annotations

from otpagent.protocols import Capability, StorageBackend
from otpagent.storage.capabilities import describe, provides
from otpagent.testing.contract.base import ContractBase
from otpagent.testing.openers import StoreOpener

__all__ = ["CapabilityContract"]


class CapabilityContract(ContractBase):
    """``name``, ``capabilities`` and the protocols behind them."""

    def test_the_backend_has_the_required_core(self, storage: StorageBackend) -> None:
        assert isinstance(storage, StorageBackend)
        assert isinstance(storage.name, str) and storage.name
        storage.ping()

    def test_capabilities_are_a_frozenset_of_capability(self, storage: StorageBackend) -> None:
        assert isinstance(storage.capabilities, frozenset)
        assert all(isinstance(c, Capability) for c in storage.capabilities)

    def test_every_declared_capability_is_implemented(self, storage: StorageBackend) -> None:
        missing = [describe(c) for c in storage.capabilities if not provides(storage, c)]

        assert missing == [], f"declared but not implemented: {missing}"

    def test_it_provides_what_every_agent_needs(self, storage: StorageBackend) -> None:
        needed = {Capability.SHARED_STATE, Capability.HOUSEKEEPING}

        assert needed <= storage.capabilities, "every agent runs circuit breakers and cleanup"

    def test_closing_is_safe_to_repeat(self, store_opener: StoreOpener) -> None:
        store = store_opener()
        store.close()
        store.close()
