"""Load test of the whole back-office as deployed (issue 8).

gunicorn (sync workers, production settings) on PostgreSQL with ``run_projections`` beside
it, driven from this separate process by a bounded number of concurrent HTTP clients for a
bounded time over a realistic mix: deposits, withdrawals, transfers, account reads,
listings, transaction histories and time-travel queries, over many accounts of which a few
are hot. Loopback only.

It reports throughput, p50/p95/p99 latency per operation and the answers by status, then
checks that nothing was lost: every account's replayed balance equals its read-model
balance, the sum of all balances equals the opening balances plus the acknowledged
deposits minus the acknowledged withdrawals (transfers move money, they do not make it),
and verify_events passes.

Run: ``make load`` or ``.venv/bin/python bench/load_test.py [--clients 32] [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time

from api_bench import free_port, start_server
from api_bench import request as http_request
from common import BENCH_DB, PRODUCTION_ENV, ROOT, recreate_database, setup_django

OPENING_CENTS = 50_000
MIX = (  # operation, weight
    ("deposit", 28),
    ("withdraw", 20),
    ("transfer", 15),
    ("get", 15),
    ("list", 8),
    ("transactions", 7),
    ("time_travel", 7),
)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(
            collections.Counter
        )
        self.deposited = 0
        self.withdrawn = 0

    def record(self, op: str, status: int, seconds: float, deposited=0, withdrawn=0) -> None:
        with self.lock:
            self.latencies[op].append(seconds)
            self.statuses[op][status] += 1
            self.deposited += deposited
            self.withdrawn += withdrawn


def client(n, port, token, ids, hot, deadline, tally: Tally) -> None:
    rng = random.Random(n)
    ops, weights = zip(*MIX, strict=True)

    def pick():
        return rng.choice(hot) if rng.random() < 0.3 else rng.choice(ids)

    while time.monotonic() < deadline:
        op = rng.choices(ops, weights)[0]
        account = pick()
        amount = rng.randint(1, 2_000)
        if op == "deposit":
            request = ("POST", f"/api/accounts/{account}/deposit/", {"amount_cents": amount})
        elif op == "withdraw":
            request = ("POST", f"/api/accounts/{account}/withdraw/", {"amount_cents": amount})
        elif op == "transfer":
            other = pick()
            while other == account:
                other = rng.choice(ids)
            request = (
                "POST",
                "/api/transfers/",
                {"from_account": account, "to_account": other, "amount_cents": amount},
            )
        elif op == "get":
            request = ("GET", f"/api/accounts/{account}/", None)
        elif op == "list":
            request = ("GET", f"/api/accounts/?page_size=50&page={rng.randint(1, 4)}", None)
        elif op == "transactions":
            request = ("GET", f"/api/accounts/{account}/transactions/", None)
        else:
            request = ("GET", f"/api/accounts/{account}/?as_of_version={rng.randint(1, 5)}", None)
        started = time.perf_counter()
        try:
            method, path, body = request
            status = http_request(port, method, path, token, body)
        except OSError:
            status = 0  # connection failed: counted, never hidden
        elapsed = time.perf_counter() - started
        ok = status == 200
        tally.record(
            op,
            status,
            elapsed,
            deposited=amount if ok and op == "deposit" else 0,
            withdrawn=amount if ok and op == "withdraw" else 0,
        )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--hot", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 1 <= args.seconds <= 600:
        sys.exit("--clients must be 1..256 and --seconds 1..600")
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from bank.services import Actor
    from bank.services import accounts as svc
    from projections.models import AccountBalance

    user = User.objects.create_user("load-teller")
    user.groups.add(Group.objects.get(name="tellers"))
    token = Token.objects.create(user=user).key
    system = Actor.system("load")
    print(f"opening {args.accounts} accounts ...", flush=True)
    ids = [
        str(
            svc.open_account(
                holder_name=f"Load {i}", initial_balance_cents=OPENING_CENTS, actor=system
            ).id
        )
        for i in range(args.accounts)
    ]
    hot = ids[: args.hot]
    port = free_port()
    os.environ["LOG_LEVEL"] = "ERROR"  # expected 404s (time travel past the head) stay quiet
    server = start_server(url, port, args.workers)
    follower = subprocess.Popen(
        [sys.executable, "manage.py", "run_projections", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, **PRODUCTION_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tally = Tally()
    try:
        print(
            f"{args.clients} clients for {args.seconds:.0f} s against gunicorn "
            f"({args.workers} workers) with run_projections ...",
            flush=True,
        )
        deadline = time.monotonic() + args.seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(target=client, args=(n, port, token, ids, hot, deadline, tally))
            for n in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        print("waiting for the read models to catch up ...", flush=True)
        wait_until = time.monotonic() + 120
        while time.monotonic() < wait_until:
            status = subprocess.run(
                [sys.executable, "manage.py", "projection_status", "--max-lag-events", "0"],
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": url, **PRODUCTION_ENV},
                capture_output=True,
            )
            if status.returncode == 0:
                break
            time.sleep(0.5)
    finally:
        for process in (follower, server):
            process.send_signal(signal.SIGTERM)
            process.wait(30)

    total = sum(len(v) for v in tally.latencies.values())
    print(f"\n{total:,} requests in {elapsed:.1f} s: {total / elapsed:,.0f} requests/s")
    print(f"{'operation':<14} {'count':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses")
    for op, _ in MIX:
        values = tally.latencies[op]
        if not values:
            continue
        statuses = ", ".join(f"{s}: {c}" for s, c in sorted(tally.statuses[op].items()))
        print(
            f"{op:<14} {len(values):>7} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f} "
            f"{pct(values, 99):>8.1f}  {statuses}"
        )
    errors = collections.Counter()
    for counter in tally.statuses.values():
        for status, count in counter.items():
            if status >= 500 or status == 0:
                errors[status] += count

    failures = []
    replayed = {i: svc.get_account(i).balance_cents for i in ids}
    read_model = {
        str(r.account_id): r.balance_cents for r in AccountBalance.objects.filter(pk__in=ids)
    }
    mismatched = [i for i in ids if replayed[i] != read_model.get(i)]
    if mismatched:
        failures.append(f"{len(mismatched)} accounts' read model differs from the replay")
    expected_total = OPENING_CENTS * len(ids) + tally.deposited - tally.withdrawn
    if sum(replayed.values()) != expected_total:
        failures.append(
            f"sum of balances {sum(replayed.values())} != opening + deposits - withdrawals "
            f"{expected_total}"
        )
    report = None
    try:
        call_command("verify_events", verbosity=0)
        report = "passed"
    except Exception as exc:  # noqa: BLE001 - reported as a failure below
        failures.append(f"verify_events failed: {exc}")
    if errors:
        failures.append(f"server errors or failed connections: {dict(errors)}")
    print(
        f"\nchecks: replayed == read model for {len(ids) - len(mismatched)}/{len(ids)} accounts; "
        f"sum of balances {sum(replayed.values()):,} vs expected {expected_total:,}; "
        f"verify_events {report or 'FAILED'}; 5xx/connection errors: {sum(errors.values())}"
    )
    if failures:
        sys.exit("LOAD TEST FAILED: " + "; ".join(failures))
    print("load test passed")


if __name__ == "__main__":
    main()
