"""The same user-facing figures for two revisions of the code, in ONE run (issue 16).

A refactoring must not cost speed. This checks out a base revision (``git worktree``, in
a temporary directory) beside the working tree and measures both, interleaved round by
round, each round in fresh processes on a fresh PostgreSQL database:

* account openings through the services (``open_account``: the holder's name encrypted
  under a new data key since issue 20);
* deposits through the services (``bank.services.accounts.deposit``: load, rules, append,
  a snapshot every SNAPSHOT_INTERVAL), sequentially over 100 accounts, with the holders'
  keys cached and, since issue 20, with none cached (each deposit reads its holder's key);
* loading a 2,000-event account through its snapshot (``get_account``), and the same
  account's state at version 1,000 (time travel, ``account_at``);
* ``rebuild_projections`` (balances and history) over the events those made, in events/s;
  and again over a larger store (``--rebuild-events``, default 60,000: the same accounts'
  deposits, appended in bulk), where the rebuild's fixed costs weigh less; and that one in
  place (``--in-place``, what every rebuild did before issue 18), the read models' own work.

Each figure is the median of the rounds; the table prints the working tree's figure as a
ratio to the base's (higher is better for rates, lower for times).

Run: ``.venv/bin/python bench/revisions_bench.py [--base REV] [--rounds N]``
(default base: the commit before the working tree's ``HEAD``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH_DB, PRODUCTION_ENV, ROOT, recreate_database

FIGURES = (
    ("opens/s", "opens_per_s", True),
    ("deposits/s", "deposits_per_s", True),
    ("deposits/s, holder key not cached", "cold_deposits_per_s", True),
    ("load via snapshot (ms)", "load_ms", False),
    ("time travel (ms)", "travel_ms", False),
    ("rebuild (events/s)", "rebuild_per_s", True),
    ("rebuild, larger store (events/s)", "large_rebuild_per_s", True),
    ("the same in place (events/s)", "in_place_per_s", True),
)


def worker(deposits: int, rebuild_events: int) -> None:
    """In a child process whose cwd is the checkout to measure: print its figures as JSON."""
    sys.path.insert(0, os.getcwd())
    os.environ.update(PRODUCTION_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bank.services import Actor
    from bank.services import accounts as svc

    actor = Actor.system("bench")
    for i in range(50):  # warm-up
        svc.open_account(holder_name=f"Warm {i}", actor=actor)
    started = time.perf_counter()
    ids = [svc.open_account(holder_name=f"R{i}", actor=actor).id for i in range(300)][:100]
    opens_per_s = 300 / (time.perf_counter() - started)
    for i in range(200):  # warm-up
        svc.deposit(account_id=ids[i % 100], amount_cents=1, actor=actor)
    started = time.perf_counter()
    for i in range(deposits):
        svc.deposit(account_id=ids[i % 100], amount_cents=1, actor=actor)
    deposits_per_s = deposits / (time.perf_counter() - started)
    # The worst case of personal-data encryption (issue 20): every deposit reads its
    # holder's key (a process that has not seen the holder within PII_KEY_CACHE_SECONDS).
    # A revision without it has no key to read: the same deposits.
    try:
        from bank.services.encryption import forget_cached_keys
    except ImportError:

        def forget_cached_keys() -> None:
            return None

    started = time.perf_counter()
    for i in range(deposits):
        forget_cached_keys()
        svc.deposit(account_id=ids[i % 100], amount_cents=1, actor=actor)
    cold_deposits_per_s = deposits / (time.perf_counter() - started)

    long = svc.open_account(holder_name="Long", actor=actor).id
    for _ in range(1999):
        svc.deposit(account_id=long, amount_cents=1, actor=actor)

    def best_ms(call: object, times: int = 30) -> float:
        samples = []
        for _ in range(times):
            started = time.perf_counter()
            call()  # type: ignore[operator]
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    load_ms = best_ms(lambda: svc.get_account(long))
    travel_ms = best_ms(lambda: svc.account_at(long, version=1000))

    from io import StringIO

    import eventstore as es

    events = es.head_position()
    started = time.perf_counter()
    call_command("rebuild_projections", stdout=StringIO(), stderr=StringIO())
    rebuild_per_s = events / (time.perf_counter() - started)

    # A rebuild's fixed costs (since issue 18 it builds aside and swaps, and analyzes what it
    # built) weigh on a store this small; the same rebuild over a larger one shows the cost
    # per event. The extra deposits are appended in bulk (the same events the service
    # writes, 100 per append), which is quicker to set up than commands.
    from django.utils import timezone

    now = timezone.now()
    versions = {account: es.stream_version(account) for account in ids}
    while es.head_position() < rebuild_events:
        for account in ids:
            batch = [
                es.NewEvent(
                    event_type="MoneyDeposited",
                    data={"amount_cents": 1, "description": "bulk"},
                    occurred_at=now,
                )
                for _ in range(100)
            ]
            es.append(
                account, batch, stream_type="bank.account", expected_version=versions[account]
            )
            versions[account] += 100
    events = es.head_position()
    started = time.perf_counter()
    call_command("rebuild_projections", stdout=StringIO(), stderr=StringIO())
    large_rebuild_per_s = events / (time.perf_counter() - started)
    # In place, as every rebuild was before issue 18 (a revision without the option
    # rebuilds in place anyway): the read models' own work per event, without the aside
    # rebuild's table copies, analyses and swap.
    started = time.perf_counter()
    try:
        call_command("rebuild_projections", in_place=True, stdout=StringIO(), stderr=StringIO())
    except TypeError:  # "Unknown option(s)": a revision from before issue 18
        call_command("rebuild_projections", stdout=StringIO(), stderr=StringIO())
    in_place_per_s = events / (time.perf_counter() - started)
    print(
        json.dumps(
            {
                "opens_per_s": opens_per_s,
                "deposits_per_s": deposits_per_s,
                "cold_deposits_per_s": cold_deposits_per_s,
                "load_ms": load_ms,
                "travel_ms": travel_ms,
                "rebuild_per_s": rebuild_per_s,
                "large_rebuild_per_s": large_rebuild_per_s,
                "in_place_per_s": in_place_per_s,
                "large_rebuild_events": events,
            }
        )
    )


def measure(checkout: Path, deposits: int, rebuild_events: int) -> dict[str, float]:
    url = recreate_database(BENCH_DB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(DATABASE_URL=url, PYTHONPATH=str(checkout))
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--deposits",
            str(deposits),
            "--rebuild-events",
            str(rebuild_events),
        ],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit(f"the benchmark failed in {checkout}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deposits", type=int, default=3000)
    parser.add_argument(
        "--rebuild-events", type=int, default=60_000, help="the larger store's events"
    )
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args.deposits, args.rebuild_events)
        return
    base = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True
    )
    if base.returncode:
        sys.exit(f"{args.base!r} is not a revision of this repository: {base.stderr.strip()}")
    revision = base.stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        checkout = Path(tmp) / revision
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(checkout), revision],
            cwd=ROOT,
            check=True,
        )
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "work": []}
            for number in range(args.rounds):
                for name, where in (("base", checkout), ("work", ROOT)):
                    print(f"round {number + 1}/{args.rounds}: {name}", file=sys.stderr)
                    runs[name].append(measure(where, args.deposits, args.rebuild_events))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False
            )
    print(
        f"\nThe working tree beside {revision}, median of {args.rounds} interleaved rounds "
        f"({args.deposits} deposits per round, a larger store of "
        f"{int(runs['work'][0]['large_rebuild_events']):,} events, PostgreSQL)"
    )
    print(f"{'figure':<24} {revision:>10} {'working':>10} {'ratio':>7}")
    for label, key, higher_is_better in FIGURES:
        then = statistics.median(r[key] for r in runs["base"])
        now = statistics.median(r[key] for r in runs["work"])
        better = "better" if (now > then) == higher_is_better else "worse"
        print(f"{label:<24} {then:>10,.2f} {now:>10,.2f} {now / then:>6.2f}x ({better})")


if __name__ == "__main__":
    main()
