"""Shared set-up for the benchmarks: a dedicated PostgreSQL database and timing helpers.

Every benchmark measures its baseline in the same run and prints ratios, so the figures
compare like with like on whatever machine runs them.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_DB", "ledgerline_bench")
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BENCH_PG_PORT", "5432")
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
# Production settings (DEBUG off) over plain HTTP on loopback: long throw-away keys, and no
# redirect to HTTPS.
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-not-for-any-real-deployment",
    "EVENTSTORE_SIGNING_KEY": "bench:cQ4BTNmpzwzWd8H+VD0lq8lVa1Hvui4rcjROy6QXCxo=",
    "PII_MASTER_KEYS": "bench:YmVuY2gtb25seS1waWktbWFzdGVyLWtleS0zMmIhISE=",
    "SECURE_SSL_REDIRECT": "false",
}


def recreate_database(name: str) -> str:
    """Drop and create a database on the benchmark server; return its URL."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def setup_django(database_url: str) -> None:
    """Configure Django on the benchmark database (production settings: DEBUG off)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.update(PRODUCTION_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@dataclass
class Result:
    name: str
    commands: int
    seconds: float
    latencies: list[float]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.commands / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


def run_commands(
    name: str, threads: int, work: Sequence[Callable[[], object]], per_thread_end=None
) -> Result:
    """Run callables split over ``threads`` threads; time each one and the whole."""
    chunks = [list(work[i::threads]) for i in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def runner(i: int) -> None:
        try:
            barrier.wait()
            own = latencies[i]
            for call in chunks[i]:
                t0 = time.perf_counter()
                call()
                own.append(time.perf_counter() - t0)
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        finally:
            if per_thread_end is not None:
                per_thread_end()

    pool = [threading.Thread(target=runner, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return Result(name, len(work), elapsed, [x for own in latencies for x in own])


def print_table(title: str, rows: list[Result], baseline: Result | None, peer: Result | None):
    print(f"\n{title}")
    header = f"{'workload':<44} {'commands/s':>11} {'p50 ms':>8} {'p99 ms':>8}"
    header += f" {'vs raw':>7} {'vs peer':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        vs_raw = f"{r.rate / baseline.rate:.2f}x" if baseline else ""
        vs_peer = f"{r.rate / peer.rate:.2f}x" if peer else ""
        print(
            f"{r.name:<44} {r.rate:>11,.0f} {r.pct(50):>8.2f} {r.pct(99):>8.2f} "
            f"{vs_raw:>7} {vs_peer:>8}" + (f"  {r.note}" if r.note else "")
        )


def median(values: list[float]) -> float:
    return statistics.median(values)
