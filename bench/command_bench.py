"""The command path as users meet it, beside the real alternatives, in ONE run (issue 13).

Everything runs on the same PostgreSQL, in one process, interleaved round by round (each
contender runs once per round; the table shows each contender's median round), and every
figure is printed as a ratio to the anchors measured in the same run:

1. Deposits: a deposit command through ``bank.services`` (load the account, check the
   rules, append one event, a snapshot every SNAPSHOT_INTERVAL), sequentially over 500
   accounts, with 4 threads over 500 accounts, and with 4 threads on ONE hot account
   (p50/p99; every deposit must be stored exactly once). Beside it, doing the same deposits:
   * the same command path with signing off (Ed25519 signatures replaced by a constant,
     snapshot checks skipped): the price of signing (issue 14);
   * raw psycopg: one SELECT of the stream's events (fold the balance), then one
     ``INSERT ... SELECT ... WHERE max(version) = expected`` in autocommit: 2 round trips,
     no global order guarantee, retried on a lost race;
   * raw psycopg with a transaction-scoped advisory lock taken first (the simplest
     gap-free global order): BEGIN, lock, SELECT, INSERT, COMMIT;
   * the ``eventsourcing`` library (its PostgreSQL recorder; an aggregate with a
     ``deposit`` command: ``repository.get`` then ``save``), without and with its
     snapshotting (every 100 events, as ours), retried on a lost race.
2. Loading a 10,000-event account: in full, and through a snapshot at version 10,000
   with 50 events after it. Ours: ``get_account`` (one statement: snapshot + events,
   decoded, folded by the domain). Raw: SELECT and fold the same rows in Python (through
   a snapshot: its snapshot row, then the events after it). eventsourcing:
   ``repository.get`` (without and with a snapshot).
3. The global order over 100,000+ events: ``read_all`` in batches of 1,000 beside a raw
   psycopg SELECT of the same rows and columns in the same batches (decoded by psycopg's
   default loaders), and eventsourcing's ``select_notifications`` (1,000 at a time) over a
   store of the same size. Twice: as each returns its events (ours and eventsourcing's
   leave the payloads undecoded until asked), and with every payload decoded (ours:
   ``event.data`` of each; eventsourcing: ``mapper.to_domain_event`` of each). Then
   ``rebuild_projections`` (balances and history) in events/s beside the same raw read.

The HTTP figures (POST deposit and GET account through gunicorn) are bench/api_bench.py's.

Run: ``make bench`` or ``.venv/bin/python bench/command_bench.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from common import (
    ADMIN_URL,
    BENCH_DB,
    PG_HOST,
    PG_PORT,
    PG_USER,
    Result,
    recreate_database,
    run_commands,
    setup_django,
)

ACCOUNTS = 500
DEPOSITS = 2000
HOT_DEPOSITS = 800
LONG_STREAM = 10_000
LOADS = 30

# --- contenders: ours -----------------------------------------------------------------


class Ours:
    name = "ledgerline (bank.services.deposit)"

    def __init__(self) -> None:
        from bank.services import Actor
        from bank.services import accounts as svc

        self.svc, self.actor = svc, Actor.system("bench")
        self.ids = [self.open() for _ in range(ACCOUNTS)]
        self.hot = self.open()

    def open(self) -> uuid.UUID:
        return self.svc.open_account(
            holder_name="Bench Holder", initial_balance_cents=1000, actor=self.actor
        ).id

    def deposit(self, account_id: uuid.UUID) -> None:
        self.svc.deposit(account_id=account_id, amount_cents=100, actor=self.actor)

    def stored(self, account_id: uuid.UUID) -> int:
        return self.svc.account_version(account_id)

    def thread_end(self) -> None:
        from django.db import connections

        connections.close_all()


class OursUnsigned(Ours):
    """The same command path with the Ed25519 work taken out: every append and snapshot
    gets a constant stand-in signature and snapshot checks pass without verifying. Only
    here, to price signing (issue 14: at most 5% of the throughput)."""

    name = "ledgerline, signing off (baseline)"

    def __init__(self) -> None:
        from eventstore.signing import Keyring

        class NoSigning(Keyring):
            def sign(self, message: bytes) -> tuple[str, str]:
                return "bench-unsigned", "A" * 86 + "=="

            def verify(self, key_id: str, signature: str, message: bytes) -> bool:
                return True

        self.no_signing = NoSigning(None, None, {})
        with self.context():
            super().__init__()

    def context(self):
        from eventstore.signing import keyring_override

        return keyring_override(self.no_signing)


# --- contenders: raw psycopg ----------------------------------------------------------

RAW_SCHEMA = """
DROP TABLE IF EXISTS raw_events, raw_snapshots;
CREATE TABLE raw_events (
    position bigserial PRIMARY KEY,
    stream_id uuid NOT NULL,
    version integer NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE TABLE raw_snapshots (
    stream_id uuid NOT NULL,
    version integer NOT NULL,
    state jsonb NOT NULL,
    PRIMARY KEY (stream_id, version)
);
"""
RAW_LOAD = "SELECT version, data FROM raw_events WHERE stream_id = %s ORDER BY version"
RAW_INSERT = (
    "INSERT INTO raw_events (stream_id, version, event_type, data, metadata, occurred_at) "
    "SELECT %s, %s, 'MoneyDeposited', %s, %s, %s "
    "WHERE (SELECT COALESCE(MAX(version), 0) FROM raw_events WHERE stream_id = %s) = %s"
)


class Raw:
    """A plain psycopg client: fold the events, INSERT guarded by the expected version."""

    name = "raw psycopg, 2 round trips (autocommit)"
    locked = False

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.types.json import Jsonb

        self.psycopg, self.Jsonb, self.url = psycopg, Jsonb, url
        self.local = threading.local()
        self.conflicts = 0
        if not self.locked:  # one schema for both raw clients (each with its own streams)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(RAW_SCHEMA)
        self.ids = [self.open() for _ in range(ACCOUNTS)]
        self.hot = self.open()

    def conn(self):
        if not hasattr(self.local, "conn"):
            self.local.conn = self.psycopg.connect(self.url, autocommit=not self.locked)
        return self.local.conn

    def open(self) -> uuid.UUID:
        stream = uuid.uuid4()
        with self.psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                RAW_INSERT,
                (
                    stream,
                    1,
                    self.Jsonb({"initial_balance_cents": 1000, "holder_name": "Bench"}),
                    self.Jsonb({"actor": "bench"}),
                    datetime.now(UTC),
                    stream,
                    0,
                ),
            )
        return stream

    def deposit(self, stream: uuid.UUID) -> None:
        conn = self.conn()
        while True:
            rows = conn.execute(RAW_LOAD, (stream,)).fetchall()
            balance = sum(
                d.get("amount_cents", d.get("initial_balance_cents", 0)) for _, d in rows
            )
            assert balance >= 0
            version = rows[-1][0]
            try:
                cursor = conn.execute(
                    RAW_INSERT,
                    (
                        stream,
                        version + 1,
                        self.Jsonb({"amount_cents": 100, "description": ""}),
                        self.Jsonb({"actor": "bench"}),
                        datetime.now(UTC),
                        stream,
                        version,
                    ),
                )
                if cursor.rowcount == 1:
                    return
            except self.psycopg.errors.UniqueViolation:
                pass
            self.conflicts += 1

    def stored(self, stream: uuid.UUID) -> int:
        with self.psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT MAX(version) FROM raw_events WHERE stream_id = %s", (stream,)
            ).fetchone()[0]

    def thread_end(self) -> None:
        if hasattr(self.local, "conn"):
            self.local.conn.close()
            del self.local.conn


class RawLocked(Raw):
    """The simplest gap-free global order: one advisory lock held to commit by each writer."""

    name = "raw psycopg + advisory lock (gap-free)"
    locked = True

    def deposit(self, stream: uuid.UUID) -> None:
        conn = self.conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(1)")
            rows = conn.execute(RAW_LOAD, (stream,)).fetchall()
            balance = sum(
                d.get("amount_cents", d.get("initial_balance_cents", 0)) for _, d in rows
            )
            assert balance >= 0
            conn.execute(
                RAW_INSERT,
                (
                    stream,
                    rows[-1][0] + 1,
                    self.Jsonb({"amount_cents": 100, "description": ""}),
                    self.Jsonb({"actor": "bench"}),
                    datetime.now(UTC),
                    stream,
                    rows[-1][0],
                ),
            )


# --- contenders: the eventsourcing library --------------------------------------------


@functools.cache
def peer_classes():
    """The peer's aggregate and applications, defined once (it registers classes by name)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Account(Aggregate):
        @event("Opened")
        def __init__(self, balance_cents: int) -> None:
            self.balance_cents = balance_cents

        @event("Deposited")
        def deposit(self, amount_cents: int) -> None:
            if amount_cents <= 0:
                raise ValueError("amount must be positive")
            self.balance_cents += amount_cents

    class Bank(Application):
        pass

    class SnapshottingBank(Application):
        snapshotting_intervals = {Account: 100}

    return Account, Bank, SnapshottingBank


def peer_app(cls, database: str, pool: int = 6):
    recreate_database(database)
    return cls(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": database,
            "POSTGRES_HOST": PG_HOST,
            "POSTGRES_PORT": PG_PORT,
            "POSTGRES_USER": PG_USER,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_POOL_SIZE": str(pool),
            "CREATE_TABLE": "y",
        }
    )


