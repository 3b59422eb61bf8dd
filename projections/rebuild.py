"""Rebuilding read models aside, while the live ones keep serving and following.

A rebuild replays every event into *shadow* tables, with the projections' own handlers and
``runner.catch_up`` (the same batches, checkpoints and progress as any runner), while the
live tables keep answering readers and the live follower keeps moving them. Then one
transaction swaps the shadows in:

1. lock the live checkpoint rows of the rebuilt projections (the live follower waits at its
   next batch; writers go on appending);
2. catch the shadows up to the store's head as it is then (a few events: the earlier
   batches did the rest; the live checkpoints are at or below that head and cannot move,
   so the swap does not chase the appends made meanwhile: the follower applies them);
3. put the shadows in the live tables' place and set the live checkpoints to the shadows'
   positions; the rebuilt projections' parked events are marked resolved, as ``reset`` does
   (the replay applied every event, or it would have failed);
4. commit. The follower's next batch starts after the shadows' checkpoint, on the new tables.

At the swap the shadows are at the head, and the live checkpoints could not move past it,
so a reader sees the old rows before the commit and rows at least as new after it: never
fewer rows, never an older version of an account. An error before the commit (an event
that cannot be applied, a lock not granted) rolls the swap back and drops the shadows: the
live read models are left exactly as they were.

**PostgreSQL.** The shadows are tables of the schema ``projection_rebuild`` created
``LIKE <live table> INCLUDING ALL`` (columns, defaults, identity, checks, indexes), plus a
checkpoint table of their own. The rebuild's connection puts that schema first in its
``search_path``, so the handlers' unqualified table names hit the shadows while the event
store's tables resolve to the live schema. ``LIKE`` names indexes and unique constraints
after their columns: they are renamed to the live names, and identity sequences to the
live sequences' names, and the live tables' owner and grants are copied, so that the next
migration (which names its indexes and constraints) and the application's role (see
config/app_role.sql) find what they expect. The shadows are analysed before the swap, so
the planner has statistics from the first query. The swap drops each live table and moves
its shadow into the live schema (``ALTER TABLE ... SET SCHEMA``): a catalogue change, as
quick for a million rows as for ten. It needs an ``ACCESS EXCLUSIVE`` lock on the live
tables, so it waits for readers' open transactions (up to ``lock_timeout``, then it is
retried a few times); readers arriving meanwhile wait the few milliseconds of the swap.
A ``READ COMMITTED`` reader (Django's default) looks the table up again once the lock is
granted and reads the new table with a snapshot taken after the commit; prepared
statements are re-planned by PostgreSQL on their next run, because the table they named
was dropped. A ``REPEATABLE READ`` transaction begun before the swap would see the new
table through its old snapshot (the DDL is not MVCC-safe): read the read models in
``READ COMMITTED``. The rebuild needs the rights to create a schema and to drop the live
tables: run it as the read models' owner (the role ``migrate`` runs as), or pass
``in_place`` (``--in-place``). Only one rebuild runs at a time (an advisory lock).

**SQLite.** The shadows are ``TEMP`` tables of the same names, on the rebuild's connection
only (for unqualified names SQLite looks in ``temp`` before ``main``), created from the
live tables' own ``CREATE`` statements and indexes. The swap is one ``BEGIN IMMEDIATE``
transaction (it holds the write lock, so nothing can append or move a checkpoint) that
catches the shadows up, replaces the live rows with the shadows' rows and moves the live
checkpoints. Readers in WAL mode see the old rows until the commit.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

import eventstore as es

from .base import Projection, ProjectionError
from .follower import lock_key
from .models import Checkpoint, DeadLetter
from .runner import catch_up, get_projections, reset

SHADOW_SCHEMA = "projection_rebuild"
"""PostgreSQL: the schema the shadow tables are built in (dropped after each rebuild)."""

REBUILD_LOCK = "rebuild_projections"
"""PostgreSQL: the advisory lock name that keeps rebuilds from running at the same time."""

SWAP_ATTEMPTS = 3
"""How often the swap is tried when readers hold the live tables past ``lock_timeout``."""

LOCK_NOT_AVAILABLE = "55P03"

CATCH_UP_ROUNDS = 5
"""Rounds of catching the shadows up before the swap (each to the head as it then was)."""

CHECKPOINTS = Checkpoint._meta.db_table

NOT_TOUCHED = (
    "The live read models were not touched (they kept serving and following); "
    "fix the cause and run rebuild_projections again."
)


class RebuildError(ProjectionError):
    """The read models could not be rebuilt aside; the live ones are as they were."""

    code = "rebuild_failed"


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a rebuild did: the projections, the events replayed, where they now stand."""

    names: list[str]
    applied: int
    position: int


