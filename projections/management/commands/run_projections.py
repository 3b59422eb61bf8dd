"""python manage.py run_projections [name ...]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from projections.base import ProjectionError
from projections.follower import Backoff, Follower, Hooks
from projections.runner import get_projections, run_batch_group, status


class Report(Hooks):
    """The command's output: the projections taken over, failures and recoveries."""

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


class Command(BaseCommand):
    help = "Follow the event store and keep the projections up to date until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to follow (default: all)")
        parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (1000)")
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=1.0,
            help="seconds between polls (a fallback on PostgreSQL, which wakes on NOTIFY)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            names = [p.name for p in get_projections(options["names"])]
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        batch_size, poll_interval = options["batch_size"], options["poll_interval"]

        def step(held: list[str]) -> int:
            return run_batch_group(get_projections(held), limit=batch_size)

        follower = Follower(
            step,
            name=", ".join(names),
            locks=names,  # one per projection: runners of overlapping sets share the work
            poll_interval=poll_interval,
            backoff=Backoff(first=poll_interval, longest=poll_interval * 5),
            retry_on=(ProjectionError,),
            hooks=Report(self),
        )
        self.stdout.write(f"following {', '.join(names)} ({connection.vendor}); stop with Ctrl-C")
        with follower.stop_on_signals():
            applied = follower.run()
        self.stdout.write(self.style.SUCCESS(f"stopped cleanly; applied {applied} events"))
