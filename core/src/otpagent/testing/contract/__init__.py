"""The storage contract suite: what every storage backend must do, as pytest test classes.

Subclass :class:`StorageContract` in a test module and give it a ``store_opener`` fixture: a
callable that opens a new handle on one fresh, empty store (picklable, because the
cross-process tests hand it to spawned children)::

    from otpagent.testing import FactoryOpener, StorageContract

    class TestAcmeStorage(StorageContract):
        @pytest.fixture
        def store_opener(self, tmp_path):
            return FactoryOpener(create_acme_storage, {"backend": "acme", "path": str(tmp_path / "db")})

A backend whose store lives in one process subclasses :class:`InProcessStorageContract`
instead (or sets ``shared_across_processes = False``, which reports those tests as skipped); the
capabilities a backend does not declare are not tested (and reported as not applicable). Each
concern is a class of its own, so a suite may also combine only some of them.
"""

from __future__ import annotations

import pytest

# Before the test modules are imported, so that their asserts explain failures as pytest's do.
pytest.register_assert_rewrite(*(f"{__name__}.{module}" for module in (
    "base", "batch_updates", "capabilities", "claims", "concurrency", "enqueue", "housekeeping", "otp", "processes",
    "provider_events", "rate_limits", "shared_state", "streamed_enqueue", "updates", "wakeup", "webhook_outbox")))

from otpagent.testing.contract.base import ContractBase, claimed  # noqa: E402
from otpagent.testing.contract.batch_issue import BatchIssueContract  # noqa: E402
from otpagent.testing.contract.batch_updates import BatchUpdateContract  # noqa: E402
from otpagent.testing.contract.capabilities import CapabilityContract  # noqa: E402
from otpagent.testing.contract.claims import ClaimContract  # noqa: E402
from otpagent.testing.contract.concurrency import ConcurrencyContract  # noqa: E402
from otpagent.testing.contract.enqueue import EnqueueContract  # noqa: E402
from otpagent.testing.contract.housekeeping import HousekeepingContract  # noqa: E402
from otpagent.testing.contract.otp import OtpStoreContract  # noqa: E402
from otpagent.testing.contract.processes import CrossProcessContract  # noqa: E402
from otpagent.testing.contract.provider_events import ProviderEventContract  # noqa: E402
from otpagent.testing.contract.rate_limits import RateLimitContract  # noqa: E402
from otpagent.testing.contract.shared_state import SharedStateContract  # noqa: E402
from otpagent.testing.contract.streamed_enqueue import StreamedEnqueueContract  # noqa: E402
from otpagent.testing.contract.updates import UpdateContract  # noqa: E402
from otpagent.testing.contract.wakeup import WakeupContract  # noqa: E402
from otpagent.testing.contract.webhook_outbox import WebhookOutboxContract  # noqa: E402

__all__ = [
    "BatchIssueContract",
    "BatchUpdateContract",
    "CapabilityContract",
    "ClaimContract",
    "ConcurrencyContract",
    "ContractBase",
    "CrossProcessContract",
    "EnqueueContract",
    "HousekeepingContract",
    "InProcessStorageContract",
    "OtpStoreContract",
    "ProviderEventContract",
    "RateLimitContract",
    "SharedStateContract",
    "StorageContract",
    "StreamedEnqueueContract",
    "UpdateContract",
    "WakeupContract",
    "WebhookOutboxContract",
    "claimed",
]


class InProcessStorageContract(
    CapabilityContract, EnqueueContract, ClaimContract, UpdateContract, BatchUpdateContract, SharedStateContract,
    RateLimitContract, OtpStoreContract, BatchIssueContract, ProviderEventContract, HousekeepingContract,
    WebhookOutboxContract, WakeupContract, StreamedEnqueueContract, ConcurrencyContract,
):
    """The whole contract for a store that lives in one process (the in-memory one): everything
    but the cross-process tests, which are then not collected at all rather than skipped."""


class StorageContract(InProcessStorageContract, CrossProcessContract):
    """The whole contract: the required core and every capability the backend declares."""
