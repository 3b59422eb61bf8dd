"""Reversals and maker-checker requests in the read models (issue 21).

The balances follow ``PostingReversed`` through the domain's ``balance_change``; the history
adds a ``reversal`` row linked both ways ("reverses v2" / "reversed by v4"); the approval
streams' events touch neither read model and never park or stop a follower; and a rebuild
equals live following, whatever the batch sizes.
"""

from __future__ import annotations

import pytest

import eventstore as es
from bank.models import ApprovalRequest
from bank.services import Actor, approvals, reversals
from bank.services import accounts as svc
from projections import runner
from projections.follower import Backoff
from projections.models import (
    AccountBalance,
    Checkpoint,
    DeadLetter,
    TransactionHistory,
    UnknownEvent,
)
from projections.rebuild import rebuild
from tests.projections.helpers import (
    balance_rows,
    expected_balances,
    history_rows,
    read_model_balances,
)
from tests.support import approval_rule

MAKER = Actor(username="maker", user_id=7, auth="token")
CHECKER = Actor(username="checker", user_id=8, auth="token")


@pytest.fixture
def rule(settings):
    return approval_rule(settings)


def _last_event(account_id):
    return svc.account_events(account_id)[-1]


def _reverse(account_id, event, reason="keyed twice"):
    return reversals.reverse_posting(
        account_id=account_id, event_id=event.event_id, reason=reason, actor=MAKER
    )


def _history(account_id):
    return list(TransactionHistory.objects.filter(account_id=account_id).order_by("version"))


def _store_with_reversals_and_approvals(rule):
    """Accounts with deposits, withdrawals and transfers reversed, and approval requests in
    every state (approved ones ran their commands, reversals among them)."""
    a = svc.open_account(holder_name="Ann", initial_balance_cents=5_000, actor=MAKER)
    b = svc.open_account(holder_name="Bob", initial_balance_cents=100, actor=MAKER)
    c = svc.open_account(holder_name="Cid", actor=MAKER)
    svc.deposit(account_id=a.id, amount_cents=300, description="cash", actor=MAKER)
    _reverse(a.id, _last_event(a.id))
    svc.withdraw(account_id=b.id, amount_cents=40, description="atm", actor=MAKER)
    _reverse(b.id, _last_event(b.id), reason="atm error")
    transfer = svc.transfer(from_account=a.id, to_account=b.id, amount_cents=700, actor=MAKER)
    _reverse(b.id, _last_event(b.id), reason="wrong payee")
    big = approvals.request(
        "transfer",
        command={"from_account": str(a.id), "to_account": str(c.id), "amount_cents": 2_000},
        actor=MAKER,
        reason="supplier",
    )
    approvals.approve(big.id, actor=CHECKER)
    svc.deposit(account_id=c.id, amount_cents=5_000, description="wire", actor=MAKER)
    wire = _last_event(c.id)
    undo = approvals.request(
        "reversal",
        command={"account_id": str(c.id), "event_id": str(wire.event_id), "reason": "dup"},
        actor=MAKER,
    )
    approvals.approve(undo.id, actor=CHECKER)
    refused = approvals.request(
        "withdraw",
        command={"account_id": str(a.id), "amount_cents": 1_500, "description": "car"},
        actor=MAKER,
    )
    approvals.reject(refused.id, actor=CHECKER, reason="no ID")
    approvals.request("freeze", command={"account_id": str(b.id), "reason": "fraud?"}, actor=MAKER)
    return a, b, c, transfer


@pytest.mark.django_db
def test_the_balances_follow_reversals_of_deposits_withdrawals_and_both_sides_of_transfers():
    a = svc.open_account(holder_name="Ann", initial_balance_cents=1_000, actor=MAKER)
    b = svc.open_account(holder_name="Bob", actor=MAKER)
    svc.deposit(account_id=a.id, amount_cents=300, actor=MAKER)
    _reverse(a.id, _last_event(a.id))
    svc.withdraw(account_id=a.id, amount_cents=200, actor=MAKER)
    _reverse(a.id, _last_event(a.id))
    svc.transfer(from_account=a.id, to_account=b.id, amount_cents=400, actor=MAKER)
    runner.catch_up()
    assert read_model_balances()[b.id][0] == 400
    _reverse(b.id, _last_event(b.id), reason="wrong payee")  # named on the receiving side
    runner.catch_up()
    assert read_model_balances() == expected_balances()
    assert AccountBalance.objects.get(pk=a.id).balance_cents == 1_000
    assert AccountBalance.objects.get(pk=b.id).balance_cents == 0
    assert AccountBalance.objects.get(pk=a.id).version == 7


