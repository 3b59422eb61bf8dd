"""python manage.py healthcheck: exit 0 when the back-office is healthy, 1 otherwise."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.health import check


class Command(BaseCommand):
    help = (
        "Check that the database is reachable, every migration is applied, the read models "
        "(and the event bus relay, when NATS_URL is set) are within the lag thresholds, no "
        "event is parked as a dead letter, every account stream is readable by this release, the "
        "immutability triggers are in place and enabled, the last verify_events run found "
        "nothing wrong and a full one ran within HEALTH_MAX_VERIFY_AGE_HOURS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-lag-events", type=int, help="default: HEALTH_MAX_LAG_EVENTS (10000)"
        )
        parser.add_argument(
            "--max-lag-seconds", type=float, help="default: HEALTH_MAX_LAG_SECONDS (300)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        health = check(
            max_lag_events=options["max_lag_events"], max_lag_seconds=options["max_lag_seconds"]
        )
        for name, ok in health.checks.items():
            self.stdout.write(f"{name:<13} {'ok' if ok else 'FAILING'}")
        if not health.ok:
            raise CommandError("unhealthy: " + " | ".join(health.details))
        self.stdout.write(self.style.SUCCESS("healthy"))