class Peer:
    def __init__(self, snapshots: bool) -> None:
        from eventsourcing.persistence import IntegrityError

        self.IntegrityError = IntegrityError
        Account, Bank, SnapshottingBank = peer_classes()
        self.Account = Account
        self.name = "eventsourcing 9.5" + (" + snapshots/100" if snapshots else "")
        self.app = peer_app(
            SnapshottingBank if snapshots else Bank,
            f"{BENCH_DB}_peer_{'snap' if snapshots else 'plain'}",
        )
        self.ids = [self.open() for _ in range(ACCOUNTS)]
        self.hot = self.open()
        self.conflicts = 0

    def open(self) -> uuid.UUID:
        account = self.Account(balance_cents=1000)
        self.app.save(account)
        return account.id

    def deposit(self, account_id: uuid.UUID) -> None:
        while True:
            account = self.app.repository.get(account_id)
            account.deposit(100)
            try:
                self.app.save(account)
                return
            except self.IntegrityError:
                self.conflicts += 1

    def stored(self, account_id: uuid.UUID) -> int:
        return self.app.repository.get(account_id).version

    def thread_end(self) -> None:
        pass


# --- 1. deposits ----------------------------------------------------------------------


def deposit_workloads(contenders: list, rounds: int) -> None:
    workloads: list[tuple[str, int, Callable[[object, int], uuid.UUID], int]] = [
        ("sequential, 500 accounts", 1, lambda c, k: c.ids[k % ACCOUNTS], DEPOSITS),
        ("4 threads, 500 accounts", 4, lambda c, k: c.ids[k % ACCOUNTS], DEPOSITS),
        ("4 threads, one hot account", 4, lambda c, k: c.hot, HOT_DEPOSITS),
    ]
    for title, threads, pick, count in workloads:
        results: dict[str, list[Result]] = {c.name: [] for c in contenders}
        for _ in range(rounds):
            for c in contenders:
                if "hot" in title:  # a fresh hot account each round: one history length
                    with getattr(c, "context", contextlib.nullcontext)():
                        c.hot = c.open()
                before = c.stored(c.hot)
                targets = [pick(c, k) for k in range(count)]
                work = [(lambda c=c, a=a: c.deposit(a)) for a in targets]
                with getattr(c, "context", contextlib.nullcontext)():
                    result = run_commands(c.name, threads, work, per_thread_end=c.thread_end)
                results[c.name].append(result)
                if "hot" in title:
                    stored = c.stored(c.hot) - before
                    assert stored == count, f"{c.name}: {stored} of {count} hot deposits stored"
        print_ratios(f"Deposits, {title} ({count} per round)", results, contenders)


