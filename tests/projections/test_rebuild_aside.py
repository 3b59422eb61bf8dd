"""Rebuilding aside: readers polling during a rebuild never see the read models go back.

The reader polls from a connection of its own (on PostgreSQL a psycopg connection whose
statements are all prepared, as a pooled web worker's would be) while writers append, a
live follower follows, and a rebuild runs in another thread or process. Every wait is for an
observed state, with a generous bound; nothing depends on how fast this machine is.
"""

from __future__ import annotations

import random
import signal
import threading
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, connections
from opentelemetry.instrumentation.utils import suppress_instrumentation

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from projections.accounts import BalanceProjection
from projections.follower import lock_key
from projections.models import AccountBalance, Checkpoint, TransactionHistory
from projections.rebuild import NOT_TOUCHED, REBUILD_LOCK, SHADOW_SCHEMA, rebuild
from tests.projections.helpers import (
    balance_rows,
    bulk_store,
    expected_balances,
    history_rows,
    read_model_balances,
    wait_until,
)
from tests.support import database_url, manage_env, start_manage

ACTOR = Actor.system("tests")
BALANCES = AccountBalance._meta.db_table
HISTORY = TransactionHistory._meta.db_table


class Background:
    """A loop in a thread of its own (with its own connection) until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Background:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            self.errors.append(exc)
        finally:
            self.close()
            connections.close_all()

    def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), f"the {self.name} did not stop"
        assert self.errors == [], f"the {self.name} failed: {self.errors!r}"


class Reader(Background):
    """Polls the row count, each account's (version, balance) and the history's size, and
    records every observation older than one it made before."""

    def __init__(self) -> None:
        super().__init__("reader")
        self.polls = 0
        self.violations: list[str] = []
        self.live_position = 0  # the live balances checkpoint, as this reader sees it
        self.tables: set[int] = set()  # PostgreSQL: the oids the balances table has had
        self.prepared = 0
        self._most_rows = self._most_history = 0
        self._seen: dict[str, tuple[int, int]] = {}
        self._pg: Any = None

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            return self._pg.execute(sql, prepare=True).fetchall()
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def run(self) -> None:
        if connection.vendor == "postgresql":
            import psycopg

            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params["prepare_threshold"] = 0
            self._pg = psycopg.connect(**params, autocommit=True)
        # Thousands of polls: their spans would fill the session's in-memory exporter.
        with suppress_instrumentation():
            while not self.stopping:
                self.poll()
                self._stop.wait(0.002)

    def poll(self) -> None:
        rows = self._query(f"SELECT account_id, version, balance_cents FROM {BALANCES}")
        (history,) = self._query(f"SELECT count(*) FROM {HISTORY}")[0]
        found = self._query("SELECT position FROM projection_checkpoints WHERE name = 'balances'")
        if self._pg is not None:
            self.tables.add(self._query(f"SELECT '{BALANCES}'::regclass::oid")[0][0])
        if len(rows) < self._most_rows:
            self._violate(f"{len(rows)} balance rows after {self._most_rows}")
        if history < self._most_history:
            self._violate(f"{history} history rows after {self._most_history}")
        self._most_rows, self._most_history = (
            max(self._most_rows, len(rows)),
            max(self._most_history, history),
        )
        now = {str(account): (version, balance) for account, version, balance in rows}
        for account, (version, balance) in self._seen.items():
            current = now.get(account)
            if current is None:
                self._violate(f"account {account} (version {version}) disappeared")
            elif current[0] < version or (current[0] == version and current[1] != balance):
                self._violate(f"account {account} went from {(version, balance)} to {current}")
        self._seen = now
        self.live_position = found[0][0] if found else 0
        self.polls += 1

    def _violate(self, what: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(f"poll {self.polls}: {what}")

    def close(self) -> None:
        if self._pg is not None:
            with suppress_instrumentation():
                self.prepared = self._pg.execute(
                    "SELECT count(*) FROM pg_prepared_statements"
                ).fetchone()[0]
            self._pg.close()


class Writer(Background):
    """Deposits into a few accounts, one command after the other, until stopped."""

    def __init__(self, accounts: list[uuid.UUID]) -> None:
        super().__init__("writer")
        self.accounts = accounts
        self.appended = 0

    def run(self) -> None:
        rng = random.Random(18)
        while not self.stopping:
            svc.deposit(account_id=rng.choice(self.accounts), amount_cents=1, actor=ACTOR)
            self.appended += 1
            # A steady trickle (the rebuild here waits for the reader at every batch, so it
            # is slower than a real one), leaving SQLite's write lock to the others too.
            self._stop.wait(0.02)


class LiveFollower(Background):
    """Follows the store in small batches, as run_projections would."""

    def __init__(self) -> None:
        super().__init__("live follower")
        self.waited = 0

    def run(self) -> None:
        while not self.stopping:
            try:
                if not runner.catch_up(limit=100):
                    self._stop.wait(0.01)
            except OperationalError:
                # The swap held the checkpoints past lock_timeout: try again, as the
                # follower engine does after a database error.
                self.waited += 1
                connection.close()


def _store() -> list[uuid.UUID]:
    """About 3,000 events over 35 accounts, followed live; the writer's 5 accounts."""
    bulk_store(accounts=30, deposits_each=99)
    ids = [
        svc.open_account(holder_name=f"Live {i}", initial_balance_cents=100, actor=ACTOR).id
        for i in range(5)
    ]
    runner.catch_up(limit=5000)
    return ids


