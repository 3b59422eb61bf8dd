"""Every business rule of the Account aggregate, with its stable error code (no database)."""

from __future__ import annotations

import uuid

import pytest

from bank.domain import MAX_CENTS, Account, errors
from bank.domain.events import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferReceived,
    TransferSent,
)


def opened(balance=0, currency="EUR", name="Ada Lovelace"):
    account = Account.open(
        uuid.uuid4(), holder_name=name, currency=currency, initial_balance_cents=balance
    )
    account.collect_events()
    return account


def refused(account, code, call):
    version, pending = account.version, account.pending_events
    with pytest.raises(errors.DomainError) as caught:
        call()
    assert caught.value.code == code
    assert account.version == version and account.pending_events == pending
    return caught.value


def test_opening_records_account_opened_with_the_cleaned_holder_name():
    account = Account.open(
        uuid.uuid4(), holder_name="  Zoe\u0308 ", currency="CHF", initial_balance_cents=500
    )
    (event,) = account.collect_events()
    assert event == AccountOpened(holder_name="Zoë", currency="CHF", initial_balance_cents=500)
    assert (account.balance_cents, account.status, account.version) == (500, "active", 1)


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"holder_name": ""}, errors.INVALID_INPUT),
        ({"holder_name": "a\x00b"}, errors.INVALID_INPUT),
        ({"holder_name": "lone \ud800"}, errors.INVALID_INPUT),
        ({"holder_name": "x" * 201}, errors.INVALID_INPUT),
        ({"currency": "eur"}, errors.INVALID_INPUT),
        ({"currency": "XXX"}, errors.INVALID_INPUT),
        ({"initial_balance_cents": -1}, errors.INVALID_AMOUNT),
        ({"initial_balance_cents": MAX_CENTS + 1}, errors.INVALID_AMOUNT),
        ({"initial_balance_cents": 1.5}, errors.INVALID_AMOUNT),
        ({"initial_balance_cents": True}, errors.INVALID_AMOUNT),
    ],
)
def test_opening_refuses_malformed_fields(kwargs, code):
    args = {"holder_name": "Ann", "currency": "EUR", "initial_balance_cents": 0, **kwargs}
    with pytest.raises(errors.DomainError) as caught:
        Account.open(uuid.uuid4(), **args)
    assert caught.value.code == code


@pytest.mark.parametrize("amount", [0, -5, MAX_CENTS + 1, 2.5, "10", None, True])
def test_amounts_must_be_whole_positive_cents_within_the_bound(amount):
    account = opened(100)
    refused(account, errors.INVALID_AMOUNT, lambda: account.deposit(amount))
    refused(account, errors.INVALID_AMOUNT, lambda: account.withdraw(amount))


def test_a_deposit_that_would_pass_the_balance_bound_is_refused():
    account = opened(MAX_CENTS - 10)
    account.deposit(10)
    error = refused(account, errors.INVALID_AMOUNT, lambda: account.deposit(1))
    assert str(MAX_CENTS) in error.message
    assert account.balance_cents == MAX_CENTS


def test_withdrawal_beyond_balance_is_refused_with_available_and_requested():
    account = opened(120)
    error = refused(account, errors.INSUFFICIENT_FUNDS, lambda: account.withdraw(500))
    assert (error.available, error.requested) == (120, 500)
    assert error.message == errors.INSUFFICIENT_FUNDS_MESSAGE.format(
        operation="withdrawal", available=120, requested=500
    )
    account.withdraw(120)
    assert account.balance_cents == 0
    assert account.collect_events() == [MoneyWithdrawn(amount_cents=120, description="")]


def test_no_movement_on_a_frozen_or_closed_account():
    frozen = opened(100)
    frozen.freeze("fraud check")
    for call in (lambda: frozen.deposit(1), lambda: frozen.withdraw(1)):
        refused(frozen, errors.ACCOUNT_NOT_ACTIVE, call)
    closed = opened(0)
    closed.close("customer left")
    refused(closed, errors.ACCOUNT_NOT_ACTIVE, lambda: closed.deposit(1))


