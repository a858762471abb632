"""Contract: renew_leases extends exactly the leases one worker holds on messages it is sending."""

from __future__ import annotations

from otpagent.model import Status
from otpagent.protocols import MessageUpdate, StorageBackend
from tests.contract.conftest import T0, new


def test_renewal_extends_only_this_workers_sending_leases(storage: StorageBackend) -> None:
    storage.enqueue([new() for _ in range(4)], T0)
    mine = storage.claim_due("w1", 3, 6.0, T0)
    theirs = storage.claim_due("w2", 1, 6.0, T0)
    done = mine[0]
    assert storage.update_message(MessageUpdate(message_id=done.id, status=Status.SENT, expected_owner="w1"), T0 + 1)

    assert storage.renew_leases("w1", 6.0, T0 + 4) == 2

    for m in mine[1:]:
        renewed = storage.get_message(m.id)
        assert renewed is not None
        assert (renewed.status, renewed.lease_owner, renewed.lease_expires_at) == (Status.SENDING, "w1", T0 + 10)
    other = storage.get_message(theirs[0].id)
    assert other is not None and other.lease_expires_at == T0 + 6.0, "another worker's lease is not touched"
    finished = storage.get_message(done.id)
    assert finished is not None and finished.status is Status.SENT and finished.lease_owner is None


def test_a_renewed_lease_is_not_claimed_at_its_old_expiry_and_a_dead_workers_is(storage: StorageBackend) -> None:
    storage.enqueue([new(), new()], T0)
    alive = storage.claim_due("alive", 1, 6.0, T0)
    dead = storage.claim_due("dead", 1, 6.0, T0)
    storage.renew_leases("alive", 6.0, T0 + 5)

    taken = storage.claim_due("survivor", 10, 6.0, T0 + 7)

    assert [m.id for m in taken] == [dead[0].id], "only the lease nobody renewed ran out"
    assert storage.renew_leases("dead", 6.0, T0 + 8) == 0, "a renewal after a takeover renews nothing"
    kept = storage.get_message(alive[0].id)
    assert kept is not None and kept.lease_owner == "alive"
