"""The fixtures every contract test class shares.

A subclass provides ``store_opener`` (see :class:`~otpagent.testing.StorageContract`). Each
capability's tests ask for it through a fixture that hands back the store as that capability's
protocol; when the backend does not declare the capability, those tests do not apply and are
skipped with that reason (a declaration, never the environment, decides). A declared capability
the backend does not implement fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from otpagent.protocols import (
    BatchUpdates,
    Capability,
    Housekeeping,
    OtpStore,
    ProviderEvents,
    RateLimits,
    SharedState,
    StorageBackend,
    StreamedEnqueue,
    WebhookOutbox,
    WorkWakeup,
)
from otpagent.storage.capabilities import require
from otpagent.testing.data import T0, new
from otpagent.testing.openers import StoreOpener

__all__ = ["ContractBase", "claimed", "stored_count"]


def _declared(storage: StorageBackend, capability: Capability) -> None:
    if capability not in storage.capabilities:
        pytest.skip(f"not applicable: the backend {storage.name!r} does not declare {capability.name}")


class ContractBase:
    """Fixtures: ``storage`` (a fresh store, closed afterwards) and one per capability."""

    #: Whether the store can be shared by several processes (a database). A backend whose store
    #: lives in one process (the in-memory one) sets this to False: the cross-process tests
    #: then do not apply to it.
    shared_across_processes: ClassVar[bool] = True

    @pytest.fixture
    def store_opener(self) -> StoreOpener:
        """Override in your subclass: a callable opening a new handle on one fresh, empty store
        (picklable when ``shared_across_processes``)."""
        pytest.fail("define a `store_opener` fixture in your StorageContract subclass", pytrace=False)

    @pytest.fixture
    def storage(self, store_opener: StoreOpener) -> Iterator[StorageBackend]:
        store = store_opener()
        try:
            yield store
        finally:
            store.close()

    @pytest.fixture
    def shared_state(self, storage: StorageBackend) -> SharedState:
        _declared(storage, Capability.SHARED_STATE)
        return require(storage, Capability.SHARED_STATE, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def rate_limits(self, storage: StorageBackend) -> RateLimits:
        _declared(storage, Capability.RATE_LIMITS)
        return require(storage, Capability.RATE_LIMITS, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def otp_store(self, storage: StorageBackend) -> OtpStore:
        _declared(storage, Capability.OTP_STORE)
        return require(storage, Capability.OTP_STORE, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def provider_events(self, storage: StorageBackend) -> ProviderEvents:
        _declared(storage, Capability.PROVIDER_EVENTS)
        return require(storage, Capability.PROVIDER_EVENTS, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def housekeeping(self, storage: StorageBackend) -> Housekeeping:
        _declared(storage, Capability.HOUSEKEEPING)
        return require(storage, Capability.HOUSEKEEPING, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def outbox(self, storage: StorageBackend) -> WebhookOutbox:
        """The store's webhook outbox, with the endpoint ``app`` created at :data:`T0`."""
        _declared(storage, Capability.WEBHOOK_OUTBOXES)
        outboxes = require(storage, Capability.WEBHOOK_OUTBOXES, config_path="storage",
                           needed_by="the contract suite")
        out = outboxes.webhook_outbox()
        out.ensure_endpoint("app", T0)
        return out

    @pytest.fixture
    def wakeup(self, storage: StorageBackend) -> WorkWakeup:
        _declared(storage, Capability.WORK_WAKEUP)
        return require(storage, Capability.WORK_WAKEUP, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def batch_updates(self, storage: StorageBackend) -> BatchUpdates:
        _declared(storage, Capability.BATCH_UPDATES)
        return require(storage, Capability.BATCH_UPDATES, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def streamed_enqueue(self, storage: StorageBackend) -> StreamedEnqueue:
        _declared(storage, Capability.STREAMED_ENQUEUE)
        return require(storage, Capability.STREAMED_ENQUEUE, config_path="storage", needed_by="the contract suite")

    @pytest.fixture
    def shared_store(self, store_opener: StoreOpener) -> StoreOpener:
        """The opener, for tests that hand it to other processes (not applicable otherwise)."""
        if not self.shared_across_processes:
            pytest.skip("not applicable: the store lives in one process (shared_across_processes = False)")
        return store_opener


def claimed(storage: StorageBackend, worker: str = "w1", **fields: Any) -> str:
    """Enqueue one message at :data:`T0` and claim it for ``worker`` (30 s lease); its id."""
    item = new(**fields)
    storage.enqueue([item], T0)
    storage.claim_due(worker, 1, 30.0, T0)
    return item.message.id


def stored_count(storage: StorageBackend) -> int:
    """How many messages the (small) store holds."""
    return len(storage.recent_messages(10_000))