def _equal_to_a_clean_replay() -> None:
    runner.catch_up(limit=5000)
    live = (balance_rows(), history_rows())
    assert read_model_balances() == expected_balances()
    runner.reset()
    runner.catch_up(limit=5000)
    assert (balance_rows(), history_rows()) == live


def _rebuild_while_polled(*, in_place: bool) -> Reader:
    """Rebuild in this thread while a reader polls and (unless in place) a writer appends and
    a live follower follows; between batches, wait for the reader to poll again (and, after
    the first, for the live follower to have moved), so that every stage is seen.

    In place, the live follower would share the live checkpoints with the rebuild and race
    it to refill the tables, and the writer would only make it chase the head: without
    them, the reader sees every stage of the old way.
    """
    ids = _store()
    started_at = Checkpoint.objects.get(name="balances").position
    reader = Reader().start()
    writer = None if in_place else Writer(ids).start()
    follower = None if in_place else LiveFollower().start()
    batches = 0
    try:
        wait_until(lambda: reader.polls > 0, "the reader's first poll")

        def between_batches(count: int) -> None:
            nonlocal batches
            batches += 1
            if batches == 1 and follower is not None:
                wait_until(
                    lambda: reader.live_position > started_at,
                    "the live follower to move during the rebuild",
                )
            polls = reader.polls
            wait_until(lambda: reader.polls > polls, "the reader to poll between batches")

        rebuild(batch_size=200, progress=between_batches, in_place=in_place)
        polls = reader.polls
        wait_until(lambda: reader.polls > polls + 1, "the reader to poll after the swap")
        if writer is not None:
            appended = writer.appended
            wait_until(lambda: writer.appended > appended, "an append after the swap")
    finally:
        if writer is not None:
            writer.stop()
        head = es.head_position()
        try:
            if follower is not None:
                wait_until(lambda: reader.live_position >= head, "the live follower to catch up")
        finally:
            if follower is not None:
                follower.stop()
            reader.stop()
    assert batches >= 15  # ~3,000 events in batches of 200: the reader polled between each
    return reader


@pytest.mark.django_db(transaction=True)
def test_rebuild_under_a_polling_reader():
    reader = _rebuild_while_polled(in_place=False)
    assert reader.violations == []
    if connection.vendor == "postgresql":
        assert len(reader.tables) == 2  # it read the live table, then the swapped-in one
        assert reader.prepared >= 3  # through prepared statements, re-planned at the swap
    _equal_to_a_clean_replay()


@pytest.mark.django_db(transaction=True)
def test_the_polling_reader_catches_an_in_place_rebuild():
    # The same reader finds the bug of the old rebuild (count 58 -> 12 -> 58).
    reader = _rebuild_while_polled(in_place=True)
    assert any("balance rows after" in v for v in reader.violations), reader.violations


