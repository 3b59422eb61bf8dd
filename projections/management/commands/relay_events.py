"""python manage.py relay_events: publish every stored event to NATS JetStream."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bank.progress import progress
from projections.follower import DEFAULT_ATTEMPTS, Backoff, Follower, Hooks
from projections.models import DeadLetter
from projections.relay import BrokerUnavailable, BusConfig, EventRefused, Relay, RelayConfigError
from projections.runner import parked_counts

REPORT_EVERY_SECONDS = 5.0


class Report(Hooks):
    """The command's output: progress every few seconds, failures, recoveries, parked events."""

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
        if isinstance(error, EventRefused):
            self.command.stderr.write(f"{error}; retrying in {retry_in:.1f} s")
            return
        self.relay.close()  # the next batch connects afresh
        self.command.stderr.write(
            f"publishing to NATS at {self.relay.config.url} failed ({error!r}); nothing is lost, "
            f"retrying in {retry_in:.1f} s"
        )

    def recovered(self) -> None:
        self.command.stdout.write("working again after the failure above; catching up")

    def parked(self, letter: DeadLetter) -> None:
        self.command.stderr.write(
            f"parked {letter.event_type} at position {letter.position} (version "
            f"{letter.version} of {letter.stream_id}): {letter.error}; the relay goes on; "
            "fix the cause, then run relay_events --retry-parked"
        )


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
        parser.add_argument(
            "--attempts",
            type=int,
            default=DEFAULT_ATTEMPTS,
            help=f"tries of an event the broker refuses before it is parked ({DEFAULT_ATTEMPTS}); "
            "with --once, also the failed rounds after which it gives up",
        )
        parser.add_argument(
            "--once", action="store_true", help="catch up, then exit (non-zero on failure)"
        )
        parser.add_argument(
            "--retry-parked",
            action="store_true",
            help="publish the parked events again, in position order, then exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.NATS_URL:
            self.stdout.write("NATS_URL is not set: the relay is not configured; nothing to do.")
            return
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["attempts"] < 1:
            raise CommandError("--attempts must be at least 1")
        config = BusConfig.from_settings()
        relay = Relay(config, batch_size=options["batch_size"], attempts=options["attempts"])
        try:
            if options["retry_parked"]:
                self._retry_parked(relay, options["verbosity"])
            else:
                self._follow(relay, options)
        except RelayConfigError as exc:
            raise CommandError(f"{exc}") from exc
        finally:
            relay.shutdown()

    def _follow(self, relay: Relay, options: dict[str, Any]) -> None:
        config = relay.config
        report = Report(self, relay)
        relay.parking.on_park = report.parked
        follower = Follower(
            lambda held: relay.run_once(),
            name=config.checkpoint_name,
            locks=[config.checkpoint_name],  # one relay per stream; others stand by
            poll_interval=options["poll_interval"],
            backoff=Backoff(
                first=min(0.5, options["max_backoff"]), longest=options["max_backoff"]
            ),
            # The broker's errors have no common base: whatever publishing raised is waited
            # out and retried; nothing is lost, as the checkpoint moves only on acks. A
            # configuration the server refused is not: waiting does not fix it.
            retry_on=(Exception,),
            fatal=(RelayConfigError,),
            give_up_after=options["attempts"] if options["once"] else None,
            once=options["once"],
            hooks=report,
        )
        self.stdout.write(f"relaying to {config.url}, stream {config.stream}; stop with Ctrl-C")
        try:
            with follower.stop_on_signals():
                published = follower.run()
        except RelayConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - --once gave up: the command's boundary
            raise CommandError(
                f"gave up after {options['attempts']} failed rounds, having published "
                f"{follower.handled} events: {exc!r}; nothing is lost (the checkpoint moves only "
                "on acknowledgements): fix the cause and run relay_events again"
            ) from exc
        summary = (
            f"published {published} events ({relay.duplicates} re-sends dropped as duplicates)"
        )
        if follower.last_error is not None:
            raise CommandError(
                ("stopped before it could publish" if not published else "stopped while failing")
                + f" ({follower.last_error!r}); {summary}; nothing is lost: fix the cause and "
                "start relay_events again"
            )
        waiting = parked_counts().get(config.checkpoint_name, 0)
        if options["once"] and waiting:
            raise CommandError(
                f"{summary}, but {waiting} event(s) are parked (projection_status lists them); "
                "fix the cause, then run relay_events --retry-parked"
            )
        self.stdout.write(self.style.SUCCESS(f"stopped cleanly; {summary}"))

    def _retry_parked(self, relay: Relay, verbosity: int) -> None:
        name = relay.config.checkpoint_name
        total = parked_counts().get(name, 0)
        if not total:
            self.stdout.write(f"{name} has no parked events; nothing to do.")
            return
        try:
            with progress(
                total=total,
                desc=f"retrying {name}'s parked events",
                file=sys.stderr if self.stderr.isatty() else self.stderr,
                verbosity=verbosity,
            ) as bar:
                result = relay.retry_parked(progress=bar.update)
        except RelayConfigError:
            raise
        except BrokerUnavailable as exc:
            raise CommandError(f"{exc}; the events stay parked: run it again later") from exc
        except Exception as exc:  # noqa: BLE001 - connecting failed: the command's boundary
            raise CommandError(
                f"connecting to NATS at {relay.config.url} failed ({exc!r}); the events stay "
                "parked: run it again once the broker is reachable"
            ) from exc
        message = f"{name}: {result.resolved} parked event(s) published"
        if result.still_parked:
            raise CommandError(
                f"{message}; {result.still_parked} still parked (projection_status shows "
                "why): fix the cause and run relay_events --retry-parked again"
            )
        self.stdout.write(self.style.SUCCESS(message))
