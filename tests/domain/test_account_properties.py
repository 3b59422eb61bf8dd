"""Property tests: replay, snapshot + tail and a reference model agree on random histories."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from bank.domain import Account, DomainError

# A command is (name, argument); invalid ones are generated on purpose.
commands = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(min_value=-5, max_value=500)),
        st.tuples(st.just("withdraw"), st.integers(min_value=-5, max_value=500)),
        st.tuples(st.sampled_from(["freeze", "unfreeze", "close"]), st.just(0)),
    ),
    max_size=60,
)


class Reference:
    """The simplest model of an account that could work."""

    def __init__(self, balance):
        self.balance, self.status = balance, "active"

    def run(self, name, amount):
        if name == "deposit":
            ok = amount > 0 and self.status == "active"
            self.balance += amount if ok else 0
        elif name == "withdraw":
            ok = 0 < amount <= self.balance and self.status == "active"
            self.balance -= amount if ok else 0
        elif name == "freeze":
            ok = self.status == "active"
            self.status = "frozen" if ok else self.status
        elif name == "unfreeze":
            ok = self.status == "frozen"
            self.status = "active" if ok else self.status
        else:
            ok = self.status != "closed" and self.balance == 0
            self.status = "closed" if ok else self.status
        return ok


def run(account, name, amount):
    if name in ("deposit", "withdraw"):
        getattr(account, name)(amount, "")
    else:
        getattr(account, name)("reason")


@settings(max_examples=300, deadline=None)
@given(initial=st.integers(min_value=0, max_value=1000), history=commands)
def test_replay_snapshot_plus_tail_and_reference_agree(initial, history):
    account_id = uuid.uuid4()
    account = Account.open(
        account_id, holder_name="P", currency="EUR", initial_balance_cents=initial
    )
    reference = Reference(initial)
    recorded = account.collect_events()
    for name, amount in history:
        version = account.version
        try:
            run(account, name, amount)
            accepted = True
        except DomainError:
            accepted = False
        assert accepted == reference.run(name, amount), (name, amount)
        new = account.collect_events()
        assert len(new) == (1 if accepted else 0)
        assert account.version == version + len(new)
        recorded += new
        assert account.balance_cents >= 0

    replayed = Account.from_events(account_id, recorded)
    assert (replayed.balance_cents, replayed.status, replayed.version) == (
        reference.balance,
        reference.status,
        len(recorded),
    )
    for interval in range(1, 11):
        cut = (len(recorded) // interval) * interval
        if cut == 0:
            continue
        snapshot = Account.from_events(account_id, recorded[:cut]).to_snapshot()
        restored = Account.from_events(account_id, recorded[cut:], snapshot=snapshot)
        assert (restored.balance_cents, restored.status, restored.version) == (
            replayed.balance_cents,
            replayed.status,
            replayed.version,
        )
