"""Maker-checker and reversals through the services, on a real database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

import eventstore as es
from bank.domain import errors
from bank.models import ApprovalRequest
from bank.services import Actor, approvals, reversals
from bank.services import accounts as svc
from bank.services.errors import DuplicateRequest, PostingNotFound
from tests.support import Clock, approval_rule

pytestmark = pytest.mark.django_db

MAKER = Actor(username="maker", user_id=7, auth="token")
CHECKER = Actor(username="checker", user_id=8, auth="token")


@pytest.fixture
def rule(settings):
    return approval_rule(settings, threshold_cents=100_000, thresholds="JPY=10000")


def open_(balance=0, currency="EUR", name="Grace Hopper"):
    return svc.open_account(
        holder_name=name, currency=currency, initial_balance_cents=balance, actor=MAKER
    )


def test_the_rule_follows_the_settings(rule):
    eur, jpy = open_(currency="EUR"), open_(currency="JPY")
    assert approvals.needs_approval("freeze", eur.id)
    assert approvals.needs_approval("close", eur.id)
    assert not approvals.needs_approval("unfreeze", eur.id)
    assert approvals.needs_approval("withdraw", eur.id, amount_cents=100_000)
    assert not approvals.needs_approval("withdraw", eur.id, amount_cents=99_999)
    assert approvals.needs_approval("withdraw", jpy.id, amount_cents=10_000)
    assert not approvals.needs_approval("withdraw", jpy.id, amount_cents=9_999)
    assert not approvals.needs_approval("deposit", eur.id, amount_cents=10**9)


def test_a_request_runs_nothing_until_approved_then_runs_once_with_the_approval(rule):
    account = open_(500_000)
    row = approvals.request(
        "withdraw",
        command={"account_id": str(account.id), "amount_cents": 200_000, "description": "car"},
        actor=MAKER,
        reason="customer at the desk",
    )
    assert row.status == "pending"
    assert svc.get_account(account.id).balance_cents == 500_000
    with pytest.raises(errors.SelfApproval):
        approvals.approve(row.id, actor=MAKER)
    done = approvals.approve(row.id, actor=CHECKER, note="checked the ID")
    assert done.status == "approved" and done.decided_by == "checker"
    assert svc.get_account(account.id).balance_cents == 300_000
    withdrawn = svc.account_events(account.id)[-1]
    assert withdrawn.event_type == "MoneyWithdrawn"
    assert withdrawn.metadata["actor"]["username"] == "maker"
    assert withdrawn.metadata["approval"]["id"] == str(row.id)
    assert withdrawn.metadata["approval"]["approved_by"]["username"] == "checker"
    stream = es.read_stream(row.id)
    assert [e.event_type for e in stream] == ["ApprovalRequested", "ApprovalGranted"]
    assert withdrawn.metadata["causation_id"] == str(stream[0].event_id)
    assert stream[1].metadata["actor"]["username"] == "checker"
    # One append: the command's event and the decision are neighbours in the global order.
    assert abs(stream[1].position - withdrawn.position) == 1
    assert stream[1].commit_id == withdrawn.commit_id
    with pytest.raises(errors.ApprovalNotPending):
        approvals.approve(row.id, actor=Actor(username="other", user_id=9))
    assert svc.get_account(account.id).balance_cents == 300_000


def test_a_second_identical_request_is_refused_while_one_waits(rule):
    account = open_()
    command = {"account_id": str(account.id), "reason": "fraud suspected"}
    first = approvals.request("freeze", command=command, actor=MAKER)
    with pytest.raises(DuplicateRequest) as refused:
        approvals.request("freeze", command=command, actor=CHECKER)
    assert refused.value.pending_id == first.id
    approvals.reject(first.id, actor=CHECKER, reason="no evidence")
    again = approvals.request("freeze", command=command, actor=MAKER)
    assert again.status == "pending"


def test_a_request_that_breaks_a_rule_now_is_refused_at_once(rule):
    account = open_(1_000)
    with pytest.raises(errors.InsufficientFunds):
        approvals.request(
            "withdraw",
            command={"account_id": str(account.id), "amount_cents": 200_000},
            actor=MAKER,
        )
    assert not ApprovalRequest.objects.exists()


def test_requests_expire_and_cannot_be_approved_after(rule):
    clock = Clock()
    account = open_()
    row = approvals.request(
        "close",
        command={"account_id": str(account.id), "reason": "moved"},
        actor=MAKER,
        clock=clock,
    )
    clock.now += timedelta(hours=24)
    with pytest.raises(errors.ApprovalExpired):
        approvals.approve(row.id, actor=CHECKER, clock=clock)
    assert approvals.get(row.id, clock=clock).status == "expired"
    assert [e.event_type for e in es.read_stream(row.id)][-1] == "ApprovalExpired"
    assert svc.get_account(account.id).status == "active"


def test_an_approved_transfer_moves_both_sides_once(rule):
    a, b = open_(300_000), open_(0, name="Ada Lovelace")
    row = approvals.request(
        "transfer",
        command={"from_account": str(a.id), "to_account": str(b.id), "amount_cents": 150_000},
        actor=MAKER,
    )
    approvals.approve(row.id, actor=CHECKER)
    assert svc.get_account(a.id).balance_cents == 150_000
    assert svc.get_account(b.id).balance_cents == 150_000
    sent = svc.account_events(a.id)[-1]
    assert sent.data["transfer_id"] == row.command["transfer_id"]


def test_a_refused_command_leaves_the_request_pending(rule):
    account = open_(200_000)
    row = approvals.request(
        "withdraw",
        command={"account_id": str(account.id), "amount_cents": 200_000},
        actor=MAKER,
    )
    svc.withdraw(account_id=account.id, amount_cents=1, actor=MAKER)
    with pytest.raises(errors.InsufficientFunds):
        approvals.approve(row.id, actor=CHECKER)
    assert approvals.get(row.id).status == "pending"
    assert [e.event_type for e in es.read_stream(row.id)] == ["ApprovalRequested"]


# --- reversals ---------------------------------------------------------------------------


def test_a_deposit_is_reversed_once_and_the_reversal_is_not_reversible():
    account = open_(0)
    svc.deposit(account_id=account.id, amount_cents=700, actor=MAKER)
    deposited = svc.account_events(account.id)[-1]
    result = reversals.reverse_posting(
        account_id=account.id, event_id=deposited.event_id, reason="keyed twice", actor=MAKER
    )
    (after,) = result.accounts
    assert after.balance_cents == 0 and after.version == 3
    reversal = svc.account_events(account.id)[-1]
    assert reversal.event_type == "PostingReversed"
    assert reversal.data["reversed_version"] == 2
    assert reversal.data["reversed_event_id"] == str(deposited.event_id)
    assert reversal.data["balance_change_cents"] == -700
    with pytest.raises(errors.AlreadyReversed):
        reversals.reverse_posting(
            account_id=account.id, event_id=deposited.event_id, reason="again", actor=MAKER
        )
    with pytest.raises(errors.NotReversible):
        reversals.reverse_posting(
            account_id=account.id, event_id=reversal.event_id, reason="undo", actor=MAKER
        )
    opened = svc.account_events(account.id)[0]
    with pytest.raises(errors.NotReversible):
        reversals.reverse_posting(
            account_id=account.id, event_id=opened.event_id, reason="undo", actor=MAKER
        )


def test_reversing_a_deposit_already_spent_is_refused():
    account = open_(0)
    svc.deposit(account_id=account.id, amount_cents=700, actor=MAKER)
    deposited = svc.account_events(account.id)[-1]
    svc.withdraw(account_id=account.id, amount_cents=500, actor=MAKER)
    with pytest.raises(errors.InsufficientFunds):
        reversals.reverse_posting(
            account_id=account.id, event_id=deposited.event_id, reason="x", actor=MAKER
        )
    assert svc.get_account(account.id).version == 3


def test_a_reversed_transfer_restores_both_balances_whichever_side_is_named():
    a, b = open_(1_000), open_(0, name="Ada Lovelace")
    for named in ("sender", "receiver"):
        svc.transfer(from_account=a.id, to_account=b.id, amount_cents=400, actor=MAKER)
        side = a.id if named == "sender" else b.id
        posting = svc.account_events(side)[-1]
        result = reversals.reverse_posting(
            account_id=side, event_id=posting.event_id, reason="wrong payee", actor=MAKER
        )
        assert [s.id for s in result.accounts] == [side, b.id if side == a.id else a.id]
        assert svc.get_account(a.id).balance_cents == 1_000
        assert svc.get_account(b.id).balance_cents == 0
        ra, rb = svc.account_events(a.id)[-1], svc.account_events(b.id)[-1]
        assert ra.event_type == rb.event_type == "PostingReversed"
        assert ra.data["transfer_id"] == rb.data["transfer_id"] == posting.data["transfer_id"]
        assert ra.position + 1 == rb.position or rb.position + 1 == ra.position
        other = svc.account_events(b.id if side == a.id else a.id)[-2]
        with pytest.raises(errors.AlreadyReversed):
            reversals.reverse_posting(
                account_id=other.stream_id, event_id=other.event_id, reason="x", actor=MAKER
            )


def test_a_posting_of_another_account_is_not_found():
    a, b = open_(0), open_(0)
    svc.deposit(account_id=a.id, amount_cents=5, actor=MAKER)
    event = svc.account_events(a.id)[-1]
    with pytest.raises(PostingNotFound):
        reversals.reverse_posting(
            account_id=b.id, event_id=event.event_id, reason="x", actor=MAKER
        )
    with pytest.raises(PostingNotFound):
        reversals.reverse_posting(account_id=a.id, event_id=uuid.uuid4(), reason="x", actor=MAKER)


def test_a_reversal_above_the_threshold_waits_for_approval(rule):
    account = open_(0)
    svc.deposit(account_id=account.id, amount_cents=250_000, actor=MAKER)
    event = svc.account_events(account.id)[-1]
    assert approvals.needs_approval("reversal", account.id, amount_cents=250_000)
    row = approvals.request(
        "reversal",
        command={"account_id": str(account.id), "event_id": str(event.event_id), "reason": "dup"},
        actor=MAKER,
    )
    assert row.amount_cents == 250_000
    approvals.approve(row.id, actor=CHECKER)
    assert svc.get_account(account.id).balance_cents == 0


def test_reversals_survive_snapshots(settings):
    settings.SNAPSHOT_INTERVAL = 3
    account = open_(0)
    svc.deposit(account_id=account.id, amount_cents=10, actor=MAKER)
    first = svc.account_events(account.id)[-1]
    reversals.reverse_posting(
        account_id=account.id, event_id=first.event_id, reason="x", actor=MAKER
    )
    for _ in range(4):
        svc.deposit(account_id=account.id, amount_cents=1, actor=MAKER)
    with pytest.raises(errors.AlreadyReversed):
        reversals.reverse_posting(
            account_id=account.id, event_id=first.event_id, reason="x", actor=MAKER
        )
    # The chain and the snapshots (their state includes the reversed versions) verify.
    assert es.verify_stream(account.id) is None