def _database_url() -> str:
    if connection.vendor == "postgresql":
        return database_url()
    return f"sqlite:///{connection.settings_dict['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_the_command_in_another_process_swaps_under_run_projections_and_a_reader():
    ids = _store()
    env = manage_env(_database_url())
    reader, writer = Reader().start(), Writer(ids).start()
    follower = start_manage(env, "run_projections", "--poll-interval", "0.1")
    rebuilding = None
    try:
        wait_until(lambda: reader.polls > 0, "the reader's first poll")
        rebuilding = start_manage(env, "rebuild_projections", "--batch-size", "100")
        out, err = rebuilding.communicate(timeout=600)
        assert rebuilding.returncode == 0, out + err
        assert "aside and swapped in" in out
        polls = reader.polls
        wait_until(lambda: reader.polls > polls + 1, "the reader to poll after the swap")
        appended = writer.appended
        wait_until(lambda: writer.appended > appended, "an append after the swap")
        writer.stop()
        head = es.head_position()
        wait_until(lambda: reader.live_position >= head, "run_projections to follow on")
    finally:
        writer.stop()
        follower.send_signal(signal.SIGTERM)
        follower_out, follower_err = follower.communicate(timeout=60)
        if rebuilding is not None and rebuilding.poll() is None:
            rebuilding.kill()
            rebuilding.communicate(timeout=30)
        reader.stop()
    assert follower.returncode == 0, follower_err
    assert reader.violations == []
    if connection.vendor == "postgresql":
        assert len(reader.tables) == 2
    _equal_to_a_clean_replay()


def _shadow_left() -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s", [SHADOW_SCHEMA])
        else:
            cursor.execute(
                "SELECT name FROM temp.sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"
            )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_an_error_mid_rebuild_leaves_the_live_read_models_untouched(monkeypatch):
    _store()
    before = (balance_rows(), history_rows(), sorted(Checkpoint.objects.values_list()))
    # An event's own position: on PostgreSQL positions go on from earlier tests' events.
    stored = es.read_all(after_position=0, limit=10**6)
    middle = stored[len(stored) // 2].position
    real = BalanceProjection.handle

    def handle(self, events):
        if any(e.position == middle for e in events):
            raise ValueError("cannot apply")
        real(self, events)

    monkeypatch.setattr(BalanceProjection, "handle", handle)
    with pytest.raises(CommandError) as caught:
        call_command("rebuild_projections", "--batch-size", "50", verbosity=0)
    message = str(caught.value)
    assert "projection balances failed" in message and NOT_TOUCHED in message
    assert (balance_rows(), history_rows(), sorted(Checkpoint.objects.values_list())) == before
    assert _shadow_left() == []
    monkeypatch.undo()
    call_command("rebuild_projections", verbosity=0)
    assert (balance_rows(), history_rows()) == before[:2]


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_swap_that_fails_leaves_the_live_read_models_untouched():
    _store()
    before = (balance_rows(), history_rows(), sorted(Checkpoint.objects.values_list()))
    with connection.cursor() as cursor:  # the DROP of the live table is refused
        cursor.execute(f"CREATE VIEW rich AS SELECT * FROM {BALANCES} WHERE balance_cents > 0")
    with pytest.raises(CommandError, match="other objects depend on it") as caught:
        call_command("rebuild_projections", verbosity=0)
    assert NOT_TOUCHED in str(caught.value)
    assert (balance_rows(), history_rows(), sorted(Checkpoint.objects.values_list())) == before
    assert _shadow_left() == []


def _catalogue(table: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
            [table],
        )
        indexes = sorted(cursor.fetchall())
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass",
            [table],
        )
        constraints = sorted(cursor.fetchall())
        cursor.execute(
            "SELECT pg_get_userbyid(relowner), relacl::text[], relnamespace::regnamespace::text "
            "FROM pg_class WHERE oid = %s::regclass",
            [table],
        )
        owner, acl, schema = cursor.fetchone()
        cursor.execute(
            "SELECT attname, pg_get_serial_sequence(%s, attname) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table, table],
        )
        sequences = sorted((c, s) for c, s in cursor.fetchall() if s)
        sequence_acl = []
        for _, sequence in sequences:
            cursor.execute(
                "SELECT relacl::text[] FROM pg_class WHERE oid = %s::regclass", [sequence]
            )
            sequence_acl.append(sorted(cursor.fetchone()[0] or []))
    return {
        "indexes": indexes,
        "constraints": constraints,
        "owner": owner,
        "acl": sorted(acl or []),
        "schema": schema,
        "sequences": sequences,
        "sequence_acl": sequence_acl,
    }


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_swapped_table_keeps_its_names_owner_and_grants_so_migrations_still_apply():
    role = f"rebuild_test_{uuid.uuid4().hex[:8]}"  # rolled back with the test's transaction
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {BALANCES}, {HISTORY} TO {role}")
        cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {HISTORY}_id_seq TO {role}")
    _store()
    before = {table: _catalogue(table) for table in (BALANCES, HISTORY)}
    call_command("rebuild_projections", verbosity=0)
    assert {table: _catalogue(table) for table in (BALANCES, HISTORY)} == before
    # A later migration names the indexes and constraints it changes.
    with connection.schema_editor() as editor:
        for model in (AccountBalance, TransactionHistory):
            for index in model._meta.indexes:
                editor.remove_index(model, index)
                editor.add_index(model, index)
        for constraint in TransactionHistory._meta.constraints:
            editor.remove_constraint(TransactionHistory, constraint)
            editor.add_constraint(TransactionHistory, constraint)
    # The identity sequence went along: the next rows get new ids.
    account = svc.open_account(holder_name="After", initial_balance_cents=5, actor=ACTOR)
    runner.catch_up()
    assert TransactionHistory.objects.get(account_id=account.id).id > max(
        TransactionHistory.objects.exclude(account_id=account.id).values_list("id", flat=True)
    )


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_second_rebuild_is_refused_while_one_runs():
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [lock_key(REBUILD_LOCK)])
        with pytest.raises(CommandError, match="another rebuild_projections is running"):
            call_command("rebuild_projections", verbosity=0)


