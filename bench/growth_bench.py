"""What the store's growth costs: the same operations on a big store and an empty one (issue 22).

Two scratch databases on the local PostgreSQL, measured in ONE run, round by round (each
round measures the big store, then the empty one; each figure is the median round):

* the big store: ``--events`` events (5,000,000 by default) of many accounts (about 500
  events each: opened through ``bank.services.open_account``, then deposits and
  withdrawals seeded by COPY, shuffled over the whole history) and ``--long`` long accounts
  (``--long-events`` events each, 20,000 by default) spread through the same history;
* the empty store: only the long accounts, seeded by the same code.

Seeding (not timed as part of any figure; shown with its rows/s): the accounts are opened
through the services (the holder's name encrypted under its data key, as the app writes
it); every later event comes from the domain aggregate (``account.deposit`` /
``account.withdraw``, its ``to_data()``), with the metadata a command writes
(``CommandContext.metadata``), is chained with ``eventstore.hashing.event_hash`` and sealed
with the configured Ed25519 key (``eventstore.signing``: the functions the append itself
calls; ``eventstore/__init__.py`` does not re-export them), one event per append as a
command writes it, and written by psycopg's ``cursor.copy``. Each row gets its own
position and a commit id of ``-position`` (a real commit id is a transaction id, never
negative, so no seeded row is taken for part of a real append by ``read_all``); the
identity sequence is then set past the last position, so new appends continue after it.
Snapshots, every ``SNAPSHOT_INTERVAL`` versions of every account, are stored through
``es.save_snapshot`` (signed, anchored, used by loads). Then ``VACUUM ANALYZE``, the read
models by ``rebuild_projections``, and a full ``run_verification`` that must find the
seeded store intact (and records the verified heads, as production has them, so the
audit page checks only what came after).

Measured on both stores (the ratio is the big store's time per operation over the empty
store's; target for the per-command figures: at most 1.2x):

1. a deposit through ``bank.services.deposit`` on fresh accounts (opened in the round, a
   few deposits each) and on a long account (snapshot + tail load, append, a snapshot every
   SNAPSHOT_INTERVAL), sequentially: deposits/s, p50, p99;
2. ``get_account`` of a long account (its newest snapshot and the events after it);
3. time travel: ``account_at(version=...)`` at about a tenth of a long account's history
   (the snapshot below it and 50 events);
4. the audit page of a long account, through Django's test client, an admin logged in (the
   page checks the chain and seals of the 10 events after the recorded verification);
5. ``es.read_all`` of the newest 100,000 events (all of them on the empty store), in
   batches of 1,000 with every payload decoded, as the projections read: events/s;
6. the size of ``events``, ``snapshots`` and the read-model tables, with their indexes.

And the ceiling of the gap-free append: ``es.append`` of one event per call (the command's
one-statement append, its head known) by K = 1, 4, 16 concurrent writers, each on an
account of its own, on both stores: appends/s.

Run: ``make bench-growth`` or ``.venv/bin/python bench/growth_bench.py [--events N]
[--keep]``. It takes minutes (the 5,000,000-event seed most of them); ``--keep`` leaves the
big database in place and reuses it on the next run when it was seeded with the same
arguments.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from common import ADMIN_URL, BENCH_DB, PG_HOST, PG_PORT, PG_USER, Result, run_commands

BIG_DB = f"{BENCH_DB}_growth_big"
EMPTY_DB = f"{BENCH_DB}_growth_empty"
PER_ACCOUNT = 500
NEWEST = 100_000
READ_BATCH = 1000
WRITERS = (1, 4, 16)
META_TABLE = "growth_bench_seed"  # the bench's own note of how a kept database was seeded
SEED_FORMAT = 1
READ_MODEL_TABLES = ("read_account_balances", "read_transaction_history")
DESCRIPTIONS = ("Salary", "Rent", "Groceries", "Card payment", "Transfer in", "ATM", "")
COPY_SQL = (
    "COPY events (position, event_id, stream_id, stream_type, version, event_type, "
    "schema_version, data, metadata, occurred_at, recorded_at, commit_id, hash, signature, "
    "key_id) FROM STDIN"
)


def url_of(name: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def admin_execute(sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def database_exists(name: str) -> bool:
    return bool(admin_execute(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def drop_database(name: str) -> None:
    from django.db import connections

    connections.close_all()
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_database(name: str, *, create: bool = False) -> None:
    """Point Django's default connection (every thread's) at another database."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, connections

    connections.close_all()
    if create:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_execute(f'CREATE DATABASE "{name}"')
    # One dict is shared by the settings and every thread's connection wrapper.
    settings.DATABASES["default"]["NAME"] = name
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == name
    if create:
        call_command("migrate", verbosity=0)