def print_ratios(title: str, results: dict[str, list[Result]], contenders: list) -> None:
    medians = {
        name: sorted(runs, key=lambda r: r.rate)[len(runs) // 2] for name, runs in results.items()
    }
    ours = medians[contenders[0].name]
    print(f"\n{title}")
    header = f"{'contender':<44} {'deposits/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'ours vs it':>10}"
    print(header)
    print("-" * len(header))
    for c in contenders:
        r = medians[c.name]
        ratio = "" if r is ours else f"{ours.rate / r.rate:.2f}x"
        print(f"{c.name:<44} {r.rate:>10,.0f} {r.pct(50):>7.2f} {r.pct(99):>7.2f} {ratio:>10}")
    unsigned = [c for c in contenders if isinstance(c, OursUnsigned)]
    if unsigned:
        base = medians[unsigned[0].name]
        print(
            f"signing costs {100 * (1 - ours.rate / base.rate):.1f}% of the throughput "
            "(issue 14's limit: 5%)"
        )


# --- 2. loading a long account --------------------------------------------------------


def interleaved_ms(calls: dict[str, Callable[[], object]], times: int = LOADS) -> dict[str, float]:
    """Median time of each call, the calls taking turns (so drift hits all alike)."""
    for call in calls.values():
        call()  # warm: connections, prepared statements
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(times):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) * 1000 for name, s in samples.items()}


