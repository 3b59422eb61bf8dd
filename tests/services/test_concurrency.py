"""Concurrent commands through the services, with real commits on PostgreSQL."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from django.db import connections

import eventstore as es
from bank.domain import errors
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.errors import ConcurrencyConflict
from tests.support import new_event, run_threads

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


def _race_after_load(monkeypatch, account_id, write, times=1):
    """After the command has loaded the account, run ``write(stream_id, loaded)`` in
    another thread, on its own connection, and wait for it (up to ``times`` loads)."""
    from bank.services import repository

    real_load = repository.load
    calls = []

    def load_then_race(account_ids, **kwargs):
        loaded = real_load(account_ids, **kwargs)
        if account_id in account_ids and len(calls) < times:
            calls.append(account_id)

            def other_writer():
                try:
                    write(account_id, loaded)
                finally:
                    connections.close_all()

            writer = threading.Thread(target=other_writer)
            writer.start()
            writer.join(30)
        return loaded

    monkeypatch.setattr(repository, "load", load_then_race)
    return calls


def _bypassing_writer(monkeypatch, account_id, times=1):
    """After the command's first attempt has loaded the account (without a lock: the
    optimistic attempt), another writer appends to its stream from its own connection;
    the command's autocommitted append is then refused by the database and the command
    retried, on the locked path."""
    from bank.domain.events import MoneyDeposited

    event = MoneyDeposited(amount_cents=1, description="bypass")

    def append(stream_id, loaded):  # committed before the command appends
        es.append(
            stream_id,
            [new_event(event.event_type, **event.to_data())],
            stream_type=svc.STREAM_TYPE,
            expected_version=loaded[0].version,
        )

    return _race_after_load(monkeypatch, account_id, append, times)


def test_a_command_refused_by_the_database_is_retried_from_a_fresh_load(monkeypatch):
    account = svc.open_account(holder_name="Bypassed", actor=ACTOR)
    calls = _bypassing_writer(monkeypatch, account.id)
    state = svc.deposit(account_id=account.id, amount_cents=10, actor=ACTOR)
    assert calls == [account.id]
    assert (state.version, state.balance_cents) == (3, 11)
    assert [e.version for e in es.read_stream(account.id)] == [1, 2, 3]
    assert es.verify_all().ok


def test_a_pinned_version_refused_by_the_database_reports_the_actual_version(monkeypatch):
    from bank.services.errors import VersionMismatch

    account = svc.open_account(holder_name="Pinned", actor=ACTOR)
    _bypassing_writer(monkeypatch, account.id)
    with pytest.raises(VersionMismatch) as refused:
        svc.deposit(account_id=account.id, amount_cents=10, expected_version=1, actor=ACTOR)
    assert (refused.value.expected, refused.value.actual) == (1, 2)
    # The database refused the first attempt's append (one statement in autocommit, which
    # rolled back alone), and the store read the actual version after it.
    assert refused.value.__cause__.actual == 2
    assert es.stream_version(account.id) == 2  # the bypassing append only


def test_a_command_holding_its_streams_lock_is_never_overtaken(monkeypatch):
    """Inside a transaction a command loads under its stream's lock; an append made
    outside any transaction takes the streams' locks first, so it waits (here past its
    lock_timeout) instead of slipping in between the command's load and its append."""
    from django.db import connection, transaction

    account = svc.open_account(holder_name="Locked", actor=ACTOR)
    outcome = {}

    def race(stream_id, loaded):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '300ms'")
            es.append(
                stream_id,
                [new_event("MoneyDeposited", amount_cents=1, description="racer")],
                stream_type=svc.STREAM_TYPE,
                expected_version=loaded[0].version,
            )
            outcome["racer"] = "appended"
        except es.StoreUnavailableError as exc:
            outcome["racer"] = exc

    _race_after_load(monkeypatch, account.id, race)
    with transaction.atomic():
        state = svc.deposit(
            account_id=account.id, amount_cents=10, expected_version=1, actor=ACTOR
        )
    assert isinstance(outcome["racer"], es.StoreUnavailableError), outcome
    assert "lock" in str(outcome["racer"])
    assert state.version == 2
    assert [e.data.get("description") for e in es.read_stream(account.id)][1:] == [""]


def test_an_append_without_savepoint_reports_an_unknown_version_and_needs_a_rollback():
    from django.db import transaction

    stream_id = uuid.uuid4()
    es.append(stream_id, [new_event("A")], stream_type="t", expected_version=0)
    stale = es.StreamAppend(
        stream_id=stream_id,
        stream_type="t",
        expected_version=es.StreamHead(0, ""),  # the empty stream's head: stale by now
        events=[new_event("B")],
    )
    with pytest.raises(es.ConcurrencyError) as refused:
        with transaction.atomic():
            es.append_streams([stale], savepoint=False)
    assert refused.value.actual is None and "roll back" in str(refused.value)
    with transaction.atomic():  # with the savepoint, the same refusal is resolved in full
        with pytest.raises(es.ConcurrencyError) as resolved:
            es.append_streams([stale])
        assert resolved.value.actual == 1
        assert es.stream_version(stream_id) == 1  # and the transaction goes on