@pytest.mark.django_db
def test_a_reversal_is_a_history_row_linked_both_ways_with_its_amount_balance_and_reason():
    a = svc.open_account(holder_name="Ann", initial_balance_cents=1_000, actor=MAKER)
    b = svc.open_account(holder_name="Bob", actor=MAKER)
    svc.deposit(account_id=a.id, amount_cents=300, description="cash", actor=MAKER)
    runner.catch_up()  # the original is stored before its reversal arrives
    _reverse(a.id, _last_event(a.id), reason="keyed twice")
    sent = svc.transfer(
        from_account=a.id, to_account=b.id, amount_cents=400, description="rent", actor=MAKER
    )
    received = _last_event(b.id)
    _reverse(b.id, received, reason="wrong payee")  # same batch as the transfer
    runner.catch_up()
    rows = [
        (h.version, h.kind, h.amount_cents, h.balance_after_cents, h.description)
        + (h.reverses_version, h.reversed_by_version)
        for h in _history(a.id)
    ]
    assert rows == [
        (1, "opening", 1_000, 1_000, "", None, None),
        (2, "deposit", 300, 1_300, "cash", None, 3),
        (3, "reversal", -300, 1_000, "keyed twice", 2, None),
        (4, "transfer_out", -400, 600, "rent", None, 5),
        (5, "reversal", 400, 1_000, "wrong payee", 4, None),
    ]
    back = _history(a.id)[-1]
    assert (back.transfer_id, back.counterparty) == (sent.transfer_id, b.id)
    assert back.actor == "maker"
    assert back.position == _last_event(a.id).position
    (into, out) = _history(b.id)
    assert (into.kind, into.version, into.reversed_by_version) == ("transfer_in", 2, 3)
    assert (out.kind, out.amount_cents, out.balance_after_cents) == ("reversal", -400, 0)
    assert (out.reverses_version, out.transfer_id, out.counterparty) == (2, sent.transfer_id, a.id)
    # The history's pairs: hiding them leaves the movements that stand.
    standing = TransactionHistory.objects.filter(
        account_id=a.id, reverses_version__isnull=True, reversed_by_version__isnull=True
    )
    assert [h.kind for h in standing] == ["opening"]


@pytest.mark.django_db
def test_a_redelivered_reversal_is_neither_inserted_nor_linked_twice():
    a = svc.open_account(holder_name="Ann", initial_balance_cents=10, actor=MAKER)
    svc.deposit(account_id=a.id, amount_cents=5, actor=MAKER)
    _reverse(a.id, _last_event(a.id))
    runner.catch_up()
    before = (balance_rows(), history_rows())
    events = es.read_all(after_position=0, limit=100)
    for projection in runner.get_projections():
        projection.handle(events)
        projection.handle(events[-1:])
    assert (balance_rows(), history_rows()) == before


@pytest.mark.django_db
def test_approval_streams_are_ignored_by_the_account_read_models(rule):
    a, b, c, _ = _store_with_reversals_and_approvals(rule)
    runner.catch_up()
    approval_ids = set(ApprovalRequest.objects.values_list("id", flat=True))
    assert len(approval_ids) == 4
    assert not AccountBalance.objects.filter(account_id__in=approval_ids).exists()
    assert not TransactionHistory.objects.filter(account_id__in=approval_ids).exists()
    assert not UnknownEvent.objects.exists()
    assert set(read_model_balances()) == {a.id, b.id, c.id}
    assert read_model_balances() == expected_balances()
    # The approved reversal is a history row like any other, its original marked.
    wire, undone = _history(c.id)[-2:]
    assert (wire.kind, wire.reversed_by_version) == ("deposit", undone.version)
    assert (undone.kind, undone.amount_cents, undone.description) == ("reversal", -5_000, "dup")


@pytest.mark.django_db(transaction=True)
def test_a_follower_neither_parks_nor_fails_on_approval_events_whatever_its_batches(rule):
    _store_with_reversals_and_approvals(rule)
    for batch_size in (1, 2, 3):
        runner.reset()
        follower = runner.follower(
            batch_size=batch_size,
            once=True,
            attempts=1,  # one failure would park at once
            backoff=Backoff(first=0.01, longest=0.05),
        )
        assert follower.run() > 0
        assert not DeadLetter.objects.exists()
        assert read_model_balances() == expected_balances()
    positions = dict(Checkpoint.objects.values_list("name", "position"))
    assert positions["balances"] == positions["transactions"] == es.head_position()


@pytest.mark.django_db
def test_rebuild_equals_live_following_with_reversals_and_approvals_in_the_store(rule):
    # Live: followed in small batches while the commands ran, so that originals and their
    # reversals land in the same batch and in different ones.
    a = svc.open_account(holder_name="Ann", initial_balance_cents=5_000, actor=MAKER)
    b = svc.open_account(holder_name="Bob", actor=MAKER)
    for i in range(1, 6):
        svc.deposit(account_id=a.id, amount_cents=100 * i, description=f"d{i}", actor=MAKER)
        runner.run_batch_group(runner.get_projections(), limit=i)
        svc.transfer(from_account=a.id, to_account=b.id, amount_cents=10 * i, actor=MAKER)
        if i % 2:
            _reverse(b.id, _last_event(b.id), reason=f"t{i}")
        deposit = [e for e in svc.account_events(a.id) if e.event_type == "MoneyDeposited"][-1]
        _reverse(a.id, deposit, reason=f"r{i}")
    _store_with_reversals_and_approvals(rule)
    runner.catch_up()
    live = (balance_rows(), history_rows())
    assert read_model_balances() == expected_balances()
    assert TransactionHistory.objects.filter(kind="reversal").count() >= 10
    rebuild(batch_size=1)  # aside, then swapped in
    assert (balance_rows(), history_rows()) == live
    rebuild(batch_size=7, in_place=True)
    assert (balance_rows(), history_rows()) == live
    runner.reset()
    runner.catch_up(limit=10_000)  # one batch holds it all
    assert (balance_rows(), history_rows()) == live