def long_account_loads(raw: Raw, peer_plain: Peer, peer_snap: Peer) -> None:
    import eventstore as es
    from bank.domain import Account
    from bank.services import accounts as svc

    now = datetime.now(UTC)
    ids = {}
    for kind, total in (("full", LONG_STREAM), ("snapshot", LONG_STREAM + 50)):
        account = Account.open(
            uuid.uuid4(), holder_name="Long", currency="EUR", initial_balance_cents=0
        )
        for _ in range(total - 1):
            account.deposit(100, "")
            if kind == "snapshot" and account.version == LONG_STREAM:
                snapshot = account.to_snapshot()
        es.append(
            account.id,
            [
                es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=now)
                for e in account.collect_events()
            ],
            stream_type=svc.STREAM_TYPE,
            expected_version=0,
            metadata={"actor": {"username": "bench"}},
        )
        if kind == "snapshot":
            es.save_snapshot(
                account.id,
                stream_type=svc.STREAM_TYPE,
                version=snapshot.version,
                schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
                state=snapshot.state,
            )
        ids[kind] = account.id
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    # raw: the same events in its own tables, a snapshot row for the second stream
    import psycopg
    from psycopg.types.json import Jsonb

    raw_ids = {"full": uuid.uuid4(), "snapshot": uuid.uuid4()}
    with psycopg.connect(raw.url) as conn:
        for kind, stream in raw_ids.items():
            total = LONG_STREAM + (50 if kind == "snapshot" else 0)
            with conn.cursor().copy(
                "COPY raw_events (stream_id, version, event_type, data, metadata, occurred_at) "
                "FROM STDIN"
            ) as copy:
                for v in range(1, total + 1):
                    copy.write_row(
                        (
                            stream,
                            v,
                            "MoneyDeposited",
                            '{"amount_cents": 100, "description": ""}',
                            '{"actor": "bench"}',
                            now,
                        )
                    )
            if kind == "snapshot":
                conn.execute(
                    "INSERT INTO raw_snapshots VALUES (%s, %s, %s)",
                    (stream, LONG_STREAM, Jsonb({"balance_cents": 100 * (LONG_STREAM - 1)})),
                )
        conn.commit()

    def raw_full() -> int:
        conn = raw.conn()
        rows = conn.execute(RAW_LOAD, (raw_ids["full"],)).fetchall()
        return sum(d["amount_cents"] for _, d in rows)

    def raw_snapshot() -> int:
        conn = raw.conn()
        version, state = conn.execute(
            "SELECT version, state FROM raw_snapshots WHERE stream_id = %s "
            "ORDER BY version DESC LIMIT 1",
            (raw_ids["snapshot"],),
        ).fetchone()
        rows = conn.execute(
            "SELECT version, data FROM raw_events WHERE stream_id = %s AND version > %s "
            "ORDER BY version",
            (raw_ids["snapshot"], version),
        ).fetchall()
        return state["balance_cents"] + sum(d["amount_cents"] for _, d in rows)

    # eventsourcing: the same number of events per aggregate
    peer_ids = {}
    for kind, peer in (("full", peer_plain), ("snapshot", peer_snap)):
        account = peer.Account(balance_cents=0)
        for _ in range(LONG_STREAM - 1 + (50 if kind == "snapshot" else 0)):
            account.deposit(100)
        peer.app.save(account)
        if kind == "snapshot":  # its snapshotting may have taken this one in save()
            with contextlib.suppress(peer.IntegrityError):
                peer.app.take_snapshot(account.id, version=LONG_STREAM)
        peer_ids[kind] = account.id

    rows = []
    for kind in ("full", "snapshot"):
        peer = peer_plain if kind == "full" else peer_snap
        ms = interleaved_ms(
            {
                "ours": lambda k=kind: svc.get_account(ids[k]),
                "raw": raw_full if kind == "full" else raw_snapshot,
                "peer": lambda k=kind, p=peer: p.app.repository.get(peer_ids[k]),
            }
        )
        rows.append((kind, ms["ours"], ms["raw"], ms["peer"]))
    print(
        f"\nLoading one account of {LONG_STREAM:,} events (median of {LOADS} loads taking "
        "turns, ms)"
    )
    header = (
        f"{'load':<34} {'ours':>8} {'raw':>8} {'eventsourcing':>14} "
        f"{'ours/raw time':>14} {'ours/es time':>13}"
    )
    print(header)
    print("-" * len(header))
    for kind, ours, raw_ms, peer_ms in rows:
        label = "in full" if kind == "full" else "through a snapshot (+50 events)"
        print(
            f"{label:<34} {ours:>8.2f} {raw_ms:>8.2f} {peer_ms:>14.2f} "
            f"{ours / raw_ms:>13.2f}x {ours / peer_ms:>12.2f}x"
        )