def test_state_transitions_that_make_no_sense_are_refused():
    account = opened()
    refused(account, errors.INVALID_STATE_TRANSITION, lambda: account.unfreeze("why"))
    account.freeze("check")
    refused(account, errors.INVALID_STATE_TRANSITION, lambda: account.freeze("again"))
    account.unfreeze("cleared")
    account.close("done")
    for call in (
        lambda: account.freeze("x"),
        lambda: account.unfreeze("x"),
        lambda: account.close("x"),
    ):
        refused(account, errors.INVALID_STATE_TRANSITION, call)
    assert [type(e) for e in account.collect_events()][-1] is AccountClosed


def test_a_frozen_account_with_zero_balance_can_be_closed():
    account = opened()
    account.freeze("check")
    account.close("closing while frozen")
    assert account.status == "closed"


def test_closing_with_money_in_the_account_is_refused():
    account = opened(1)
    error = refused(account, errors.BALANCE_NOT_ZERO, lambda: account.close("bye"))
    assert error.details == {"balance_cents": 1}


def test_reasons_are_required_for_status_changes():
    account = opened()
    refused(account, errors.INVALID_INPUT, lambda: account.freeze("   "))
    refused(account, errors.INVALID_INPUT, lambda: account.close(""))


def test_transfer_records_both_sides_linked_by_the_transfer_id():
    a, b = opened(100), opened(5)
    tid = uuid.uuid4()
    a.send_transfer(transfer_id=tid, to=b, amount_cents=40, description="rent")
    assert a.collect_events() == [
        TransferSent(transfer_id=tid, to_account=b.id, amount_cents=40, description="rent")
    ]
    assert b.collect_events() == [
        TransferReceived(transfer_id=tid, from_account=a.id, amount_cents=40, description="rent")
    ]
    assert (a.balance_cents, b.balance_cents) == (60, 45)


def test_transfers_refused_on_either_side_record_nothing_on_both():
    a, b = opened(100), opened(0)
    b.freeze("hold")
    b.collect_events()
    for target, code, amount in [
        (a, errors.INVALID_TRANSFER, 1),
        (opened(0, "USD"), errors.INVALID_TRANSFER, 1),
        (b, errors.ACCOUNT_NOT_ACTIVE, 1),
        (opened(MAX_CENTS), errors.INVALID_AMOUNT, 1),
        (opened(0), errors.INSUFFICIENT_FUNDS, 101),
        (opened(0), errors.INVALID_AMOUNT, 0),
    ]:
        before = (target.version, target.balance_cents)
        refused(
            a,
            code,
            lambda t=target, n=amount: a.send_transfer(
                transfer_id=uuid.uuid4(), to=t, amount_cents=n
            ),
        )
        assert (target.version, target.balance_cents) == before
        assert target.pending_events == []


def test_replay_applies_one_transition_per_event():
    account_id = uuid.uuid4()
    events = [
        AccountOpened(holder_name="A", currency="EUR", initial_balance_cents=10),
        MoneyDeposited(amount_cents=5, description=""),
        AccountFrozen(reason="r"),
    ]
    account = Account.from_events(account_id, events)
    assert (account.balance_cents, account.status, account.version) == (15, "frozen", 3)


def test_events_have_a_stable_json_form():
    tid, other = uuid.uuid4(), uuid.uuid4()
    event = TransferSent(transfer_id=tid, to_account=other, amount_cents=7, description="x")
    data = event.to_data()
    assert data == {
        "transfer_id": str(tid),
        "to_account": str(other),
        "amount_cents": 7,
        "description": "x",
    }
    assert TransferSent.from_data(data) == event
    assert TransferSent.event_type == "TransferSent" and TransferSent.schema_version == 1
