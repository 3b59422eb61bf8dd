"""Dead letters: an event a projection keeps failing on is parked, and nothing after it waits.

The failing projection is a test's own, registered through the runner's API: it is the
balances projection under another name, refusing one chosen event until it is "fixed".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

import eventstore as es
from bank.domain import Account
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.accounts import STREAM_TYPE
from projections import runner
from projections.accounts import BalanceProjection
from projections.follower import Backoff, Hooks, Parking, waits_for_text
from projections.models import AccountBalance, Checkpoint, DeadLetter
from tests.projections.helpers import bulk_store, expected_balances, read_model_balances

# Transactional: a parked event is reported once its transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("tests")
NAME = "balances_under_test"


class Refusing(BalanceProjection):
    """The balances projection, failing on the events in ``poison`` until they are fixed."""

    name = NAME

    def __init__(self) -> None:
        self.poison: set[int] = set()

    def handle(self, events: Sequence[es.RecordedEvent]) -> None:
        refused = [e.position for e in events if e.position in self.poison]
        if refused:
            raise ValueError(f"cannot apply the event at position {refused[0]}")
        super().handle(events)


@pytest.fixture
def projection():
    refusing = Refusing()
    runner.register(refusing)
    try:
        yield refusing
    finally:
        runner.unregister(NAME)


class Recorder(Hooks):
    def __init__(self) -> None:
        self.failures: list[str] = []

    def failed(self, error: Exception, retry_in: float, *, database: bool) -> None:
        self.failures.append(str(error))


def _follow(**options) -> int:
    """Run the test projection's follower until it is caught up; return what it handled."""
    hooks = Recorder()
    follower = runner.follower(
        [NAME],
        backoff=Backoff(first=0.01, longest=0.05),
        once=True,
        hooks=hooks,
        **options,
    )
    handled = follower.run()
    _follow.failures = hooks.failures  # type: ignore[attr-defined]
    return handled


def _open_alone() -> uuid.UUID:
    """An account whose stream is one event (its opening), appended on its own."""
    account = Account.open(uuid.uuid4(), holder_name="Poisoned", currency="EUR")
    es.append(
        account.id,
        [
            es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=datetime.now(UTC))
            for e in account.collect_events()
        ],
        stream_type=STREAM_TYPE,
        expected_version=0,
    )
    return account.id


def _checkpoint() -> int:
    return Checkpoint.objects.get(name=NAME).position


def _parked() -> list[DeadLetter]:
    return list(DeadLetter.objects.filter(follower=NAME).order_by("position"))


def test_a_poisoned_event_among_10000_is_parked_the_rest_projected_and_it_is_retried_after_the_fix(
    projection, capsys
):
    bulk_store(accounts=5, deposits_each=999)
    poisoned = _open_alone()
    bulk_store(accounts=4, deposits_each=999)
    bulk_store(accounts=1, deposits_each=998)
    assert es.count_after(0) == 10_000
    (poison,) = es.read_stream(poisoned)
    projection.poison.add(poison.position)

    with pytest.raises(CommandError, match=r"applied 10000 events, but 1 event\(s\) are parked"):
        call_command(
            "run_projections", NAME, "--once", "--attempts", "3", "--poll-interval", "0.01"
        )
    err = capsys.readouterr().err
    # Two failed rounds, then parked at the third try.
    assert err.count("then it is parked); the batch rolled back; retrying in") == 2
    assert f"parked AccountOpened at position {poison.position}" in err
    assert _checkpoint() == es.head_position()  # nothing after it was held
    expected = expected_balances()
    assert read_model_balances() == {k: v for k, v in expected.items() if k != poisoned}
    (letter,) = _parked()
    assert (letter.position, letter.stream_id, letter.version) == (poison.position, poisoned, 1)
    assert (letter.event_id, letter.event_type, letter.attempts) == (
        poison.event_id,
        "AccountOpened",
        3,
    )
    assert "ValueError: cannot apply" in letter.error and letter.resolved_at is None
    assert letter.first_failed_at <= letter.last_failed_at

    with pytest.raises(CommandError, match=rf"{NAME} has 1 parked event"):
        call_command("projection_status", NAME)
    assert "cannot apply" in capsys.readouterr().out

    projection.poison.clear()  # the fix
    call_command("run_projections", NAME, "--retry-parked")
    assert f"{NAME}: 1 applied" in capsys.readouterr().out
    assert read_model_balances() == expected
    (letter,) = _parked()
    assert letter.resolved_at is not None  # kept, for the record
    call_command("projection_status", NAME)  # healthy again