# --- 3. the global order --------------------------------------------------------------

RAW_READ = (
    "SELECT position, event_id, stream_id, stream_type, version, event_type, schema_version, "
    "data, metadata, occurred_at, recorded_at, commit_id, hash FROM events "
    "WHERE position > %s ORDER BY position LIMIT %s"
)


def global_order(url: str, rounds: int) -> None:
    import psycopg
    from django.core.management import call_command
    from django.db import connection
    from projection_bench import build_store

    import eventstore as es

    total = build_store(1000, 100)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE events")

    def ours() -> int:
        position, count = 0, 0
        while batch := es.read_all(after_position=position, limit=1000):
            position, count = batch[-1].position, count + len(batch)
        return count

    raw_conn = psycopg.connect(url, autocommit=True)

    def raw() -> int:
        position, count = 0, 0
        while rows := raw_conn.execute(RAW_READ, (position, 1000)).fetchall():
            position, count = rows[-1][0], count + len(rows)
        return count

    Account, Bank, _ = peer_classes()
    app = peer_app(Bank, f"{BENCH_DB}_peer_read")
    made = 0
    while made < total:
        account = Account(balance_cents=0)
        for _ in range(min(99, total - made - 1)):
            account.deposit(100)
        app.save(account)
        made += account.version

    def ours_decoded() -> int:
        position, count = 0, 0
        while batch := es.read_all(after_position=position, limit=1000):
            for event in batch:
                event.data  # noqa: B018 -- what a follower pays to look at each payload
            position, count = batch[-1].position, count + len(batch)
        return count

    def peer() -> int:
        start, count = 1, 0
        while notifications := app.recorder.select_notifications(start=start, limit=1000):
            start, count = notifications[-1].id + 1, count + len(notifications)
        return count

    def peer_decoded() -> int:
        start, count = 1, 0
        to_event = app.mapper.to_domain_event
        while notifications := app.recorder.select_notifications(start=start, limit=1000):
            for notification in notifications:
                to_event(notification)
            start, count = notifications[-1].id + 1, count + len(notifications)
        return count

    def rebuild() -> int:
        call_command("rebuild_projections", verbosity=0)
        return total

    readers = {
        "ours": ours,
        "ours_decoded": ours_decoded,
        "raw": raw,
        "peer": peer,
        "peer_decoded": peer_decoded,
        "rebuild": rebuild,
    }
    timings: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(rounds):
        for name, call in readers.items():
            t0 = time.perf_counter()
            count = call()
            timings[name].append(time.perf_counter() - t0)
            assert count >= total, f"{name} read {count} of {total} events"
    rate = {name: total / statistics.median(t) for name, t in timings.items()}
    print(f"\nThe global order: {total:,} events, batches of 1,000 (median of {rounds} rounds)")
    # Each anchor is compared with the "ours" line of its half of the table.
    header = f"{'reader':<60} {'events/s':>10} {'ours vs it':>10}"
    print(header)
    print("-" * len(header))
    lines = [
        ("ours: eventstore.read_all (payloads decoded when read)", "ours", ""),
        ("raw psycopg SELECT of the same rows and columns, decoded", "raw", "ours"),
        ("eventsourcing select_notifications (payloads as bytes)", "peer", "ours"),
        ("ours: read_all, every payload decoded", "ours_decoded", ""),
        ("raw psycopg SELECT of the same rows and columns, decoded", "raw", "ours_decoded"),
        ("eventsourcing select_notifications + to_domain_event", "peer_decoded", "ours_decoded"),
    ]
    for label, key, versus in lines:
        ratio = f"{rate[versus] / rate[key]:.2f}x" if versus else ""
        print(f"{label:<60} {rate[key]:>10,.0f} {ratio:>10}")
    print(
        f"{'rebuild_projections (balances + history), vs the raw read':<60} "
        f"{rate['rebuild']:>10,.0f} {rate['rebuild'] / rate['raw']:>9.2f}x"
    )
    raw_conn.close()
    app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["deposits", "signing", "loads", "read"],
        default=None,
        help="signing: only ours with and without signing, for the price of signing",
    )
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.conf import settings

    load = os.getloadavg()
    print(
        f"PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; SNAPSHOT_INTERVAL="
        f"{settings.SNAPSHOT_INTERVAL}; prepared statements "
        f"{'on' if settings.EVENTSTORE_PREPARED_STATEMENTS else 'off'}"
    )
    raw = Raw(url)
    if args.only in (None, "deposits", "loads"):
        peer_plain, peer_snap = Peer(snapshots=False), Peer(snapshots=True)
    if args.only == "signing":
        deposit_workloads([Ours(), OursUnsigned()], args.rounds)
    if args.only in (None, "deposits"):
        contenders = [Ours(), OursUnsigned(), raw, RawLocked(url), peer_plain, peer_snap]
        deposit_workloads(contenders, args.rounds)
    if args.only in (None, "loads"):
        long_account_loads(raw, peer_plain, peer_snap)
    if args.only in (None, "read"):
        global_order(url, args.rounds)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
