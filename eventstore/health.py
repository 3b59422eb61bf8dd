"""Health checks: can the store's integrity be vouched for right now?

Two things must hold. The database still refuses to change history: every append-only
table keeps its immutability triggers, present, enabled ``ALWAYS`` and still refusing
(:func:`trigger_problems`; ``backends`` reads the catalogue of each vendor). And the
recorded verification runs (``run_records``) vouch for the rows: the newest run found
nothing wrong, and a full run succeeded recently (:func:`integrity_problems`). The
``healthcheck`` command and ``/healthz`` report what these return.
"""

from __future__ import annotations

from django.utils import timezone

from .backends import backend
from .run_records import last_run

# The immutability triggers each append-only table must have (migrations 0002 and 0005).
IMMUTABLE_TABLES = ("events", "snapshots", "signing_epoch")


def trigger_problems() -> list[str]:
    """What is missing or switched off among the immutability triggers (empty: all there)."""
    found, suffixes, problems = backend().immutability_triggers(IMMUTABLE_TABLES)
    for table in IMMUTABLE_TABLES:
        for suffix in suffixes:
            name = f"{table}_{suffix}"
            state = found.get((table, name))
            if state is None:
                problems.append(f"trigger {name} on {table} is missing")
            elif state in ("D", b"D"):
                problems.append(f"trigger {name} on {table} is disabled")
            elif state == "no-op":
                problems.append(f"trigger {name} on {table} no longer refuses anything")
            elif state not in ("A", b"A"):
                problems.append(
                    f"trigger {name} on {table} is not ENABLE ALWAYS (a replica-mode session "
                    "would bypass it)"
                )
    return problems


def integrity_problems(max_age_hours: float) -> list[str]:
    """Why the store's integrity cannot be vouched for now (empty: it can).

    The immutability triggers are all in place and enabled; the newest verification run
    found nothing wrong; a full run succeeded within ``max_age_hours``.

    Args:
        max_age_hours: how old the last successful full run may be.
    """
    problems = trigger_problems()
    if problems:
        problems[-1] += (
            "; reinstall them as the tables' owner (the SQL of eventstore migrations 0002 and "
            "0005), find out who removed them, and run verify_events --full"
        )
    newest = last_run()
    if newest is not None and not newest.ok:
        problems.append(
            f"the last verification ({newest.finished_at:%Y-%m-%d %H:%M} UTC) found "
            f"{len(newest.problems)} problem(s), e.g. "
            f'{newest.problems[0] if newest.problems else "?"}; see README, "When '
            'verify_events fails"'
        )
    full = last_run(full=True)
    if full is None:
        problems.append("no full verification has run: run python manage.py verify_events --full")
    elif not full.ok and (newest is None or newest.ok):
        problems.append(
            f"the last full verification ({full.finished_at:%Y-%m-%d %H:%M} UTC) found "
            f'{len(full.problems)} problem(s); see README, "When verify_events fails"'
        )
    else:
        age = (timezone.now() - full.finished_at).total_seconds() / 3600
        if age > max_age_hours:
            problems.append(
                f"the last full verification ran {age:.1f} h ago (limit {max_age_hours:g} h): "
                "schedule python manage.py verify_events --full daily"
            )
    return problems