Progress = Callable[[int], None]


def rebuild(
    names: Sequence[str] | None = None,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
    in_place: bool = False,
) -> Rebuilt:
    """Replay every event into the named read models (all by default).

    Aside (the default): into shadow tables, swapped in by one transaction (see the module's
    docstring). ``in_place``: empty the live read models and replay into them, as releases
    before 18 did; readers then see them empty and refilling.

    Args:
        names: the projections to rebuild (all by default).
        batch_size: events per batch (one transaction each).
        progress: called with the number of events of each batch.
        in_place: rebuild the live tables themselves.

    Raises:
        ProjectionError: a name is not a projection, or an event could not be applied.
        RebuildError: the shadows could not be made or swapped in.
    """
    projections = get_projections(names)
    names = [p.name for p in projections]
    if in_place:
        reset(names)
        applied = catch_up(names, limit=batch_size, progress=progress)
        return Rebuilt(names, applied, _positions(names, CHECKPOINTS)[names[0]])
    for name in names:
        Checkpoint.objects.get_or_create(name=name)
    if connection.vendor == "postgresql":
        return _rebuild_postgres(projections, batch_size, progress)
    if connection.vendor == "sqlite":
        return _rebuild_sqlite(projections, batch_size, progress)
    raise RebuildError(  # pragma: no cover - the project runs on these two
        f"rebuilding aside is not written for {connection.vendor}; pass --in-place"
    )


def _tables(projections: Sequence[Projection]) -> list[str]:
    return [model._meta.db_table for p in projections for model in p.models]


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _positions(names: Sequence[str], table: str) -> dict[str, int]:
    """The checkpoints of ``names`` in ``table`` (a qualified or shadowed name)."""
    marks = ", ".join(["%s"] * len(names))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name, position FROM {table} WHERE name IN ({marks})", list(names))
        return dict(cursor.fetchall())


def _catch_up_to(
    names: list[str], target: int, checkpoints: str, batch_size: int, progress: Progress | None
) -> int:
    """Apply batches to the shadows until their checkpoints (in ``checkpoints``) reach
    ``target``; return how many events were read."""
    return catch_up(
        names,
        limit=batch_size,
        progress=progress,
        should_stop=lambda: min(_positions(names, checkpoints).get(n, 0) for n in names) >= target,
    )


def _catch_up_aside(
    names: list[str], checkpoints: str, batch_size: int, progress: Progress | None
) -> int:
    """Bring the shadows near the head before the swap, in rounds to a fixed target each,
    so that writers faster than the replay cannot keep the rebuild from ending."""
    applied = 0
    for _ in range(CATCH_UP_ROUNDS):
        target = es.head_position()
        applied += _catch_up_to(names, target, checkpoints, batch_size, progress)
        if es.head_position() - target <= batch_size:
            break
    return applied


def _resolve_parked(names: Sequence[str]) -> None:
    DeadLetter.objects.filter(follower__in=names, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )


# --- PostgreSQL ------------------------------------------------------------------------


def _rebuild_postgres(
    projections: Sequence[Projection], batch_size: int, progress: Progress | None
) -> Rebuilt:
    names = [p.name for p in projections]
    tables = _tables(projections)
    with _rebuild_lock():
        live = {table: _live_schema(table) for table in [*tables, CHECKPOINTS]}
        try:
            _create_shadows_postgres(live, tables)
            with _shadow_first():
                applied = _catch_up_aside(
                    names, CHECKPOINTS, batch_size, _analyzing(tables, progress)
                )
                with connection.cursor() as cursor:
                    for table in tables:
                        cursor.execute(f"ANALYZE {_q(SHADOW_SCHEMA)}.{_q(table)}")
                more, position = _swap_postgres(names, tables, live, batch_size, progress)
        finally:
            _drop_shadows_postgres()
    return Rebuilt(names, applied + more, position)


