"""Health of a running back-office: database reachable, migrations applied, read models
current, no event parked as a dead letter, every account stream readable by this release,
the personal-data master keys able to open the stored data keys, and the store's integrity vouched for (immutability triggers in place, the last
verification clean, a full one recent).

Used by ``python manage.py healthcheck`` (details for the operator) and by ``/healthz``
(a yes/no per check for a load balancer or orchestrator; no numbers, names or errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

import eventstore as es
from bank.services import encryption

from .runner import RELAY_PREFIX, parked_counts, status, unknown_streams

_migrations_applied = False  # once true, it stays true for the life of the process


@dataclass
class Health:
    checks: dict[str, bool] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def _pending_migrations() -> list[str]:
    executor = MigrationExecutor(connection)
    targets = executor.loader.graph.leaf_nodes()
    return [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(targets)]


def check(*, max_lag_events: int | None = None, max_lag_seconds: float | None = None) -> Health:
    """Run every check; a failing check never raises, it is reported."""
    global _migrations_applied
    max_lag_events = settings.HEALTH_MAX_LAG_EVENTS if max_lag_events is None else max_lag_events
    if max_lag_seconds is None:
        max_lag_seconds = settings.HEALTH_MAX_LAG_SECONDS
    health = Health()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        health.checks.update(
            database=False,
            migrations=False,
            projections=False,
            dead_letters=False,
            readable=False,
            personal_data=False,
            integrity=False,
        )
        health.details.append(f"database unreachable: {exc}".strip())
        connection.close()
        return health
    health.checks["database"] = True
    if not _migrations_applied:
        pending = _pending_migrations()
        _migrations_applied = not pending
        if pending:
            health.details.append(
                f"{len(pending)} migration(s) not applied ({', '.join(pending[:5])}); "
                "run python manage.py migrate"
            )
    health.checks["migrations"] = _migrations_applied
    if not _migrations_applied:
        health.checks.update(
            projections=False,
            dead_letters=False,
            readable=False,
            personal_data=False,
            integrity=False,
        )
        return health
    lagging = []
    for row in status():
        if row.abandoned or (
            row.name.startswith(RELAY_PREFIX)
            and (not settings.NATS_URL or row.name != f"{RELAY_PREFIX}{settings.NATS_STREAM}")
        ):
            continue  # only the relay configured here (NATS_URL, NATS_STREAM) is checked
        if row.lag_events > max_lag_events or row.lag_seconds > max_lag_seconds:
            lagging.append(
                f"{row.name} is {row.lag_events} events / {row.lag_seconds:.0f} s behind"
            )
    health.checks["projections"] = not lagging
    if lagging:
        health.details.append("; ".join(lagging) + " (is run_projections / relay_events running?)")
    _check_dead_letters(health)
    _check_readable(health)
    keys = encryption.key_problems()
    health.checks["personal_data"] = not keys
    health.details.extend(keys)
    integrity = es.integrity_problems(settings.HEALTH_MAX_VERIFY_AGE_HOURS)
    health.checks["integrity"] = not integrity
    health.details.extend(integrity)
    return health


def _check_dead_letters(health: Health) -> None:
    """Unhealthy while any follower has parked an event (it is missing downstream)."""
    counts = parked_counts()
    health.checks["dead_letters"] = not counts
    if counts:
        health.details.append(
            "parked events: "
            + ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            + " (projection_status lists them and why; fix the cause, then run "
            "run_projections --retry-parked, or relay_events --retry-parked for relay:*; "
            "projection_status --forget NAME for an abandoned follower)"
        )


def _check_readable(health: Health) -> None:
    """Unhealthy while an account stream holds an event this release cannot decode."""
    streams = unknown_streams()
    health.checks["readable"] = not streams
    if streams:
        shown = [
            f"{stream_id} ({', '.join(sorted({e.event_type for e in events}))} from version "
            f"{events[0].version})"
            for stream_id, events in list(streams.items())[:5]
        ]
        health.details.append(
            f"{len(streams)} account stream(s) hold events of a type this release does not "
            f"know: {'; '.join(shown)}{' ...' if len(streams) > 5 else ''} (they cannot be "
            "loaded; the read models skip those events): run the release that wrote them"
        )