def setup(name: str) -> None:
    """Configure Django (production settings) on ``name``; create it unless it exists."""
    from common import PRODUCTION_ENV

    os.environ["DATABASE_URL"] = url_of(name)
    os.environ.update(PRODUCTION_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    # The admin login's audit trail (django-axes) logs its start and every login at INFO,
    # and the test client runs without collected static files: neither is measured here.
    logging.getLogger("axes").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()


# --- seeding --------------------------------------------------------------------------


class Seeded:
    """What the measurements need to know about a seeded store."""

    def __init__(self, long_ids: list[uuid.UUID], events: int, accounts: int) -> None:
        self.long_ids, self.events, self.accounts = long_ids, events, accounts

    def to_json(self, args_key: dict) -> str:
        return json.dumps(
            {
                **args_key,
                "long_ids": [str(i) for i in self.long_ids],
                "events": self.events,
                "accounts": self.accounts,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Seeded:
        data = json.loads(text)
        return cls([uuid.UUID(i) for i in data["long_ids"]], data["events"], data["accounts"])


def progress(total: int, what: str):
    from tqdm import tqdm

    return tqdm(
        total=total, unit=" " + what, unit_scale=True, file=sys.stderr, disable=None, leave=False
    )


def open_accounts(count: int, opened_at: datetime, actor) -> list[uuid.UUID]:
    from bank.services import accounts as svc

    rng = random.Random(2201)
    ids = []
    with progress(count, "accounts") as bar:
        for i in range(count):
            at = opened_at + timedelta(milliseconds=i)
            ids.append(
                svc.open_account(
                    holder_name=f"Holder {i:07d}",
                    initial_balance_cents=rng.randrange(0, 500_000),
                    actor=actor,
                    clock=lambda at=at: at,
                ).id
            )
            bar.update()
    return ids


def domain_accounts(ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[object, str]]:
    """Each opened account as the domain rebuilds it from its stored events, with its head
    hash (read in the global order, as a follower would)."""
    import eventstore as es
    from bank.domain import Account, event_from_data

    wanted = set(ids)
    found: dict[uuid.UUID, tuple[object, str]] = {}
    position = 0
    while batch := es.read_all(after_position=position, limit=5000):
        for event in batch:
            if event.stream_id in wanted:
                account = Account.from_events(
                    event.stream_id, [event_from_data(event.event_type, event.data)]
                )
                found[event.stream_id] = (account, event.hash)
        position = batch[-1].position
    assert len(found) == len(ids), f"{len(found)} of {len(ids)} accounts read back"
    return found


def seed_store(
    url: str, *, many: int, total_events: int, long_count: int, long_events: int
) -> Seeded:
    """Open the accounts through the services, then COPY the rest of their events."""
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    import eventstore as es
    from bank.domain import STREAM_TYPE, Account
    from bank.services import Actor, CommandContext
    from eventstore.hashing import canonical_json, canonical_time, event_hash
    from eventstore.signing import keyring, seal_message

    interval = settings.SNAPSHOT_INTERVAL
    actor = Actor(username="teller.growth", user_id=None, auth="session")
    now = datetime.now(UTC).replace(microsecond=0)
    history_start = now - timedelta(days=730)
    started = time.perf_counter()
    opened = open_accounts(many + long_count, history_start, actor)
    long_ids = opened[many:]
    heads = domain_accounts(opened)
    print(
        f"  opened {len(opened):,} accounts through the services in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )

    # Who gets each seeded event: every account its share, shuffled over the history.
    rest = total_events - len(opened) - long_count * (long_events - 1)
    schedule = []
    for i in range(long_count):
        schedule += [many + i] * (long_events - 1)
    for i in range(many):
        schedule += [i] * (rest // many + (1 if i < rest % many else 0))
    rng = random.Random(22)
    rng.shuffle(schedule)

    order = [(account_id, *heads[account_id]) for account_id in opened]
    accounts = [entry[1] for entry in order]
    previous = [entry[2] for entry in order]
    stream_ids = [entry[0] for entry in order]
    keys = keyring()
    new_context = CommandContext.of
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(position), 0) FROM events")
        position = cursor.fetchone()[0]
    first_time = history_start + timedelta(hours=1)
    step = (now - timedelta(hours=1) - first_time) / max(1, len(schedule))
    snapshots: list[tuple[uuid.UUID, int, dict, str]] = []
    started = time.perf_counter()
    chunk: list[str] = []
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cursor,
        cursor.copy(COPY_SQL) as copy,
        progress(len(schedule), "events") as bar,
    ):
        for n, index in enumerate(schedule):
            account = accounts[index]
            amount = rng.randrange(100, 50_000)
            description = DESCRIPTIONS[n % len(DESCRIPTIONS)]
            if account.balance_cents >= amount and rng.random() < 0.4:
                account.withdraw(amount, description)
                command = "withdraw"
            else:
                account.deposit(amount, description)
                command = "deposit"
            (event,) = account.collect_events()
            position += 1
            stream_id = stream_ids[index]
            event_id = uuid.uuid4()
            data_json = canonical_json(event.to_data())
            metadata_json = canonical_json(new_context(actor).metadata(command))
            moment = canonical_time(first_time + step * n)
            version = account.version
            hashed = event_hash(
                previous_hash=previous[index],
                event_id=event_id,
                stream_id=stream_id,
                stream_type=STREAM_TYPE,
                version=version,
                event_type=event.event_type,
                schema_version=event.schema_version,
                data_json=data_json,
                metadata_json=metadata_json,
                occurred_text=moment,
                recorded_text=moment,
            )
            previous[index] = hashed
            key_id, signature = keys.sign(seal_message(stream_id, version, version, hashed))
            # COPY's text format: a backslash in a value must be doubled (the JSON may hold
            # escapes); our values hold no tab or newline (JSON escapes those).
            chunk.append(
                f"{position}\t{event_id}\t{stream_id}\t{STREAM_TYPE}\t{version}\t"
                f"{event.event_type}\t{event.schema_version}\t"
                f"{data_json.replace(chr(92), chr(92) * 2)}\t"
                f"{metadata_json.replace(chr(92), chr(92) * 2)}\t{moment}\t{moment}\t"
                f"{-position}\t{hashed}\t{signature}\t{key_id}\n"
            )
            if version % interval == 0:
                snapshots.append((stream_id, version, account.to_snapshot().state, hashed))
            if len(chunk) == 2000:
                copy.write("".join(chunk))
                chunk.clear()
                bar.update(2000)
        if chunk:
            copy.write("".join(chunk))
    seconds = time.perf_counter() - started
    print(
        f"  COPY: {len(schedule):,} events in {seconds:.1f} s ({len(schedule) / seconds:,.0f} "
        "rows/s)",
        flush=True,
    )
    with connection.cursor() as cursor:
        # New appends take positions after the seeded ones.
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('events', 'position'), %s)", [position]
        )

    started = time.perf_counter()
    with progress(len(snapshots), "snapshots") as bar:
        for stream_id, version, state, anchor in snapshots:
            es.save_snapshot(
                stream_id,
                stream_type=STREAM_TYPE,
                version=version,
                schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
                state=state,
                anchor=anchor,
            )
            bar.update()
    print(
        f"  {len(snapshots):,} snapshots through es.save_snapshot in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    vacuumed = time.perf_counter()
    call_command("rebuild_projections", verbosity=0)
    rebuilt = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"  VACUUM ANALYZE: {vacuumed - started:.1f} s; rebuild_projections: "
        f"{rebuilt - vacuumed:.1f} s; VACUUM ANALYZE: {time.perf_counter() - rebuilt:.1f} s",
        flush=True,
    )
    started = time.perf_counter()
    stored = es.head_position()
    with progress(stored, "verified") as bar:
        report, _ = es.run_verification(full=True, progress=bar.update)
    problems = report.all_problems()
    print(
        f"  run_verification(full=True): {time.perf_counter() - started:.1f} s "
        f"({stored / (time.perf_counter() - started):,.0f} events/s), "
        f"{'intact' if not problems else f'{len(problems)} problems, first: {problems[0]}'}",
        flush=True,
    )
    if problems:
        raise SystemExit(
            "the seeded store does not verify: the figures would not be the product's"
        )
    return Seeded(long_ids, es.head_position(), len(opened))


def seeded_big(args: argparse.Namespace) -> Seeded:
    """The big store: seeded now, or reused (``--keep``) when seeded with these arguments."""
    from django.db import connection

    key = {
        "format": SEED_FORMAT,
        "events": args.events,
        "long": args.long,
        "long_events": args.long_events,
    }
    if args.keep and database_exists(BIG_DB):
        use_database(BIG_DB)
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [META_TABLE])
            if cursor.fetchone()[0]:
                cursor.execute(f"SELECT note FROM {META_TABLE}")  # noqa: S608
                note = cursor.fetchone()[0]
                if {k: v for k, v in json.loads(note).items() if k in key} == key:
                    print(f"big store: reusing {BIG_DB} (--keep; seeded with these arguments)")
                    return Seeded.from_json(note)
        print(f"big store: {BIG_DB} was seeded otherwise; seeding it again")
    use_database(BIG_DB, create=True)
    many = max(1, (args.events - args.long * args.long_events) // PER_ACCOUNT)
    print(
        f"big store: seeding {args.events:,} events ({many:,} accounts of ~{PER_ACCOUNT}, "
        f"{args.long} of {args.long_events:,}) into {BIG_DB}",
        flush=True,
    )
    seeded = seed_store(
        url_of(BIG_DB),
        many=many,
        total_events=args.events,
        long_count=args.long,
        long_events=args.long_events,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {META_TABLE} (note text NOT NULL)")
        cursor.execute(f"INSERT INTO {META_TABLE} VALUES (%s)", [seeded.to_json(key)])  # noqa: S608
    return seeded


def seeded_empty(args: argparse.Namespace) -> Seeded:
    use_database(EMPTY_DB, create=True)
    print(f"empty store: only the {args.long} long accounts, into {EMPTY_DB}", flush=True)
    return seed_store(
        url_of(EMPTY_DB),
        many=0,
        total_events=args.long * args.long_events,
        long_count=args.long,
        long_events=args.long_events,
    )


# --- measuring ------------------------------------------------------------------------


class Store:
    def __init__(self, label: str, database: str, seeded: Seeded) -> None:
        self.label, self.database, self.seeded = label, database, seeded
        self.results: dict[str, list[Result]] = {}
        self.ceiling: dict[int, Result] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.client: Any = None

    @property
    def deposit_account(self) -> uuid.UUID:
        return self.seeded.long_ids[0]

    @property
    def read_account(self) -> uuid.UUID:
        return self.seeded.long_ids[-1]

    def add(self, result: Result) -> None:
        self.results.setdefault(result.name, []).append(result)

    def median(self, name: str) -> Result:
        runs = sorted(self.results[name], key=lambda r: r.rate)
        return runs[len(runs) // 2]


def timed(name: str, call: Callable[[], object], times: int) -> Result:
    call()  # warm: the connection, its prepared statements, caches
    return run_commands(name, 1, [call] * times)


def prepare(store: Store) -> None:
    """Before the rounds: an admin, the store verified up to now, then a tail of 10 deposits
    on the audited account (what the audit page checks, as in production between runs)."""
    from django.contrib.auth.models import User
    from django.test import Client

    import eventstore as es
    from bank.services import Actor
    from bank.services import accounts as svc

    user = User.objects.filter(username="growth-admin").first()
    if user is None:
        user = User.objects.create_superuser("growth-admin", password="growth-pass")
    store.client = Client()
    store.client.force_login(user)
    report, _ = es.run_verification(full=False)
    assert report.ok, report.all_problems()[:3]
    for _ in range(10):
        svc.deposit(account_id=store.read_account, amount_cents=1, actor=Actor.system("bench"))


def measure_round(store: Store, args: argparse.Namespace) -> None:
    from django.db import connections
    from django.urls import reverse

    import eventstore as es
    from bank.services import Actor
    from bank.services import accounts as svc

    use_database(store.database)
    actor = Actor.system("bench")
    fresh = [
        svc.open_account(holder_name="Fresh", initial_balance_cents=1000, actor=actor).id
        for _ in range(args.fresh)
    ]
    deposit = functools.partial(svc.deposit, amount_cents=100, actor=actor)
    deposits = [
        functools.partial(deposit, account_id=fresh[k % len(fresh)]) for k in range(args.deposits)
    ]
    store.add(run_commands("deposit, fresh accounts", 1, deposits))
    long_id = store.deposit_account
    svc.deposit(account_id=long_id, amount_cents=100, actor=actor)  # warm
    store.add(
        run_commands(
            "deposit, long account",
            1,
            [
                lambda: svc.deposit(account_id=long_id, amount_cents=100, actor=actor)
                for _ in range(args.deposits)
            ],
        )
    )
    read_id = store.read_account
    store.add(timed("get_account, long account", lambda: svc.get_account(read_id), args.loads))
    past = args.long_events // 10 + 50
    store.add(
        timed(
            f"account_at(version={past:,})",
            lambda: svc.account_at(read_id, version=past),
            args.loads,
        )
    )
    client = store.client
    path = reverse("admin:bank_account_audit", args=[read_id])

    def audit() -> None:
        response = client.get(path, HTTP_HOST="localhost")
        assert response.status_code == 200, response.status_code
        assert b"integrity" in response.content.lower()

    store.add(timed("audit page, long account", audit, args.audits))

    head = es.head_position()
    start = max(0, head - NEWEST)

    def read_newest() -> int:
        position, count = start, 0
        while batch := es.read_all(after_position=position, limit=READ_BATCH):
            for event in batch:
                event.data  # noqa: B018 -- what a projection pays to look at each payload
            position, count = batch[-1].position, count + len(batch)
        return count

    read_newest()  # warm
    t0 = time.perf_counter()
    count = read_newest()
    seconds = time.perf_counter() - t0
    store.add(Result(f"read_all, newest {NEWEST:,} (events)", count, seconds, [seconds / count]))
    connections.close_all()


def measure_ceiling(store: Store, writers: int, args: argparse.Namespace) -> None:
    """Appends/s of the serialised append with ``writers`` writers, each on its own account."""
    from django.db import connections

    import eventstore as es
    from bank.domain import STREAM_TYPE
    from bank.services import Actor, CommandContext
    from bank.services import accounts as svc

    use_database(store.database)
    actor = Actor.system("bench")

    def append(heads: dict[uuid.UUID, es.StreamHead], account_id: uuid.UUID) -> None:
        result = es.append(
            account_id,
            [
                es.NewEvent(
                    event_type="MoneyDeposited",
                    data={"amount_cents": 100, "description": ""},
                    occurred_at=datetime.now(UTC),
                )
            ],
            stream_type=STREAM_TYPE,
            expected_version=heads[account_id],
            metadata=CommandContext.of(actor).metadata("deposit"),
        )
        heads[account_id] = result.heads[account_id]

    heads: dict[uuid.UUID, es.StreamHead] = {}
    for _ in range(writers):
        account_id = svc.open_account(holder_name="Writer", actor=actor).id
        heads[account_id] = es.stream_head(account_id)
    ids = list(heads)
    # run_commands deals work[i::writers] to writer i: writer i keeps to account i.
    work = [functools.partial(append, heads, ids[k % writers]) for k in range(args.appends)]
    store.ceiling[writers] = run_commands(
        f"{writers} writers", writers, work, per_thread_end=connections.close_all
    )
    connections.close_all()


def measure_sizes(store: Store) -> None:
    from django.db import connection

    use_database(store.database)
    with connection.cursor() as cursor:
        for table in ("events", "snapshots", *READ_MODEL_TABLES):
            cursor.execute(
                "SELECT pg_total_relation_size(%s::regclass), pg_indexes_size(%s::regclass)",
                [table, table],
            )
            store.sizes[table] = cursor.fetchone()
        cursor.execute("SELECT COUNT(*) FROM events")
        store.seeded.events = cursor.fetchone()[0]


# --- reporting ------------------------------------------------------------------------


def mb(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def report(big: Store, empty: Store, args: argparse.Namespace) -> None:
    print(
        f"\nPer operation: big store ({big.seeded.events:,} events, {big.seeded.accounts:,} "
        f"accounts) vs empty store ({empty.seeded.events:,} events: {args.long} accounts of "
        f"{args.long_events:,}); median of {args.rounds} rounds. ratio: big's time per "
        "operation / empty's (target for commands: <= 1.20x)"
    )
    header = (
        f"{'operation':<36} {'big/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'empty/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in big.results:
        b, e = big.median(name), empty.median(name)
        ratio = e.rate / b.rate
        verdict = "" if name.startswith("read_all") else ("ok" if ratio <= 1.2 else "OVER")
        if name.startswith("read_all"):
            print(
                f"{name:<36} {b.rate:>9,.0f} {'':>7} {'':>7} {e.rate:>9,.0f} {'':>7} {'':>7} "
                f"{ratio:>6.2f}x"
            )
            continue
        print(
            f"{name:<36} {b.rate:>9,.0f} {b.pct(50):>7.2f} {b.pct(99):>7.2f} {e.rate:>9,.0f} "
            f"{e.pct(50):>7.2f} {e.pct(99):>7.2f} {ratio:>6.2f}x {verdict}"
        )
    print(
        "\nThe gap-free append's ceiling: es.append of one event per call, K writers on "
        f"accounts of their own ({args.appends:,} appends per K)"
    )
    header = f"{'writers':<10} {'big appends/s':>14} {'p50 ms':>7} {'p99 ms':>7} {'empty/s':>9}"
    print(header)
    print("-" * len(header))
    for writers, b in big.ceiling.items():
        e = empty.ceiling[writers]
        print(
            f"{writers:<10} {b.rate:>14,.0f} {b.pct(50):>7.2f} {b.pct(99):>7.2f} {e.rate:>9,.0f}"
        )
    print("\nSizes (MiB): table with its indexes and TOAST, of which indexes")
    header = (
        f"{'relation':<26} {'big total':>10} {'indexes':>9} {'empty total':>12} {'indexes':>9}"
    )
    print(header)
    print("-" * len(header))
    for table, (b_total, b_index) in big.sizes.items():
        e_total, e_index = empty.sizes[table]
        print(f"{table:<26} {mb(b_total):>10} {mb(b_index):>9} {mb(e_total):>12} {mb(e_index):>9}")
    per_event = big.sizes["events"][0] / big.seeded.events
    print(f"events: {per_event:,.0f} bytes per event on the big store, indexes included")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000, help="the big store's events")
    parser.add_argument("--long", type=int, default=2, help="long accounts (at least 2)")
    parser.add_argument("--long-events", type=int, default=20_000, help="events per long one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", type=int, default=100, help="fresh accounts per round")
    parser.add_argument("--deposits", type=int, default=300, help="deposits per figure/round")
    parser.add_argument("--loads", type=int, default=30, help="loads per figure and round")
    parser.add_argument("--audits", type=int, default=10, help="audit pages per round")
    parser.add_argument("--appends", type=int, default=2000, help="appends per writer count")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the big database")
    args = parser.parse_args()
    if args.long < 2 or args.events < args.long * args.long_events + PER_ACCOUNT:
        parser.error("--events must hold the long accounts and one more; --long at least 2")

    wall = time.perf_counter()
    setup("postgres")  # each store's database is chosen by use_database()
    from django.conf import settings

    load = os.getloadavg()
    print(
        f"PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; SNAPSHOT_INTERVAL="
        f"{settings.SNAPSHOT_INTERVAL}",
        flush=True,
    )
    try:
        started = time.perf_counter()
        big = Store("big", BIG_DB, seeded_big(args))
        print(f"big store ready in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        empty = Store("empty", EMPTY_DB, seeded_empty(args))
        print(f"empty store ready in {time.perf_counter() - started:.1f} s", flush=True)
        for store in (big, empty):
            use_database(store.database)
            prepare(store)
        started = time.perf_counter()
        for n in range(args.rounds):
            for store in (big, empty):
                measure_round(store, args)
            print(f"round {n + 1} of {args.rounds} measured", flush=True)
        for writers in WRITERS:
            for store in (big, empty):
                measure_ceiling(store, writers, args)
        for store in (big, empty):
            measure_sizes(store)
        print(f"measured in {time.perf_counter() - started:.1f} s", flush=True)
        report(big, empty, args)
    finally:
        if not args.keep:
            drop_database(BIG_DB)
        drop_database(EMPTY_DB)
    load = os.getloadavg()
    print(
        f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; wall time "
        f"{time.perf_counter() - wall:.0f} s; "
        + (f"{BIG_DB} kept (--keep)" if args.keep else "databases dropped")
    )


if __name__ == "__main__":
    main()
