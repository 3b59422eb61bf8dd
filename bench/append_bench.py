"""Event store append throughput on PostgreSQL (issue 2's benchmark).

5,000 commands over 500 streams, one event per command (read the stream's current
version, append at it), sequentially and with 4 threads, for:

* this event store (``eventstore.append`` through Django);
* raw psycopg: read max(version), INSERT at +1, one transaction per command, into a table
  with the same columns and indexes: the limit a Python client can reach;
* the ``eventsourcing`` library on the same server (repository.get + save), the peer a
  Django user would otherwise pick.

Then a hot stream: 4 threads appending to ONE stream, retrying on conflict.

Run: ``make bench`` or ``.venv/bin/python bench/append_bench.py``.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from common import (
    ADMIN_URL,
    BENCH_DB,
    PG_HOST,
    PG_PORT,
    PG_USER,
    Result,
    print_table,
    recreate_database,
    run_commands,
    setup_django,
)

STREAMS = 500
COMMANDS = 5000
HOT_COMMANDS = 1000


def ours(threads: int) -> Result:
    from django.db import connections

    import eventstore as es

    streams = [uuid.uuid4() for _ in range(STREAMS)]
    for s in streams:
        es.append(
            s,
            [es.NewEvent(event_type="Opened", data={"n": 0}, occurred_at=datetime.now(UTC))],
            stream_type="bench.thing",
            expected_version=0,
        )

    def command(s: uuid.UUID):
        def run() -> None:
            head = es.stream_head(s)
            es.append(
                s,
                [
                    es.NewEvent(
                        event_type="Deposited", data={"amount": 100}, occurred_at=datetime.now(UTC)
                    )
                ],
                stream_type="bench.thing",
                expected_version=head,
                metadata={"actor": "bench"},
            )

        return run

    work = [command(streams[k % STREAMS]) for k in range(COMMANDS)]
    return run_commands(
        f"eventstore, {threads} thread(s)", threads, work, per_thread_end=connections.close_all
    )


def raw(threads: int, url: str) -> Result:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_events")
        conn.execute("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
    local = threading.local()

    def conn_for_thread() -> psycopg.Connection:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(url)
        return local.conn

    insert = (
        "INSERT INTO bench_raw_events (event_id, stream_id, stream_type, version, event_type, "
        "schema_version, data, metadata, occurred_at, recorded_at, commit_id, hash) "
        "VALUES (%s, %s, 'bench.thing', %s, %s, 1, %s, %s, %s, %s, 0, '')"
    )
    streams = [uuid.uuid4() for _ in range(STREAMS)]
    with psycopg.connect(url) as conn:
        for s in streams:
            now = datetime.now(UTC)
            conn.execute(
                insert, (uuid.uuid4(), s, 1, "Opened", Jsonb({"n": 0}), Jsonb({}), now, now)
            )
        conn.commit()

    def command(s: uuid.UUID):
        def run() -> None:
            conn = conn_for_thread()
            cur = conn.cursor()
            cur.execute(
                "SELECT COALESCE(MAX(version), 0) FROM bench_raw_events WHERE stream_id = %s", (s,)
            )
            version = cur.fetchone()[0]
            now = datetime.now(UTC)
            cur.execute(
                insert,
                (
                    uuid.uuid4(),
                    s,
                    version + 1,
                    "Deposited",
                    Jsonb({"amount": 100}),
                    Jsonb({"actor": "bench"}),
                    now,
                    now,
                ),
            )
            conn.commit()

        return run

    def close() -> None:
        if hasattr(local, "conn"):
            local.conn.close()

    work = [command(streams[k % STREAMS]) for k in range(COMMANDS)]
    return run_commands(f"raw psycopg, {threads} thread(s)", threads, work, per_thread_end=close)


def peer(threads: int) -> Result | None:
    try:
        from eventsourcing.application import Application
    except ImportError:
        print("eventsourcing is not installed (pip install -e '.[bench]'): peer left out")
        return None
    Thing = _peer_aggregate()

    name = f"{BENCH_DB}_peer_{threads}"
    recreate_database(name)
    app = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": name,
            "POSTGRES_HOST": PG_HOST,
            "POSTGRES_PORT": PG_PORT,
            "POSTGRES_USER": PG_USER,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_POOL_SIZE": str(max(threads, 2)),
            "CREATE_TABLE": "y",
        }
    )
    ids = []
    for _ in range(STREAMS):
        thing = Thing(n=0)
        app.save(thing)
        ids.append(thing.id)

    def command(thing_id: uuid.UUID):
        def run() -> None:
            thing = app.repository.get(thing_id)
            thing.deposit(100)
            app.save(thing)

        return run

    work = [command(ids[k % STREAMS]) for k in range(COMMANDS)]
    try:
        return run_commands(f"eventsourcing {threads} thread(s)", threads, work)
    finally:
        app.close()


def _peer_aggregate():
    from eventsourcing.domain import Aggregate, event

    global _THING
    if _THING is None:

        class Thing(Aggregate):
            @event("Opened")
            def __init__(self, n: int) -> None:
                self.n = n

            @event("Deposited")
            def deposit(self, amount: int) -> None:
                self.n += amount

        _THING = Thing
    return _THING


_THING = None


def hot_stream() -> Result:
    from django.db import connections

    import eventstore as es

    stream = uuid.uuid4()
    es.append(
        stream,
        [es.NewEvent(event_type="Opened", data={}, occurred_at=datetime.now(UTC))],
        stream_type="bench.thing",
        expected_version=0,
    )
    conflicts = [0]
    lock = threading.Lock()

    def run() -> None:
        while True:
            head = es.stream_head(stream)
            try:
                es.append(
                    stream,
                    [
                        es.NewEvent(
                            event_type="Deposited", data={"a": 1}, occurred_at=datetime.now(UTC)
                        )
                    ],
                    stream_type="bench.thing",
                    expected_version=head,
                )
                return
            except es.ConcurrencyError:
                with lock:
                    conflicts[0] += 1

    result = run_commands(
        "eventstore hot stream, 4 threads",
        4,
        [run] * HOT_COMMANDS,
        per_thread_end=connections.close_all,
    )
    stored = es.stream_version(stream)
    assert stored == HOT_COMMANDS + 1, (
        f"lost or duplicated appends: {stored - 1} != {HOT_COMMANDS}"
    )
    result.note = (
        f"{conflicts[0]} conflicts retried; {stored - 1}/{HOT_COMMANDS} stored, none lost"
    )
    return result


def main() -> None:
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        sync = cursor.fetchone()[0]
    print(f"PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]}, synchronous_commit={sync}")
    print(f"{COMMANDS} commands over {STREAMS} streams, one event each")
    rows: list[Result] = []
    for threads in (1, 4):
        baseline = raw(threads, url)
        mine = ours(threads)
        other = peer(threads)
        print_table(
            f"Appends, {threads} thread(s)",
            [mine, baseline] + ([other] if other else []),
            baseline,
            other,
        )
        rows += [mine, baseline]
    print_table("Hot stream", [hot_stream()], None, None)


if __name__ == "__main__":
    main()