# The shadows start empty: without statistics the planner reads them as tiny, and the
# handlers' per-batch queries (each account's newest history row) turn into scans of
# millions of rows once they are big. Autovacuum may be off, or a minute behind a table
# that grows by thousands of rows a second, so the rebuild analyzes them itself, each time
# it has applied twice as many events as at the last analysis. Those analyses cover the
# indexed columns only: the handlers look rows up through indexes, and the table's size
# (which every ANALYZE records) is what the planner lacked; about 40 ms against 90 to
# 120 for every column on 60,000 history rows. The last one, before the swap, covers
# every column, for the readers' queries.
FIRST_ANALYZE_AT = 10_000


def _analyzing(tables: Sequence[str], progress: Progress | None) -> Progress:
    seen, next_at = 0, FIRST_ANALYZE_AT
    targets: list[str] = []

    def step(count: int) -> None:
        nonlocal seen, next_at
        seen += count
        if seen >= next_at:
            with connection.cursor() as cursor:
                if not targets:
                    targets.extend(_indexed(cursor, table) for table in tables)
                for target in targets:
                    cursor.execute(f"ANALYZE {target}")
            next_at = seen * 2
        if progress is not None:
            progress(count)

    return step


def _indexed(cursor: Any, table: str) -> str:
    """A shadow table with its indexed columns, as ANALYZE takes them (``s.t (a, b)``)."""
    shadow = f"{_q(SHADOW_SCHEMA)}.{_q(table)}"
    cursor.execute(
        "SELECT DISTINCT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s::regclass ORDER BY a.attname",
        [shadow],
    )
    columns = [_q(name) for (name,) in cursor.fetchall()]
    return f"{shadow} ({', '.join(columns)})" if columns else shadow


@contextlib.contextmanager
def _rebuild_lock() -> Iterator[None]:
    key = lock_key(REBUILD_LOCK)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            raise RebuildError(
                "another rebuild_projections is running (it holds the rebuild lock); "
                "wait for it to finish, then run this one again if still needed"
            )
    try:
        yield
    finally:
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _live_schema(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)",
            [_q(table)],
        )
        row = cursor.fetchone()
    if row is None:
        raise RebuildError(f"the table {table} does not exist; run migrate first")
    return str(row[0])


