"""python manage.py relay_events: publish every stored event to NATS JetStream."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from projections.follower import Backoff, Follower, Hooks
from projections.relay import BusConfig, Relay

REPORT_EVERY_SECONDS = 5.0


class Report(Hooks):
    """The command's output: progress every few seconds, failures and recoveries."""

    def __init__(self, command: BaseCommand, relay: Relay) -> None:
        self.command = command
        self.relay = relay
        self.published = 0
        self.next_report = time.monotonic() + REPORT_EVERY_SECONDS

    def progress(self, handled: int) -> None:
        self.published += handled
        if time.monotonic() >= self.next_report:
            self.command.stdout.write(
                f"published {self.published} events so far "
                f"({self.relay.duplicates} re-sends dropped as duplicates)"
            )
            self.next_report = time.monotonic() + REPORT_EVERY_SECONDS

    def failed(self, error: Exception, retry_in: float, *, database: bool) -> None:
        if database:
            self.command.stderr.write(
                f"database unavailable ({error}); retrying in {retry_in:.1f} s"
            )
            return
        self.relay.close()  # the next batch connects afresh
        self.command.stderr.write(
            f"publishing to NATS at {self.relay.config.url} failed ({error!r}); nothing is lost, "
            f"retrying in {retry_in:.1f} s"
        )

    def recovered(self) -> None:
        self.command.stdout.write("working again after the failure above; catching up")


class Command(BaseCommand):
    help = "Publish every stored event to NATS JetStream in global order until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="events per batch (500)")
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=0.5,
            help="seconds between polls (a fallback on PostgreSQL, which wakes on NOTIFY)",
        )
        parser.add_argument(
            "--max-backoff", type=float, default=30.0, help="longest wait between retries (30 s)"
        )
        parser.add_argument("--once", action="store_true", help="catch up, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.NATS_URL:
            self.stdout.write("NATS_URL is not set: the relay is not configured; nothing to do.")
            return
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        config = BusConfig.from_settings()
        relay = Relay(config, batch_size=options["batch_size"])
        follower = Follower(
            lambda held: relay.run_once(),
            name=config.checkpoint_name,
            locks=[config.checkpoint_name],  # one relay per stream; others stand by
            poll_interval=options["poll_interval"],
            backoff=Backoff(first=0.5, longest=options["max_backoff"]),
            # The broker's errors have no common base: whatever publishing raised is waited
            # out and retried; nothing is lost, as the checkpoint moves only on acks.
            retry_on=(Exception,),
            once=options["once"],
            hooks=Report(self, relay),
        )
        self.stdout.write(f"relaying to {config.url}, stream {config.stream}; stop with Ctrl-C")
        try:
            with follower.stop_on_signals():
                published = follower.run()
        finally:
            relay.shutdown()
        self.stdout.write(
            self.style.SUCCESS(
                f"stopped cleanly; published {published} events "
                f"({relay.duplicates} re-sends dropped as duplicates)"
            )
        )
