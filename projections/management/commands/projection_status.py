"""python manage.py projection_status [name ...] [--max-lag-events N] [--max-lag-seconds S]
[--forget NAME]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.base import ProjectionError
from projections.follower import parked
from projections.runner import RELAY_PREFIX, forget, status

SHOWN_PARKED = 20  # parked events listed one by one; the rest are counted


class Command(BaseCommand):
    help = (
        "Show each follower's checkpoint, lag and parked events; exit non-zero past a lag "
        "threshold or while events are parked."
    )

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
        parser.add_argument(
            "--forget",
            metavar="NAME",
            help="remove the checkpoint (and parked events) of an abandoned follower, such as "
            "relay:<old stream>, then exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["forget"]:
            self._forget(options["forget"])
            return
        try:
            rows = status(options["names"])
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{'follower':<20} {'checkpoint':>11} {'head':>11} {'lag events':>11} {'lag s':>9} "
            f"{'parked':>7}"
        )
        unhealthy = []
        for row in rows:
            note = "  (abandoned: --forget it)" if row.abandoned else ""
            self.stdout.write(
                f"{row.name:<20} {row.checkpoint:>11} {row.head:>11} {row.lag_events:>11} "
                f"{row.lag_seconds:>9.1f} {row.parked:>7}{note}"
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
        parked_rows = [row for row in rows if row.parked]
        if parked_rows:
            self._list_parked([row.name for row in parked_rows])
            raise CommandError(
                "; ".join(f"{row.name} has {row.parked} parked event(s)" for row in parked_rows)
                + ". Fix the cause (the error above), then run run_projections --retry-parked "
                "(relay_events --retry-parked for relay:*)."
            )

    def _list_parked(self, names: list[str]) -> None:
        letters = [letter for name in names for letter in parked(name, limit=SHOWN_PARKED + 1)]
        self.stdout.write("")
        self.stdout.write(
            f"{'parked by':<20} {'position':>11} {'version':>8} {'attempts':>8}  "
            "stream, event type: error"
        )
        for letter in letters[:SHOWN_PARKED]:
            self.stdout.write(
                f"{letter.follower:<20} {letter.position:>11} {letter.version:>8} "
                f"{letter.attempts:>8}  {letter.stream_id}, {letter.event_type}: {letter.error}"
            )
        if len(letters) > SHOWN_PARKED:
            self.stdout.write("... and more (the counts are in the table above)")

    def _forget(self, name: str) -> None:
        try:
            removed = forget(name)
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        what = "relay" if name.startswith(RELAY_PREFIX) else "follower"
        self.stdout.write(
            self.style.SUCCESS(
                f"forgot {what} {name}: its checkpoint and {removed} dead letter(s) removed"
            )
        )
