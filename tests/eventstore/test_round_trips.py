"""The command path's cost on PostgreSQL, counted where it is paid: round trips and plans.

A round trip is one time the client waits for the server: the server answers every
request the client waits on (a simple query, or a Sync that ends a batch of extended-protocol
messages, pipelined or not) with one ReadyForQuery, so counting ReadyForQuery messages in
libpq's protocol trace counts the waits, whatever the network's timing.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections import Counter
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import override_settings
from psycopg import pq

import eventstore as es
from bank.domain import Account
from bank.services import Actor
from bank.services import accounts as svc

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TELLER = Actor(username="teller1", user_id=7, auth="token")


@contextmanager
def protocol_trace():
    """Record the client/server messages of Django's connection; yields a list of lines."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            pgconn.untrace()
            trace.flush()
            os.fsync(trace.fileno())
            trace.seek(0)
            lines.extend(trace.read().splitlines())


def waits(lines: list[str]) -> int:
    return sum(1 for line in lines if line.split("\t")[:1] == ["B"] and "ReadyForQuery" in line)


def messages(lines: list[str]) -> Counter:
    return Counter(tuple(line.split("\t")[:3:2]) for line in lines)


def open_account(balance: int = 10_000) -> uuid.UUID:
    return svc.open_account(
        holder_name="Ada Lovelace", initial_balance_cents=balance, actor=TELLER
    ).id


def deposit(account_id: uuid.UUID) -> svc.AccountState:
    return svc.deposit(account_id=account_id, amount_cents=100, actor=TELLER)


@override_settings(SNAPSHOT_INTERVAL=1000)
def test_a_deposit_takes_two_round_trips_the_load_and_the_append_in_autocommit():
    account = open_account()
    for _ in range(3):  # the statements are prepared by now
        deposit(account)
    with protocol_trace() as lines:
        after = deposit(account)
    assert after.version == 5
    assert waits(lines) == 2, "\n".join(lines)
    sent = messages(lines)
    assert sent[("F", "Query")] == 0, "no BEGIN, no COMMIT: " + "\n".join(lines)
    assert sent[("F", "Parse")] == 0, "prepared: bound, never parsed again: " + "\n".join(lines)


@override_settings(SNAPSHOT_INTERVAL=1000)
def test_a_deposit_on_a_fresh_connection_takes_two_round_trips_too():
    """A connection made for one request (CONN_MAX_AGE=0, the default) never prepares:
    preparing outside a pipeline would cost a Parse round trip of its own."""
    account = open_account()
    connection.close()
    with protocol_trace() as lines:
        deposit(account)
    assert waits(lines) == 2, "\n".join(lines)
    # The snapshot's, the events' and the append's statements, unnamed: no extra wait.
    assert messages(lines)[("F", "Parse")] == 3, "\n".join(lines)


def test_a_deposit_that_is_due_a_snapshot_takes_three_round_trips():
    account = open_account()
    with override_settings(SNAPSHOT_INTERVAL=5):
        for _ in range(3):
            deposit(account)
        with protocol_trace() as lines:
            after = deposit(account)  # version 5: a snapshot is due
    assert after.version == 5
    snapshot_version = Account.SNAPSHOT_SCHEMA_VERSION
    loaded = es.load_streams([account], snapshot_schema_version=snapshot_version)[0]
    assert loaded.snapshot.version == 5
    assert waits(lines) == 3, "\n".join(lines)


def test_a_deposit_after_a_snapshot_with_no_events_after_it_still_takes_two():
    """The snapshot's row carries its event's hash: no extra read of the stream's head."""
    account = open_account()
    with override_settings(SNAPSHOT_INTERVAL=5):
        for _ in range(4):
            deposit(account)  # the 4th makes version 5 and its snapshot
        with protocol_trace() as lines:
            after = deposit(account)
    assert after.version == 6
    assert waits(lines) == 2, "\n".join(lines)


@override_settings(SNAPSHOT_INTERVAL=1000)
def test_a_locked_command_takes_four_round_trips_for_both_accounts_of_a_transfer():
    """BEGIN (psycopg waits for it), then the two stream locks and both loads in one
    pipeline, then the INSERT, then COMMIT. A deposit's retry takes the same locked path."""
    source, target = open_account(), open_account()
    for _ in range(3):
        svc.transfer(from_account=source, to_account=target, amount_cents=1, actor=TELLER)
    with protocol_trace() as lines:
        svc.transfer(from_account=source, to_account=target, amount_cents=1, actor=TELLER)
    assert waits(lines) == 4, "\n".join(lines)
    sent = messages(lines)
    assert sent[("F", "Query")] == 1 and sent[("F", "Sync")] == 3, "\n".join(lines)


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def run_the_hot_paths_three_times() -> None:
    account, other = open_account(), open_account()
    for _ in range(3):
        deposit(account)
        svc.transfer(from_account=account, to_account=other, amount_cents=1, actor=TELLER)
        es.read_all(after_position=0, limit=10)


@override_settings(SNAPSHOT_INTERVAL=1000)
def test_the_command_path_and_the_readers_run_prepared_statements():
    run_the_hot_paths_three_times()
    statements = prepared_statements()
    for fragment in (
        "pg_advisory_xact_lock(k)",  # the stream locks of the locked path
        "FROM snapshots",  # the load: snapshot and events in one statement
        "INSERT INTO events",  # the append
        "WHERE position > ",  # the followers' read
    ):
        assert any(fragment in s for s in statements), (fragment, statements)


def test_the_settings_give_the_connection_a_prepare_threshold_only_when_asked():
    """Django's default (None) makes psycopg never prepare, whatever execute() asks."""
    import subprocess
    import sys

    from tests.support import ROOT

    def threshold(flag: str) -> str:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "import config.settings as s; "
                "print(s.DATABASES['default']['OPTIONS']['prepare_threshold'])",
            ],
            env={
                **os.environ,
                "DEBUG": "true",
                "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
                "EVENTSTORE_PREPARED_STATEMENTS": flag,
                "PYTHONPATH": str(ROOT),
            },
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert threshold("true") == "2"
    assert threshold("false") == "None"


@override_settings(SNAPSHOT_INTERVAL=1000, EVENTSTORE_PREPARED_STATEMENTS=False)
def test_with_prepared_statements_off_nothing_is_prepared():
    from django.conf import settings

    connection.close()  # the next connection is made as with the setting off
    options = settings.DATABASES["default"]["OPTIONS"]
    original = options.get("prepare_threshold")
    options["prepare_threshold"] = None  # what config/settings.py gives (tested above)
    try:
        run_the_hot_paths_three_times()
        assert prepared_statements() == []
    finally:
        connection.close()
        options["prepare_threshold"] = original


def test_a_deposit_whose_holder_key_is_not_cached_takes_one_more_round_trip_for_the_key():
    """The answer shows the holder's name, decrypted with their data key: a process that
    has not read that key within PII_KEY_CACHE_SECONDS reads it once (README, Data
    protection), then the deposit is back to two."""
    from bank.services import encryption

    account = open_account()
    encryption.forget_cached_keys()
    with protocol_trace() as lines:
        deposit(account)
    assert waits(lines) == 3, "\n".join(lines)
    with protocol_trace() as lines:
        deposit(account)
    assert waits(lines) == 2, "\n".join(lines)