@pytest.mark.django_db
def test_in_place_still_rebuilds_the_live_tables(capsys):
    _store()
    live = (balance_rows(), history_rows())
    call_command("rebuild_projections", "transactions", "--in-place", verbosity=1)
    assert "rebuilt transactions:" in capsys.readouterr().out
    call_command("rebuild_projections", "balances", verbosity=1)
    assert f"aside and swapped in; followers continue after position {es.head_position()}" in (
        capsys.readouterr().out
    )
    assert (balance_rows(), history_rows()) == live


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_shadows_are_analyzed_as_they_grow_not_only_at_the_end(monkeypatch):
    """Without statistics the planner takes the growing shadows for tiny tables, and the
    history's per-batch lookups became scans of millions of rows on a 5,000,000-event store
    (autovacuum is off on some servers, and a minute behind on the others)."""
    from django.test.utils import CaptureQueriesContext

    from projections import rebuild as rebuild_module

    bulk_store(accounts=20, deposits_each=50)  # 1,020 events
    monkeypatch.setattr(rebuild_module, "FIRST_ANALYZE_AT", 100)
    with CaptureQueriesContext(connection) as queries:
        rebuild(batch_size=50)
    analyzed = [q["sql"] for q in queries if q["sql"].startswith("ANALYZE")]
    # At 100, 200, 400 and 800 events, then once at the end: both tables each time.
    assert len(analyzed) == 2 * 5, analyzed
    assert all(f'"{SHADOW_SCHEMA}"' in sql for sql in analyzed), analyzed
    # As they grow, the columns the handlers look rows up by (the indexed ones, cheaper
    # than all); at the end, every column, for the readers' queries.
    growing, last = analyzed[:-2], analyzed[-2:]
    history = [sql for sql in growing if '"read_transaction_history"' in sql]
    assert len(history) == 4 and all('"account_id"' in sql for sql in history), history
    assert all('"version"' in sql and '"description"' not in sql for sql in history), history
    assert all(
        sql.endswith('"read_account_balances"') or sql.endswith('"read_transaction_history"')
        for sql in last
    ), last