def test_later_events_of_a_parked_events_stream_wait_behind_it_and_are_retried_in_order(
    projection,
):
    a = svc.open_account(holder_name="Ann", initial_balance_cents=10, actor=ACTOR)
    b = svc.open_account(holder_name="Bob", actor=ACTOR)
    for amount in (1, 2, 3):
        svc.deposit(account_id=a.id, amount_cents=amount, actor=ACTOR)
    svc.deposit(account_id=b.id, amount_cents=7, actor=ACTOR)
    opened, first, second, third = es.read_stream(a.id)
    projection.poison.add(first.position)

    assert _follow(attempts=2) == es.count_after(0)
    assert len(_follow.failures) == 1  # type: ignore[attr-defined]
    assert [(p.position, p.attempts, p.waits_for) for p in _parked()] == [
        (first.position, 2, None),
        (second.position, 0, first.position),
        (third.position, 0, first.position),
    ]
    assert _parked()[1].error == waits_for_text(first.position)
    assert read_model_balances()[a.id] == (10, "active", 1)  # stopped before the gap
    assert read_model_balances()[b.id] == (7, "active", 2)  # the other stream went on

    svc.deposit(account_id=a.id, amount_cents=4, actor=ACTOR)  # a later batch waits too
    _follow()
    assert _parked()[-1].waits_for == first.position and len(_parked()) == 4

    projection.poison.clear()
    results = runner.retry_parked([NAME])
    assert (results[NAME].resolved, results[NAME].still_parked) == (4, 0)
    assert read_model_balances()[a.id] == (20, "active", 5)
    assert all(p.resolved_at is not None for p in _parked())


def test_an_event_that_still_fails_on_retry_stays_parked_with_those_behind_it(projection):
    a = svc.open_account(holder_name="Ann", actor=ACTOR)
    svc.deposit(account_id=a.id, amount_cents=5, actor=ACTOR)
    opened, deposit = es.read_stream(a.id)
    projection.poison.add(opened.position)
    _follow(attempts=1)
    assert [p.attempts for p in _parked()] == [1, 0]

    with pytest.raises(CommandError, match=rf"{NAME}: 2 still parked .* --retry-parked again"):
        call_command("run_projections", NAME, "--retry-parked", verbosity=0)
    assert [(p.attempts, p.resolved_at) for p in _parked()] == [(2, None), (0, None)]
    assert a.id not in read_model_balances()


def test_a_synchronous_catch_up_parks_nothing_and_raises(projection):
    a = svc.open_account(holder_name="Ann", actor=ACTOR)
    (opened,) = es.read_stream(a.id)
    projection.poison.add(opened.position)
    with pytest.raises(Exception, match=NAME):
        runner.catch_up([NAME])
    assert _parked() == [] and _checkpoint() == 0


def test_a_rebuild_resolves_the_parked_events_it_replays(projection):
    a = svc.open_account(holder_name="Ann", initial_balance_cents=3, actor=ACTOR)
    svc.deposit(account_id=a.id, amount_cents=2, actor=ACTOR)
    opened, deposit = es.read_stream(a.id)
    projection.poison.add(deposit.position)
    _follow(attempts=1)
    assert len(_parked()) == 1
    projection.poison.clear()
    runner.reset([NAME])
    runner.catch_up([NAME])
    assert read_model_balances()[a.id] == (5, "active", 2)
    assert runner.parked_counts() == {}


