"""python manage.py projection_status [--max-lag-events N] [--max-lag-seconds S]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.base import ProjectionError
from projections.runner import status


class Command(BaseCommand):
    help = "Show each projection's checkpoint and lag; exit non-zero past a lag threshold."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", help="projections (or relay:<stream>) to show (default: all)"
        )
        parser.add_argument(
            "--max-lag-events", type=int, help="fail when a projection is more events behind"
        )
        parser.add_argument(
            "--max-lag-seconds",
            type=float,
            help="fail when a projection's oldest pending event is older than this",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rows = status(options["names"])
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{'follower':<20} {'checkpoint':>11} {'head':>11} {'lag events':>11} {'lag s':>9}"
        )
        unhealthy = []
        for row in rows:
            self.stdout.write(
                f"{row.name:<20} {row.checkpoint:>11} {row.head:>11} {row.lag_events:>11} "
                f"{row.lag_seconds:>9.1f}"
            )
            if (
                options["max_lag_events"] is not None
                and row.lag_events > options["max_lag_events"]
            ):
                unhealthy.append(f"{row.name} is {row.lag_events} events behind")
            if (
                options["max_lag_seconds"] is not None
                and row.lag_seconds > options["max_lag_seconds"]
            ):
                unhealthy.append(f"{row.name} is {row.lag_seconds:.1f} s behind")
        if unhealthy:
            raise CommandError(
                "; ".join(unhealthy)
                + ". Check that run_projections (and relay_events, for relay:*) is running and not "
                "failing on an event."
            )
