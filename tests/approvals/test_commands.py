"""The maker-checker's operations commands: expire_approvals (cron) and rebuild_approvals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

import eventstore as es
from bank.models import ApprovalRequest
from bank.services import Actor, approvals
from bank.services import accounts as svc
from bank.services.errors import DuplicateRequest
from tests.support import Clock, approval_rule

pytestmark = pytest.mark.django_db

MAKER = Actor(username="maker", user_id=7, auth="token")
CHECKER = Actor(username="checker", user_id=8, auth="token")
COLUMNS = [f.name for f in ApprovalRequest._meta.fields]


@pytest.fixture
def rule(settings):
    return approval_rule(settings)


def _open(balance=0, name="Grace Hopper"):
    return svc.open_account(holder_name=name, initial_balance_cents=balance, actor=MAKER)


def _rows():
    return {row["id"]: row for row in ApprovalRequest.objects.values(*COLUMNS)}


def _events(approval_id):
    return [e.event_type for e in es.read_stream(approval_id)]


# --- expire_approvals --------------------------------------------------------------------


def _requests_due_and_not(rule):
    """Two requests past their time to live by the real clock, and one that is not."""
    account = _open(50_000)
    long_ago = Clock(datetime.now(UTC) - timedelta(hours=100))
    due = [
        approvals.request(
            "withdraw",
            command={"account_id": str(account.id), "amount_cents": amount},
            actor=MAKER,
            clock=long_ago,
        )
        for amount in (2_000, 3_000)
    ]
    fresh = approvals.request(
        "freeze", command={"account_id": str(account.id), "reason": "check"}, actor=MAKER
    )
    return due, fresh


def test_expire_approvals_expires_the_due_requests_and_says_how_many(rule, capsys):
    due, fresh = _requests_due_and_not(rule)
    call_command("expire_approvals", "--dry-run")
    assert "2 approval request(s) due to expire; none expired" in capsys.readouterr().out
    assert {r.status for r in ApprovalRequest.objects.all()} == {"pending"}
    call_command("expire_approvals", "--batch-size", "1")
    assert "expired 2 approval request(s) due at" in capsys.readouterr().out
    for row in due:
        row.refresh_from_db()
        assert (row.status, row.decided_by, row.version) == ("expired", "system", 2)
        assert _events(row.id) == ["ApprovalRequested", "ApprovalExpired"]
    fresh.refresh_from_db()
    assert fresh.status == "pending" and _events(fresh.id) == ["ApprovalRequested"]
    call_command("expire_approvals")
    assert "expired 0 approval request(s)" in capsys.readouterr().out
    assert _events(due[0].id) == ["ApprovalRequested", "ApprovalExpired"]  # once


def test_expire_approvals_is_quiet_at_verbosity_0(rule, capsys):
    _requests_due_and_not(rule)
    call_command("expire_approvals", verbosity=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert ApprovalRequest.objects.filter(status="expired").count() == 2


def test_expire_approvals_names_a_queue_that_disagrees_with_the_streams(rule):
    (first, _), _ = _requests_due_and_not(rule)
    # A queue row with no stream behind it (a restore of the tables out of step, say).
    ghost = ApprovalRequest.objects.get(pk=first.id)
    ghost.pk, ghost.fingerprint = uuid.uuid4(), "0" * 64
    ghost.save(force_insert=True)
    with pytest.raises(CommandError, match=r"does not exist.*run `manage.py rebuild_approvals`"):
        call_command("expire_approvals")


def test_expire_approvals_says_what_to_do_when_the_database_fails(rule, monkeypatch):
    from django.db import OperationalError

    _requests_due_and_not(rule)

    def unavailable(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(approvals, "expire_due", unavailable)
    with pytest.raises(
        CommandError,
        match=r"database failed while expiring .*connection refused.*run expire_approvals again",
    ):
        call_command("expire_approvals")


def test_expire_approvals_refuses_a_batch_size_below_one():
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("expire_approvals", "--batch-size", "0")


# --- rebuild_approvals -------------------------------------------------------------------


def _queue_in_every_state(rule):
    """Requests of every kind, in every state, on a test clock (so that each row's times
    are the events' ``occurred_at`` to the microsecond)."""
    clock = Clock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    a, b = _open(500_000), _open(1_000, name="Ada Lovelace")
    svc.transfer(from_account=a.id, to_account=b.id, amount_cents=5_000, actor=MAKER)
    received = svc.account_events(b.id)[-1]

    def ask(kind, command, reason=""):
        clock.now += timedelta(minutes=1)
        return approvals.request(kind, command=command, actor=MAKER, reason=reason, clock=clock)

    def decide(row, how, **kwargs):
        clock.now += timedelta(minutes=1)
        return how(row.id, actor=CHECKER, clock=clock, **kwargs)

    transfer = ask(
        "transfer",
        {"from_account": str(a.id), "to_account": str(b.id), "amount_cents": 20_000},
        "supplier",
    )
    decide(transfer, approvals.approve, note="invoice seen")
    reversal = ask(
        "reversal",
        {"account_id": str(b.id), "event_id": str(received.event_id), "reason": "wrong payee"},
    )
    decide(reversal, approvals.approve)
    withdraw = ask("withdraw", {"account_id": str(a.id), "amount_cents": 9_000})
    decide(withdraw, approvals.reject, reason="no ID")
    empty = _open(0, name="Alan Turing")
    ask("close", {"account_id": str(empty.id), "reason": "moved"})
    pending = ask("freeze", {"account_id": str(a.id), "reason": "fraud?"})
    return clock, pending


def test_rebuild_approvals_restores_every_column_of_a_lost_queue(rule, capsys):
    clock, _ = _queue_in_every_state(rule)
    clock.now += timedelta(hours=25)
    assert approvals.expire_due(clock=clock) == 2  # the close and the freeze
    live = _rows()
    assert {r["status"] for r in live.values()} == {"approved", "rejected", "expired"}
    assert {r["kind"] for r in live.values()} == {
        "transfer",
        "reversal",
        "withdraw",
        "close",
        "freeze",
    }
    ApprovalRequest.objects.all().delete()
    call_command("rebuild_approvals")
    out = capsys.readouterr().out
    assert "rebuilt the approval queue from 5 stream(s): 5 missing, 0 different" in out
    assert _rows() == live  # every column, the times included
    call_command("rebuild_approvals", "--check")
    assert "the approval queue matches its 5 stream(s)" in capsys.readouterr().out


def test_a_rebuilt_queue_still_refuses_a_second_identical_pending_request(rule):
    clock, pending = _queue_in_every_state(rule)
    live = _rows()
    ApprovalRequest.objects.all().delete()
    call_command("rebuild_approvals", verbosity=0)
    assert _rows() == live  # nothing expired: every column, times included
    with pytest.raises(DuplicateRequest) as refused:
        approvals.request("freeze", command=pending.command, actor=CHECKER, clock=clock)
    assert refused.value.pending_id == pending.id


def test_rebuild_approvals_check_names_what_differs_and_the_rebuild_puts_it_right(rule):
    _, pending = _queue_in_every_state(rule)
    live = _rows()
    ApprovalRequest.objects.filter(pk=pending.id).update(status="rejected", amount_cents=1)
    ghost = ApprovalRequest.objects.get(pk=pending.id)
    ghost.pk, ghost.fingerprint = uuid.uuid4(), "0" * 64
    ghost.save(force_insert=True)
    with pytest.raises(CommandError) as differs:
        call_command("rebuild_approvals", "--check")
    text = str(differs.value)
    assert "0 missing, 1 different, 1 without a stream" in text
    assert str(pending.id) in text and str(ghost.pk) in text
    assert "run rebuild_approvals without --check" in text
    call_command("rebuild_approvals", verbosity=0)
    assert _rows() == live


def test_an_expiry_occurs_at_the_time_of_the_clock_that_expired_it(rule):
    clock = Clock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    account = _open()
    row = approvals.request(
        "freeze", command={"account_id": str(account.id), "reason": "x"}, actor=MAKER, clock=clock
    )
    clock.now += timedelta(hours=25)
    approvals.expire_due(clock=clock)
    row.refresh_from_db()
    expired = es.read_stream(row.id)[-1]
    assert expired.event_type == "ApprovalExpired"
    assert expired.occurred_at == row.decided_at == clock.now


def test_a_rebuild_swapping_which_of_two_identical_requests_is_pending_keeps_the_index(rule):
    clock = Clock(datetime.now(UTC))  # one time per call: the rows' times are the events'
    account = _open()
    command = {"account_id": str(account.id), "reason": "fraud?"}
    first = approvals.request("freeze", command=command, actor=MAKER, clock=clock)
    approvals.reject(first.id, actor=CHECKER, reason="no evidence", clock=clock)
    second = approvals.request("freeze", command=command, actor=MAKER, clock=clock)
    live = _rows()
    # The queue has them the wrong way round (the partial unique index allows that order).
    ApprovalRequest.objects.filter(pk=second.id).update(status="rejected")
    ApprovalRequest.objects.filter(pk=first.id).update(status="pending")
    call_command("rebuild_approvals", verbosity=0)
    assert _rows() == live
