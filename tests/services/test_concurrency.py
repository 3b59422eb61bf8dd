"""Concurrent commands through the services, with real commits on PostgreSQL."""

from __future__ import annotations

import random

import pytest

import eventstore as es
from bank.domain import errors
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.errors import ConcurrencyConflict
from tests.support import run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

ACTOR = Actor.system("tests")


def test_eight_withdrawals_racing_never_take_the_balance_below_zero():
    account = svc.open_account(holder_name="Race", initial_balance_cents=500, actor=ACTOR)

    def withdraw(i, barrier):
        barrier.wait()
        try:
            return svc.withdraw(account_id=account.id, amount_cents=100, actor=ACTOR).balance_cents
        except (errors.InsufficientFunds, ConcurrencyConflict) as exc:
            return exc

    results = run_threads(8, withdraw)
    succeeded = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, errors.InsufficientFunds)]
    assert not [
        r
        for r in results
        if isinstance(r, BaseException)
        and not isinstance(r, errors.DomainError | ConcurrencyConflict)
    ], results
    final = svc.get_account(account.id).balance_cents
    assert final >= 0
    assert 100 * len(succeeded) + final == 500
    assert len(succeeded) == 5 and len(refused) == 3
    balances = [
        svc.account_at(account.id, version=v).balance_cents
        for v in range(1, es.stream_version(account.id) + 1)
    ]
    assert min(balances) >= 0


def test_opposite_transfers_between_two_accounts_finish_without_deadlock_and_conserve_money():
    a = svc.open_account(holder_name="A", initial_balance_cents=10_000, actor=ACTOR)
    b = svc.open_account(holder_name="B", initial_balance_cents=10_000, actor=ACTOR)
    successes = []

    def worker(i, barrier):
        rng = random.Random(i)
        source, target = (a.id, b.id) if i % 2 == 0 else (b.id, a.id)
        barrier.wait()
        done = 0
        for _ in range(25):
            try:
                svc.transfer(
                    from_account=source,
                    to_account=target,
                    amount_cents=rng.randint(1, 500),
                    actor=ACTOR,
                )
                done += 1
            except (errors.InsufficientFunds, ConcurrencyConflict):
                pass
        return done

    results = run_threads(8, worker)
    assert all(isinstance(r, int) for r in results), results
    successes = sum(results)
    total = svc.get_account(a.id).balance_cents + svc.get_account(b.id).balance_cents
    assert total == 20_000
    sent = [e for s in (a.id, b.id) for e in es.read_stream(s) if e.event_type == "TransferSent"]
    received = [
        e for s in (a.id, b.id) for e in es.read_stream(s) if e.event_type == "TransferReceived"
    ]
    assert len(sent) == len(received) == successes
    assert {e.data["transfer_id"] for e in sent} == {e.data["transfer_id"] for e in received}
