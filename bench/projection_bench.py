"""Projection rebuild rate and follow latency on PostgreSQL (issue 5's benchmark).

1. A store of 200,000+ events (2,000 accounts: deposits, withdrawals, transfers).
2. Reading every event in global order with raw psycopg (server-side cursor): the baseline.
3. ``rebuild_projections`` (balances and history): events of the store per second.
4. With ``run_projections`` running beside it, the latency from a committed deposit to the
   balance read model showing it (p50/p99 over 300 deposits).

Run: ``make bench`` or ``.venv/bin/python bench/projection_bench.py [--accounts N]``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

from common import BENCH_DB, PRODUCTION_ENV, ROOT, Result, recreate_database, setup_django


def build_store(accounts: int, events_each: int) -> int:
    import eventstore as es
    from bank.domain import Account, DomainError
    from bank.services.accounts import STREAM_TYPE

    rng = random.Random(5)
    now = datetime.now(UTC)
    built = []
    for i in range(accounts):
        account = Account.open(
            uuid.uuid4(), holder_name=f"Holder {i}", currency="EUR", initial_balance_cents=100_000
        )
        for _ in range(events_each - 1):
            try:
                if rng.random() < 0.6:
                    account.deposit(rng.randint(1, 5_000), "deposit")
                else:
                    account.withdraw(rng.randint(1, 5_000), "withdrawal")
            except DomainError:
                account.deposit(10_000, "top-up")
        es.append(
            account.id,
            [
                es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=now)
                for e in account.collect_events()
            ],
            stream_type=STREAM_TYPE,
            expected_version=0,
            metadata={"actor": {"username": "bench"}},
        )
        built.append(account)
    # Transfers between random pairs: two-stream appends, as the services write them.
    from bank.services import Actor
    from bank.services import accounts as svc

    for _ in range(accounts // 2):
        a, b = rng.sample(built, 2)
        svc.transfer(
            from_account=a.id, to_account=b.id, amount_cents=100, actor=Actor.system("bench")
        )
    return es.count_after(0)


def raw_read(url: str) -> tuple[int, float]:
    import psycopg

    t0 = time.perf_counter()
    count = 0
    with psycopg.connect(url) as conn, conn.cursor(name="bench_read") as cursor:
        cursor.itersize = 5000
        cursor.execute("SELECT * FROM events ORDER BY position")
        while rows := cursor.fetchmany(5000):
            count += len(rows)
    return count, time.perf_counter() - t0


def rebuild() -> float:
    from django.core.management import call_command

    t0 = time.perf_counter()
    call_command("rebuild_projections", verbosity=0)
    return time.perf_counter() - t0


def follow_latency(url: str, deposits: int) -> Result:
    from django.db import connection

    from bank.services import Actor
    from bank.services import accounts as svc
    from projections.models import AccountBalance

    env = {**os.environ, "DATABASE_URL": url, **PRODUCTION_ENV}
    follower = subprocess.Popen(
        [sys.executable, "manage.py", "run_projections", "--poll-interval", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        actor = Actor.system("bench")
        account = svc.open_account(holder_name="Latency", actor=actor)
        deadline = time.monotonic() + 30
        while not AccountBalance.objects.filter(pk=account.id).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "run_projections did not start: " + follower.stderr.read1().decode()
                )
            time.sleep(0.01)
        latencies = []
        for _ in range(deposits):
            state = svc.deposit(account_id=account.id, amount_cents=1, actor=actor)
            t0 = time.perf_counter()
            with connection.cursor() as cursor:
                while True:
                    cursor.execute(
                        "SELECT version FROM read_account_balances WHERE account_id = %s",
                        [account.id],
                    )
                    if cursor.fetchone()[0] >= state.version:
                        break
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.005)
        return Result("append to balance read model", deposits, sum(latencies), latencies)
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--events-each", type=int, default=100)
    parser.add_argument("--deposits", type=int, default=300)
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.db import connection

    total = build_store(args.accounts, args.events_each)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    count, raw_seconds = raw_read(url)
    assert count == total
    seconds = rebuild()
    raw_rate, rate = total / raw_seconds, total / seconds
    print(f"\nStore: {total:,} events over {args.accounts:,} accounts")
    print(f"{'workload':<48} {'events/s':>10} {'seconds':>8}")
    print(f"{'raw psycopg read in global order':<48} {raw_rate:>10,.0f} {raw_seconds:>8.2f}")
    print(f"{'rebuild_projections (balances + transactions)':<48} {rate:>10,.0f} {seconds:>8.2f}")
    print(f"rebuild / raw read: {rate / raw_rate:.2f}x (target: at least 0.25x)")
    lat = follow_latency(url, args.deposits)
    print(
        f"\nrun_projections: committed deposit -> balance read model, {args.deposits} deposits: "
        f"p50 {lat.pct(50):.1f} ms, p99 {lat.pct(99):.1f} ms"
    )


if __name__ == "__main__":
    main()