@contextlib.contextmanager
def _shadow_first() -> Iterator[None]:
    """Put the shadow schema first in this connection's ``search_path``, then restore it."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        original = cursor.fetchone()[0]
        cursor.execute(f"SET search_path TO {_q(SHADOW_SCHEMA)}, {original}")
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SET search_path TO {original}")
        except DatabaseError:
            # A connection that cannot say where its tables are must not be reused.
            connection.close()


def _create_shadows_postgres(live: dict[str, str], tables: list[str]) -> None:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {_q(SHADOW_SCHEMA)} CASCADE")
            cursor.execute(f"CREATE SCHEMA {_q(SHADOW_SCHEMA)}")
            for table in [*tables, CHECKPOINTS]:
                source = f"{_q(live[table])}.{_q(table)}"
                _refuse_unsupported(cursor, table, source)
                cursor.execute(
                    f"CREATE TABLE {_q(SHADOW_SCHEMA)}.{_q(table)} (LIKE {source} INCLUDING ALL)"
                )
            for table in tables:
                _match_live_postgres(cursor, table, f"{_q(live[table])}.{_q(table)}")
    except RebuildError:
        raise
    except DatabaseError as exc:
        denied = getattr(exc.__cause__, "sqlstate", None) == "42501"
        raise RebuildError(
            f"could not create the shadow tables in the schema {SHADOW_SCHEMA}: {exc}; "
            + (
                "rebuilding aside needs the rights to create a schema and to replace the "
                "read models' tables: run rebuild_projections as their owner (the role "
                "migrate runs as), or pass --in-place (readers then see the read models "
                "empty and refilling)"
                if denied
                else NOT_TOUCHED
            )
        ) from exc


def _refuse_unsupported(cursor: Any, table: str, source: str) -> None:
    """LIKE copies no triggers, foreign keys or policies: a table with any is not swapped."""
    cursor.execute(
        "SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass "
        "AND NOT tgisinternal) + (SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
        "AND (conrelid = %s::regclass OR confrelid = %s::regclass)) "
        "+ (SELECT count(*) FROM pg_policy WHERE polrelid = %s::regclass)",
        [source] * 4,
    )
    if cursor.fetchone()[0]:
        raise RebuildError(
            f"the read model table {table} has triggers, foreign keys or row security "
            "policies, which a rebuild aside would not carry over; pass --in-place"
        )


_INDEX_HEAD = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+ ")


def _indexes(cursor: Any, table: str) -> list[tuple[str, str]]:
    """(name, definition without its name and table) of each index of ``table``."""
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), "
        "coalesce((SELECT contype FROM pg_constraint WHERE conindid = i.indexrelid "
        "AND conrelid = i.indrelid LIMIT 1), '') "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass ORDER BY c.relname",
        [table],
    )
    return [
        (name, kind + ":" + _INDEX_HEAD.sub(r"CREATE \1INDEX ON ", definition))
        for name, definition, kind in cursor.fetchall()
    ]


def _sequences(cursor: Any, table: str) -> dict[str, tuple[str, str, bool]]:
    """Per column with a sequence: the sequence's qualified name, its own name, and
    whether the column is an identity column (else a serial's default)."""
    cursor.execute(
        "SELECT a.attname, s.oid::regclass::text, s.relname, a.attidentity <> '' "
        "FROM pg_attribute a "
        "JOIN pg_class s ON s.oid = pg_get_serial_sequence(%s, a.attname)::regclass "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        [table, table],
    )
    return {column: (qualified, name, identity) for column, qualified, name, identity in cursor}


def _match_live_postgres(cursor: Any, table: str, source: str) -> None:
    """Give the shadow of ``table`` the live table's index, constraint and sequence names,
    its owner and its grants."""
    shadow = f"{_q(SHADOW_SCHEMA)}.{_q(table)}"
    wanted = {definition: name for name, definition in _indexes(cursor, source)}
    renames = []
    for name, definition in _indexes(cursor, shadow):
        if definition not in wanted:
            raise RebuildError(  # pragma: no cover - LIKE ... INCLUDING ALL copies them all
                f"the shadow of {table} has an index the live table lacks ({definition})"
            )
        renames.append((name, wanted.pop(definition)))
    # Through temporary names: a shadow index may hold a name another one is to take.
    # Renaming the index of a primary key or unique constraint renames the constraint too.
    for number, (name, _) in enumerate(renames):
        cursor.execute(
            f"ALTER INDEX {_q(SHADOW_SCHEMA)}.{_q(name)} RENAME TO {_q(f'rebuild_{number}')}"
        )
    for number, (_, final) in enumerate(renames):
        cursor.execute(
            f"ALTER INDEX {_q(SHADOW_SCHEMA)}.{_q(f'rebuild_{number}')} RENAME TO {_q(final)}"
        )
    live_sequences = _sequences(cursor, source)
    for column, (sequence, _, identity) in _sequences(cursor, shadow).items():
        _, live_name, live_identity = live_sequences[column]
        if not identity or not live_identity:
            # A serial's default names the live table's own sequence, dropped with it.
            raise RebuildError(
                f"the column {table}.{column} takes its values from a sequence but is not "
                "an identity column (a serial of an old migration); pass --in-place"
            )
        if sequence.rsplit(".", 1)[-1].strip('"') != live_name:
            cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {_q(live_name)}")
    cursor.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass", [source]
    )
    owner = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE {shadow} OWNER TO {_q(owner)}")  # its sequences follow
    _copy_grants(cursor, source, shadow, "TABLE")
    for column, (sequence, _, _) in _sequences(cursor, shadow).items():
        _copy_grants(cursor, live_sequences[column][0], sequence, "SEQUENCE")


def _copy_grants(cursor: Any, source: str, target: str, kind: str) -> None:
    cursor.execute(
        "SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.is_grantable "
        "FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %s::regclass AND a.grantee <> c.relowner",
        [source],
    )
    for privilege, grantee, grantable in cursor.fetchall():
        cursor.execute(
            f"GRANT {privilege} ON {kind} {target} TO {grantee}"
            + (" WITH GRANT OPTION" if grantable else "")
        )


