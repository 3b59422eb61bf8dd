"""Account loading and a hot account on PostgreSQL (issue 3's benchmark).

1. Load accounts of 10, 1,000, 10,000 and 100,000 events through the services, with
   snapshots (every 100 events, the default interval) and without.
2. Replay rate without snapshots, next to folding the same rows fetched with raw psycopg
   into the same domain aggregate in the same run.
3. A hot account: 4 threads depositing into ONE account through the services, 2,000
   deposits in all, next to the ``eventsourcing`` library doing the same work.

Run: ``make bench`` or ``.venv/bin/python bench/load_bench.py [--peer-deposits N]``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime

from common import (
    BENCH_DB,
    PG_HOST,
    PG_PORT,
    PG_USER,
    recreate_database,
    run_commands,
    setup_django,
)

SIZES = (10, 1_000, 10_000, 100_000)
INTERVAL = 100


def build(size: int, *, snapshots: bool) -> uuid.UUID:
    """Write an account of ``size`` events straight through the store, in big appends."""
    import eventstore as es
    from bank.domain import Account
    from bank.services.accounts import STREAM_TYPE

    account_id = uuid.uuid4()
    account = Account.open(account_id, holder_name="Bench", currency="EUR")
    head: es.StreamHead | int = 0
    while account.version < size:
        due = []
        for _ in range(min(1000, size - account.version - len(account.pending_events))):
            account.deposit(1, "d")
            if account.version % INTERVAL == 0:
                due.append(account.to_snapshot())
        events = account.collect_events()
        now = datetime.now(UTC)
        es.append(
            account_id,
            [
                es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=now)
                for e in events
            ],
            stream_type=STREAM_TYPE,
            expected_version=head,
        )
        head = account.version
        if snapshots:
            for snap in due:
                es.save_snapshot(
                    account_id,
                    stream_type=STREAM_TYPE,
                    version=snap.version,
                    schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
                    state=snap.state,
                )
    return account_id


def timed(call, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def raw_fold(url: str, account_id: uuid.UUID) -> int:
    import json

    import psycopg

    from bank.domain import Account, event_from_data

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_type, data FROM events WHERE stream_id = %s ORDER BY version",
            (account_id,),
        ).fetchall()
    account = Account.from_events(
        account_id,
        (event_from_data(t, d if isinstance(d, dict) else json.loads(d)) for t, d in rows),
    )
    return account.version


def loading(url: str) -> None:
    from bank.services import accounts as svc

    print("\nLoading an account through the services (median of repeated loads)")
    print(f"{'events':>8} {'with snapshots ms':>18} {'without ms':>12} {'replay events/s':>16}")
    from django.db import connection

    built = {size: (build(size, snapshots=True), build(size, snapshots=False)) for size in SIZES}
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have by now on a live system
    with_snap = {}
    results = {}
    for size in SIZES:
        a, b = built[size]
        repeat = 30 if size <= 1000 else (10 if size <= 10_000 else 3)
        t_with = timed(lambda a=a: svc.get_account(a), 50)
        t_without = timed(lambda b=b: svc.get_account(b), repeat)
        assert svc.get_account(a).balance_cents == svc.get_account(b).balance_cents == size - 1
        with_snap[size] = t_with
        results[size] = (b, t_without)
        print(
            f"{size:>8,} {t_with * 1000:>18.2f} {t_without * 1000:>12.2f} {size / t_without:>16,.0f}"
        )
    ratio = with_snap[SIZES[-1]] / with_snap[SIZES[0]]
    print(
        f"with snapshots, {SIZES[-1]:,} events vs {SIZES[0]} events: {ratio:.2f}x the time "
        "(target: at most 2x)"
    )
    big, t_ours = results[SIZES[-1]]
    t_raw = timed(lambda: raw_fold(url, big), 3)
    print(
        f"replay without snapshots, {SIZES[-1]:,} events: services {SIZES[-1] / t_ours:,.0f} "
        f"events/s, raw psycopg + same fold {SIZES[-1] / t_raw:,.0f} events/s: "
        f"{t_raw / t_ours:.2f}x (target: at least 0.5x)"
    )


def hot_account(deposits: int, peer_deposits: int) -> None:
    from django.db import connections

    from bank.services import Actor
    from bank.services import accounts as svc

    actor = Actor.system("bench")
    account = svc.open_account(holder_name="Hot", actor=actor)
    work = [lambda: svc.deposit(account_id=account.id, amount_cents=1, actor=actor)] * deposits
    ours = run_commands(
        "services, 4 threads, one account", 4, work, per_thread_end=connections.close_all
    )
    final = svc.get_account(account.id)
    assert final.balance_cents == deposits, f"lost deposits: {final.balance_cents} != {deposits}"
    print(f"\nHot account: 4 threads, {deposits} deposits into one account")
    print(
        f"  services: {ours.rate:,.0f} commands/s, p50 {ours.pct(50):.2f} ms, "
        f"p99 {ours.pct(99):.2f} ms; balance {final.balance_cents} = {deposits} deposits, none lost"
    )
    peer = peer_hot_account(peer_deposits)
    if peer is not None:
        rate, balance = peer
        print(
            f"  eventsourcing: {rate:,.1f} commands/s over {peer_deposits} deposits "
            f"(balance {balance}); services are {ours.rate / rate:,.1f}x (target: at least 20x)"
        )


def peer_hot_account(deposits: int):
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
        from eventsourcing.persistence import IntegrityError as PeerIntegrityError
    except ImportError:
        print("  eventsourcing is not installed (pip install -e '.[bench]'): peer left out")
        return None

    class HotAccount(Aggregate):
        @event("Opened")
        def __init__(self) -> None:
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    name = f"{BENCH_DB}_peer_hot"
    recreate_database(name)
    app = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": name,
            "POSTGRES_HOST": PG_HOST,
            "POSTGRES_PORT": PG_PORT,
            "POSTGRES_USER": PG_USER,
            "POSTGRES_PASSWORD": "",
            "POSTGRES_POOL_SIZE": "4",
            "CREATE_TABLE": "y",
        }
    )
    hot = HotAccount()
    app.save(hot)
    lock = threading.Lock()
    conflicts = [0]

    def deposit() -> None:
        while True:
            account = app.repository.get(hot.id)
            account.deposit(1)
            try:
                app.save(account)
                return
            except PeerIntegrityError:
                with lock:
                    conflicts[0] += 1

    result = run_commands("eventsourcing", 4, [deposit] * deposits)
    balance = app.repository.get(hot.id).balance
    app.close()
    assert balance == deposits
    return result.rate, balance


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deposits", type=int, default=2000)
    parser.add_argument("--peer-deposits", type=int, default=2000)
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    loading(url)
    hot_account(args.deposits, args.peer_deposits)


if __name__ == "__main__":
    main()
