"""Projections: live = rebuild = replay, idempotent redelivery, poison events, status."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstore as es
from bank.domain import DomainError
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from projections.accounts import BalanceProjection
from projections.base import ProjectionError
from projections.models import AccountBalance, Checkpoint, TransactionHistory
from tests.projections.helpers import (
    balance_rows,
    expected_balances,
    history_rows,
    read_model_balances,
)

pytestmark = pytest.mark.django_db

ACTOR = Actor(username="teller", user_id=1, auth="session")


def test_balances_and_history_follow_commands():
    a = svc.open_account(holder_name="Ann", initial_balance_cents=1000, actor=ACTOR)
    b = svc.open_account(holder_name="Bob", actor=ACTOR)
    svc.deposit(account_id=a.id, amount_cents=500, description="pay", actor=ACTOR)
    result = svc.transfer(
        from_account=a.id, to_account=b.id, amount_cents=300, description="rent", actor=ACTOR
    )
    svc.freeze(account_id=b.id, reason="check", actor=ACTOR)
    runner.catch_up()
    row_a, row_b = AccountBalance.objects.get(pk=a.id), AccountBalance.objects.get(pk=b.id)
    assert (row_a.balance_cents, row_a.status, row_a.version) == (1200, "active", 3)
    assert (row_b.balance_cents, row_b.status, row_b.version) == (300, "frozen", 3)
    history = list(TransactionHistory.objects.filter(account_id=a.id).order_by("version"))
    assert [(h.kind, h.amount_cents, h.balance_after_cents) for h in history] == [
        ("opening", 1000, 1000),
        ("deposit", 500, 1500),
        ("transfer_out", -300, 1200),
    ]
    assert history[2].counterparty == b.id and history[2].transfer_id == result.transfer_id
    assert history[1].actor == "teller" and history[1].description == "pay"
    incoming = TransactionHistory.objects.get(account_id=b.id)
    assert (incoming.kind, incoming.counterparty, incoming.balance_after_cents) == (
        "transfer_in",
        a.id,
        300,
    )


def test_a_redelivered_batch_is_not_applied_twice():
    a = svc.open_account(holder_name="Ann", initial_balance_cents=10, actor=ACTOR)
    svc.deposit(account_id=a.id, amount_cents=5, actor=ACTOR)
    runner.catch_up()
    before = (balance_rows(), history_rows())
    events = es.read_all(after_position=0, limit=100)
    for projection in runner.get_projections():
        projection.handle(events)
        projection.handle(events[1:])
    assert (balance_rows(), history_rows()) == before


def test_a_poison_event_rolls_the_batch_back_and_names_projection_and_position(monkeypatch):
    a = svc.open_account(holder_name="Ann", actor=ACTOR)
    sibling = svc.open_account(holder_name="Sib", actor=ACTOR)
    poison = es.read_stream(a.id)[0].position
    real = BalanceProjection.handle

    def handle(self, events):
        real(self, events)
        if any(e.position == poison for e in events):
            raise ValueError("cannot apply")

    monkeypatch.setattr(BalanceProjection, "handle", handle)
    with pytest.raises(ProjectionError) as caught:
        runner.catch_up(["balances"])
    assert "balances" in str(caught.value) and str(poison) in str(caught.value)
    assert AccountBalance.objects.count() == 0  # the sibling's row rolled back too
    assert Checkpoint.objects.get(name="balances").position == 0
    monkeypatch.undo()
    runner.catch_up(["balances"])
    assert set(AccountBalance.objects.values_list("account_id", flat=True)) == {a.id, sibling.id}


def test_a_missing_event_is_an_error_not_a_silent_skip():
    a = svc.open_account(holder_name="Ann", actor=ACTOR)
    svc.deposit(account_id=a.id, amount_cents=5, actor=ACTOR)
    svc.deposit(account_id=a.id, amount_cents=5, actor=ACTOR)
    opened, _, second_deposit = es.read_stream(a.id)
    with pytest.raises(ProjectionError, match="an event is missing"):
        BalanceProjection().handle([opened, second_deposit])


def test_a_batch_never_splits_a_transfer(monkeypatch):
    a = svc.open_account(holder_name="Ann", initial_balance_cents=100, actor=ACTOR)
    b = svc.open_account(holder_name="Bob", actor=ACTOR)
    for _ in range(3):
        svc.transfer(from_account=a.id, to_account=b.id, amount_cents=10, actor=ACTOR)
    seen = []
    real = BalanceProjection.handle
    monkeypatch.setattr(
        BalanceProjection,
        "handle",
        lambda self, events: (seen.append([e.event_type for e in events]), real(self, events)),
    )
    while runner.run_batch(runner.PROJECTIONS["balances"], limit=1):
        pass
    for batch in seen:
        assert batch.count("TransferSent") == batch.count("TransferReceived")
    assert read_model_balances()[a.id][0] + read_model_balances()[b.id][0] == 100


commands = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "withdraw", "transfer", "freeze", "unfreeze", "open"]),
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=1, max_value=400),
        st.booleans(),
    ),
    max_size=30,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=commands)
def test_live_rebuild_and_replay_give_identical_read_models(history):
    runner.reset()
    ids = [
        svc.open_account(holder_name=f"H{i}", initial_balance_cents=200, actor=ACTOR).id
        for i in range(2)
    ]
    for name, who, amount, follow in history:
        account = ids[who % len(ids)]
        try:
            if name == "open":
                ids.append(
                    svc.open_account(
                        holder_name=f"H{len(ids)}", initial_balance_cents=amount, actor=ACTOR
                    ).id
                )
            elif name == "transfer":
                svc.transfer(
                    from_account=account,
                    to_account=ids[(who + 1) % len(ids)],
                    amount_cents=amount,
                    actor=ACTOR,
                )
            elif name in ("deposit", "withdraw"):
                getattr(svc, name)(account_id=account, amount_cents=amount, actor=ACTOR)
            else:
                getattr(svc, name)(account_id=account, reason="r", actor=ACTOR)
        except DomainError:
            pass
        if follow:
            runner.catch_up(limit=3)
    runner.catch_up(limit=3)
    live = (balance_rows(), history_rows())
    call_command("rebuild_projections", verbosity=0)
    assert (balance_rows(), history_rows()) == live
    assert read_model_balances() == expected_balances()
    for account in ids:
        movements = list(TransactionHistory.objects.filter(account_id=account).order_by("version"))
        if movements:
            assert movements[-1].balance_after_cents == svc.get_account(account).balance_cents


def test_rebuild_reports_progress_and_a_summary(capsys):
    svc.open_account(holder_name="Ann", initial_balance_cents=5, actor=ACTOR)
    call_command("rebuild_projections", "balances", verbosity=1)
    captured = capsys.readouterr()
    assert "rebuilt balances: 1 events applied" in captured.out
    with pytest.raises(CommandError, match="no projection named nope"):
        call_command("rebuild_projections", "nope", verbosity=0)


def test_projection_status_reports_lag_and_fails_past_the_threshold(capsys):
    call_command("projection_status", max_lag_events=0, verbosity=0)  # empty store: healthy
    a = svc.open_account(holder_name="Ann", actor=ACTOR)
    for _ in range(3):
        svc.deposit(account_id=a.id, amount_cents=1, actor=ACTOR)
    call_command("projection_status", max_lag_events=4)
    assert "balances" in capsys.readouterr().out
    with pytest.raises(CommandError, match="balances is 4 events behind"):
        call_command("projection_status", max_lag_events=3)
    with pytest.raises(CommandError, match="s behind"):
        call_command("projection_status", max_lag_seconds=-1)
    runner.catch_up()
    call_command("projection_status", max_lag_events=0, max_lag_seconds=0)
    (row,) = runner.status(["balances"])
    assert (row.lag_events, row.lag_seconds, row.checkpoint) == (0, 0.0, es.head_position())