def _swap_postgres(
    names: list[str],
    tables: list[str],
    live: dict[str, str],
    batch_size: int,
    progress: Progress | None,
) -> tuple[int, int]:
    """Catch the shadows up and put them in the live tables' place, in one transaction.

    Returns:
        How many events the final catch-up applied, and the position the live read models
        now stand at.
    """
    live_checkpoints = f"{_q(live[CHECKPOINTS])}.{_q(CHECKPOINTS)}"
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # The live follower locks these rows (in this order) for each batch: while
                # this transaction holds them, no live checkpoint moves.
                marks = ", ".join(["%s"] * len(names))
                cursor.execute(
                    f"SELECT name FROM {live_checkpoints} WHERE name IN ({marks}) "
                    "ORDER BY name FOR UPDATE",
                    names,
                )
                # The live checkpoints are at or below the head now and cannot move: the
                # shadows need to reach that head, not chase the appends after it (the
                # follower applies those, after the shadows' checkpoint).
                applied = _catch_up_to(
                    names, es.head_position(), CHECKPOINTS, batch_size, progress
                )
                for table in tables:
                    cursor.execute(f"DROP TABLE {_q(live[table])}.{_q(table)}")
                    cursor.execute(
                        f"ALTER TABLE {_q(SHADOW_SCHEMA)}.{_q(table)} SET SCHEMA {_q(live[table])}"
                    )
                positions = _positions(names, f"{_q(SHADOW_SCHEMA)}.{_q(CHECKPOINTS)}")
                for name, position in positions.items():
                    cursor.execute(
                        f"UPDATE {live_checkpoints} SET position = %s, updated_at = %s "
                        "WHERE name = %s",
                        [position, timezone.now(), name],
                    )
                _resolve_parked(names)
                return applied, min(positions.values())
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise RebuildError(
                    f"could not swap the rebuilt read models in: {exc}. {NOT_TOUCHED}"
                ) from exc
            if attempt == SWAP_ATTEMPTS:
                raise RebuildError(
                    f"could not swap the rebuilt read models in: {exc}; after {attempt} "
                    "attempts other sessions still held the live tables past lock_timeout. "
                    "The live read models were not touched; look for long transactions "
                    "reading them (pg_stat_activity), then run rebuild_projections again."
                ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _drop_shadows_postgres() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {_q(SHADOW_SCHEMA)} CASCADE")
    except DatabaseError:
        # The next rebuild drops what is left; the live tables never depend on it.
        connection.close()


# --- SQLite ----------------------------------------------------------------------------

_CREATE_TABLE = re.compile(r"^CREATE TABLE\s+", re.IGNORECASE)
_CREATE_INDEX = re.compile(r"^CREATE (UNIQUE )?INDEX\s+", re.IGNORECASE)


def _rebuild_sqlite(
    projections: Sequence[Projection], batch_size: int, progress: Progress | None
) -> Rebuilt:
    names = [p.name for p in projections]
    tables = _tables(projections)
    try:
        _create_shadows_sqlite([*tables, CHECKPOINTS])
        shadow = f"temp.{_q(CHECKPOINTS)}"
        applied = _catch_up_aside(names, shadow, batch_size, progress)
        # BEGIN IMMEDIATE (the settings' transaction mode): from here on nothing appends
        # and no live checkpoint moves until the commit.
        with transaction.atomic(), connection.cursor() as cursor:
            applied += _catch_up_to(names, es.head_position(), shadow, batch_size, progress)
            for table in tables:
                cursor.execute(f"PRAGMA main.table_info({_q(table)})")
                columns = ", ".join(_q(row[1]) for row in cursor.fetchall())
                cursor.execute(f"DELETE FROM main.{_q(table)}")
                cursor.execute(
                    f"INSERT INTO main.{_q(table)} ({columns}) "
                    f"SELECT {columns} FROM temp.{_q(table)}"
                )
            positions = _positions(names, shadow)
            for name, position in positions.items():
                cursor.execute(
                    f"UPDATE main.{_q(CHECKPOINTS)} SET position = %s, updated_at = %s "
                    "WHERE name = %s",
                    [position, timezone.now(), name],
                )
            _resolve_parked(names)
        return Rebuilt(names, applied, min(positions.values()))
    finally:
        _drop_shadows_sqlite([*tables, CHECKPOINTS])


def _create_shadows_sqlite(tables: list[str]) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DROP TABLE IF EXISTS temp.{_q(table)}")
            cursor.execute(
                "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = %s", [table]
            )
            row = cursor.fetchone()
            if row is None:
                raise RebuildError(f"the table {table} does not exist; run migrate first")
            cursor.execute(_CREATE_TABLE.sub("CREATE TEMP TABLE ", row[0], count=1))
            cursor.execute(
                "SELECT sql FROM main.sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL",
                [table],
            )
            for (index,) in cursor.fetchall():
                # An index of a temp table lives in temp; its table name stays unqualified.
                cursor.execute(_CREATE_INDEX.sub(r"CREATE \1INDEX temp.", index, count=1))


def _drop_shadows_sqlite(tables: list[str]) -> None:
    try:
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{_q(table)}")
    except DatabaseError:
        # Temp tables go with the connection: closing it drops whatever is left.
        connection.close()