def test_forget_removes_an_abandoned_checkpoint_and_its_dead_letters(capsys):
    a = svc.open_account(holder_name="Ann", actor=ACTOR)
    (opened,) = es.read_stream(a.id)
    Checkpoint.objects.create(name="relay:GONE", position=0)
    parking = Parking("relay:GONE", attempts=1)
    parking.park(parking.failed(opened, "NoStreamResponseError: no stream"))
    runner.catch_up()
    with pytest.raises(CommandError, match="relay:GONE has 1 parked event"):
        call_command("projection_status")
    assert "relay:GONE" in capsys.readouterr().out

    call_command("projection_status", "--forget", "relay:GONE")
    assert "forgot relay relay:GONE: its checkpoint and 1 dead letter(s) removed" in (
        capsys.readouterr().out
    )
    call_command("projection_status")
    assert "relay:GONE" not in capsys.readouterr().out
    assert not DeadLetter.objects.exists()

    with pytest.raises(CommandError, match="no checkpoint named relay:GONE"):
        call_command("projection_status", "--forget", "relay:GONE")
    with pytest.raises(CommandError, match="balances is a projection of this release"):
        call_command("projection_status", "--forget", "balances")
    assert Checkpoint.objects.filter(name="balances").exists()
    current = f"relay:{settings.NATS_STREAM}"  # stopped, but still the configured stream's
    Checkpoint.objects.create(name=current, position=1)
    with pytest.raises(CommandError, match="relay of the configured stream"):
        call_command("projection_status", "--forget", current)
    assert Checkpoint.objects.filter(name=current).exists()


def test_an_abandoned_projection_checkpoint_is_listed_as_such():
    Checkpoint.objects.create(name="renamed_long_ago", position=0)
    (row,) = [r for r in runner.status() if r.name == "renamed_long_ago"]
    assert row.abandoned
    assert AccountBalance.objects.count() == 0


def test_two_events_failing_in_turn_are_both_parked_and_the_follower_goes_on(projection):
    """A park undone by a round that rolls back (another event still had tries left) is
    redone at once in the next round: the failure count survives the roll back."""
    first = _open_alone()
    projection.poison.add(es.head_position())
    parking = {NAME: Parking(NAME, attempts=3)}

    def round_() -> str | None:
        try:
            runner.run_batch_group([projection], parking=parking)
        except runner.ProjectionError as exc:
            return str(exc)
        return None

    assert "attempt 1 of 3" in round_()
    second = _open_alone()  # another stream, failing too, one round behind the first
    projection.poison.add(es.head_position())
    assert "attempt 2 of 3" in round_()
    assert "attempt 2 of 3" in round_()  # the first is parked, but this round rolls back
    assert _parked() == []
    assert round_() is None  # both parked in one round, which commits
    assert [(p.stream_id, p.resolved_at) for p in _parked()] == [(first, None), (second, None)]
    assert _checkpoint() == es.head_position()


def test_a_rebuild_aside_replays_the_parked_events_and_resolves_them():
    """The shadows are built from every event: a parked one is applied there (the cause is
    fixed by then), never held back behind itself, and the swap resolves its letter."""
    bulk_store(accounts=3, deposits_each=4)
    runner.catch_up()
    poisoned = _open_alone()
    svc.deposit(account_id=poisoned, amount_cents=5, actor=ACTOR)
    (opening,) = es.read_stream(poisoned, after_version=0, up_to_version=1)
    # As a follower leaves it: the opening parked, the deposit behind it, both passed over.
    parking = Parking("balances", attempts=1)
    parking.park(parking.failed(opening, "ValueError: fixed since"))
    (deposit,) = es.read_stream(poisoned, after_version=1, up_to_version=2)
    parking.park_behind(deposit, opening.position)
    Checkpoint.objects.filter(name="balances").update(position=es.head_position())
    assert not AccountBalance.objects.filter(pk=poisoned).exists()
    call_command("rebuild_projections", "balances", verbosity=0)
    assert read_model_balances() == expected_balances()
    assert AccountBalance.objects.get(pk=poisoned).balance_cents == 5
    assert not DeadLetter.objects.filter(follower="balances", resolved_at__isnull=True).exists()
