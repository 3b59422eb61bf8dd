"""Followers with real commits: concurrent writers, two followers, SIGKILL and SIGTERM."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from django.db import connection, transaction

import eventstore as es
from bank.domain import DomainError
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.errors import ConcurrencyConflict
from projections import runner
from tests.projections.helpers import (
    balance_rows,
    bulk_store,
    expected_balances,
    history_rows,
    read_model_balances,
    wait_until,
)
from tests.support import database_url, manage_env, run_threads, start_manage

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("tests")


def test_writers_and_two_followers_at_once_apply_every_event_exactly_once():
    ids = [
        svc.open_account(holder_name=f"W{i}", initial_balance_cents=1000, actor=ACTOR).id
        for i in range(6)
    ]
    done = threading.Event()

    def role(i, barrier):
        barrier.wait()
        if i < 3:  # writers
            import random

            rng = random.Random(i)
            for _ in range(30):
                a, b = rng.sample(ids, 2)
                try:
                    if rng.random() < 0.5:
                        svc.transfer(
                            from_account=a,
                            to_account=b,
                            amount_cents=rng.randint(1, 300),
                            actor=ACTOR,
                        )
                    else:
                        svc.deposit(account_id=a, amount_cents=rng.randint(1, 100), actor=ACTOR)
                except (DomainError, ConcurrencyConflict):
                    pass
            return None
        while True:  # followers
            finished = done.is_set()
            runner.catch_up(limit=5)
            if finished:
                return None
            time.sleep(0.005)

    def with_done(i, barrier):
        try:
            return role(i, barrier)
        finally:
            if i == 2:
                done.set()

    results = run_threads(5, with_done)
    assert results == [None] * 5, results
    runner.catch_up()
    assert read_model_balances() == expected_balances()
    live = (balance_rows(), history_rows())
    runner.reset()
    runner.catch_up()
    assert (balance_rows(), history_rows()) == live


def _follower(*args):
    return start_manage(
        manage_env(database_url()), "run_projections", "--poll-interval", "0.2", *args
    )


def _checkpoints():
    return {s.name: s.checkpoint for s in runner.status()}


def _kill_while_checkpoints_are_held(follower, head):
    """SIGKILL ``follower`` while no checkpoint can move; True if it was still mid-way.

    The checkpoint table is locked against writes before the checkpoints are read,
    so the follower cannot commit its next batch between that read and the kill,
    however slowly this process is scheduled.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE projection_checkpoints IN EXCLUSIVE MODE")
        if min(_checkpoints().values()) >= head:
            return False
        follower.send_signal(signal.SIGKILL)
        follower.wait(30)
    return True


@pytest.mark.postgres
def test_a_follower_killed_mid_way_resumes_to_the_same_result_as_a_clean_rebuild():
    bulk_store(accounts=40, deposits_each=499)  # 20,000 events
    head = es.head_position()
    for _attempt in range(5):
        follower = _follower("--batch-size", "100")
        try:
            wait_until(
                lambda: min(_checkpoints().values(), default=0) > 0, "the follower to start"
            )
            killed_mid_way = _kill_while_checkpoints_are_held(follower, head)
        finally:
            follower.send_signal(signal.SIGKILL)
            follower.wait(30)
        if killed_mid_way:
            break
        runner.reset()  # a busy machine let it finish first: start over
    else:
        pytest.fail("the follower finished before it could be killed mid-way, five times")
    assert 0 < min(_checkpoints().values()) < head
    follower = _follower("--batch-size", "250")
    try:
        wait_until(
            lambda: min(_checkpoints().values()) == head, "the restarted follower to catch up"
        )
        svc.deposit(
            account_id=es.read_all(after_position=0, limit=1)[0].stream_id,
            amount_cents=7,
            actor=ACTOR,
        )
        wait_until(
            lambda: min(_checkpoints().values()) == es.head_position(), "a live append to arrive"
        )
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert "stopped cleanly" in out
    live = (balance_rows(), history_rows())
    runner.reset()
    runner.catch_up(limit=5000)
    assert (balance_rows(), history_rows()) == live
    assert read_model_balances() == expected_balances()


@pytest.mark.postgres
def test_a_second_follower_stands_by_and_takes_over_when_the_first_dies():
    first = _follower()
    second = None
    try:
        wait_until(lambda: "balances" in _checkpoints(), "the first follower to start")
        second = _follower()
        time.sleep(1.0)
        account = svc.open_account(holder_name="Failover", actor=ACTOR)
        wait_until(
            lambda: min(_checkpoints().values()) == es.head_position(), "the first follower"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        svc.deposit(account_id=account.id, amount_cents=5, actor=ACTOR)
        wait_until(
            lambda: min(_checkpoints().values()) == es.head_position(), "the standby to take over"
        )
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=30)
    assert read_model_balances()[account.id] == (5, "active", 2)


@pytest.mark.postgres
def test_a_follower_killed_during_heavy_writes_ends_equal_to_a_rebuild():
    ids = [
        svc.open_account(holder_name=f"Heavy {i}", initial_balance_cents=5_000, actor=ACTOR).id
        for i in range(8)
    ]
    writing = threading.Event()
    writing.set()

    def write(i, barrier):
        import random

        rng = random.Random(i)
        barrier.wait()
        count = 0
        while writing.is_set():
            a, b = rng.sample(ids, 2)
            try:
                if rng.random() < 0.5:
                    svc.transfer(
                        from_account=a, to_account=b, amount_cents=rng.randint(1, 99), actor=ACTOR
                    )
                else:
                    svc.deposit(account_id=a, amount_cents=rng.randint(1, 99), actor=ACTOR)
                count += 1
            except (DomainError, ConcurrencyConflict):
                pass
        return count

    results: list = []
    writers = threading.Thread(target=lambda: results.extend(run_threads(4, write)))
    writers.start()
    follower = _follower("--batch-size", "20")
    try:
        wait_until(lambda: min(_checkpoints().values()) > 50, "the follower to apply some batches")
        follower.send_signal(signal.SIGKILL)  # mid-stream, writers still going
        follower.wait(30)
        time.sleep(0.5)
        killed_at = min(_checkpoints().values())
        assert killed_at < es.head_position(), "the writes were not heavy enough to kill mid-way"
        follower = _follower("--batch-size", "20")
        time.sleep(1.5)
    finally:
        writing.clear()
        writers.join(120)
    try:
        wait_until(lambda: min(_checkpoints().values()) == es.head_position(), "the catch-up")
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert all(isinstance(n, int) for n in results) and sum(results) > 50, results
    live = (balance_rows(), history_rows())
    runner.reset()
    runner.catch_up(limit=5000)
    assert (balance_rows(), history_rows()) == live
    assert read_model_balances() == expected_balances()
