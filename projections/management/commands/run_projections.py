"""python manage.py run_projections [name ...]"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from bank.progress import progress
from projections.base import ProjectionError
from projections.follower import DATABASE_ERRORS, DEFAULT_ATTEMPTS, Backoff, Hooks
from projections.models import DeadLetter
from projections.runner import follower, get_projections, parked_counts, retry_parked, status

GIVEN_UP_ON: tuple[type[Exception], ...] = (ProjectionError, *DATABASE_ERRORS)
"""What ends a --once run that kept failing."""


class Report(Hooks):
    """The command's output: the projections taken over, failures, recoveries, parked events."""

    def __init__(self, command: BaseCommand) -> None:
        self.command = command

    def leading(self, name: str) -> None:
        self.command.stdout.write(f"following {name}")

    def caught_up(self, held: list[str]) -> None:
        status(held)  # publishes the lag gauge

    def failed(self, error: Exception, retry_in: float, *, database: bool) -> None:
        if database:
            message = f"database unavailable ({error}); retrying in {retry_in:.1f} s"
        else:
            message = f"{error}; retrying in {retry_in:.1f} s"
        self.command.stderr.write(message)

    def recovered(self) -> None:
        self.command.stdout.write("working again after the failure above; catching up")

    def parked(self, letter: DeadLetter) -> None:
        self.command.stderr.write(
            f"{letter.follower}: parked {letter.event_type} at position {letter.position} "
            f"(version {letter.version} of {letter.stream_id}): {letter.error}; the projection "
            "goes on; fix the cause, then run run_projections --retry-parked"
        )


class Command(BaseCommand):
    help = "Follow the event store and keep the projections up to date until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to follow (default: all)")
        parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (1000)")
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=1.0,
            help="seconds between polls (a fallback on PostgreSQL, which wakes on NOTIFY), and "
            "the first wait before an event that failed is tried again",
        )
        parser.add_argument(
            "--attempts",
            type=int,
            default=DEFAULT_ATTEMPTS,
            help=f"tries of an event before it is parked ({DEFAULT_ATTEMPTS}); with --once, "
            "also the failed rounds after which it gives up",
        )
        parser.add_argument(
            "--once", action="store_true", help="catch up, then exit (non-zero on failure)"
        )
        parser.add_argument(
            "--retry-parked",
            action="store_true",
            help="apply the parked events again, in position order, then exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            names = [p.name for p in get_projections(options["names"])]
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        if options["batch_size"] < 1 or options["attempts"] < 1:
            raise CommandError("--batch-size and --attempts must be at least 1")
        if options["retry_parked"]:
            self._retry_parked(names, options["verbosity"])
            return
        report = Report(self)
        poll_interval = options["poll_interval"]
        runner = follower(
            names,
            batch_size=options["batch_size"],
            poll_interval=poll_interval,
            attempts=options["attempts"],
            backoff=Backoff(first=poll_interval, longest=poll_interval * 5),
            once=options["once"],
            hooks=report,
            on_park=report.parked,
        )
        self.stdout.write(f"following {', '.join(names)} ({connection.vendor}); stop with Ctrl-C")
        try:
            with runner.stop_on_signals():
                applied = runner.run()
        except GIVEN_UP_ON as exc:  # --once gave up
            raise CommandError(
                f"gave up after {options['attempts']} failed rounds: {exc}; fix the cause and "
                "run run_projections again"
            ) from exc
        waiting = sum(n for name, n in parked_counts().items() if name in names)
        if runner.last_error is not None:
            raise CommandError(
                f"stopped while failing ({runner.last_error}); applied {applied} events"
            )
        if options["once"] and waiting:
            raise CommandError(
                f"applied {applied} events, but {waiting} event(s) are parked "
                "(projection_status lists them); fix the cause, then run "
                "run_projections --retry-parked"
            )
        self.stdout.write(self.style.SUCCESS(f"stopped cleanly; applied {applied} events"))

    def _retry_parked(self, names: list[str], verbosity: int) -> None:
        counts = parked_counts()
        total = sum(counts.get(name, 0) for name in names)
        if not total:
            self.stdout.write(f"no parked events for {', '.join(names)}; nothing to do.")
            return
        with progress(
            total=total,
            desc="retrying parked events",
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=verbosity,
        ) as bar:
            results = retry_parked(names, progress=bar.update)
        failing = {name: r.still_parked for name, r in results.items() if r.still_parked}
        summary = ", ".join(
            f"{name}: {r.resolved} applied" for name, r in results.items() if r.resolved
        )
        if failing:
            raise CommandError(
                (f"{summary}; " if summary else "")
                + ", ".join(f"{name}: {n} still parked" for name, n in failing.items())
                + " (projection_status shows why): fix the cause and run "
                "run_projections --retry-parked again"
            )
        self.stdout.write(self.style.SUCCESS(summary or "nothing was parked"))
