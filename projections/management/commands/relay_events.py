"""python manage.py relay_events: publish every stored event to NATS JetStream."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

import eventstore as es
from projections.relay import BusConfig, Relay

from .run_projections import _lock_key

log = logging.getLogger("projections.relay")


class Command(BaseCommand):
    help = "Publish every stored event to NATS JetStream in global order until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="events per batch (500)")
        parser.add_argument(
            "--poll-interval", type=float, default=0.5, help="seconds between polls when idle"
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
        stop = threading.Event()

        def request_stop(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        config = BusConfig.from_settings()
        relay = Relay(config, batch_size=options["batch_size"])
        published, backoff, locked = 0, 0.5, False
        next_report = time.monotonic() + 5
        self.stdout.write(f"relaying to {config.url}, stream {config.stream}; stop with Ctrl-C")
        try:
            while not stop.is_set():
                try:
                    if connection.vendor == "postgresql" and not locked:
                        with connection.cursor() as cursor:
                            cursor.execute(
                                "SELECT pg_try_advisory_lock(%s)",
                                [_lock_key(config.checkpoint_name)],
                            )
                            locked = cursor.fetchone()[0]
                        if not locked:  # another relay is running: stand by
                            stop.wait(options["poll_interval"] * 4)
                            continue
                    count = relay.run_once()
                    published += count
                    if backoff > 0.5:
                        self.stdout.write("working again after the failure above; catching up")
                    backoff = 0.5
                    if count and time.monotonic() >= next_report:
                        self.stdout.write(
                            f"published {published} events so far "
                            f"({relay.duplicates} re-sends dropped as duplicates)"
                        )
                        next_report = time.monotonic() + 5
                    if not count:
                        if options["once"]:
                            break
                        stop.wait(options["poll_interval"])
                except (DatabaseError, es.StoreUnavailableError) as exc:
                    self.stderr.write(f"database unavailable ({exc}); retrying in {backoff:.1f} s")
                    connection.close()
                    locked = False
                    stop.wait(backoff)
                    backoff = min(backoff * 2, options["max_backoff"])
                except Exception as exc:  # noqa: BLE001 - the broker's errors: retry, lose nothing
                    log.warning("publishing to NATS failed: %r", exc)
                    self.stderr.write(
                        f"publishing to NATS at {config.url} failed ({exc!r}); nothing is lost, "
                        f"retrying in {backoff:.1f} s"
                    )
                    relay.close()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, options["max_backoff"])
        finally:
            relay.shutdown()
        self.stdout.write(
            self.style.SUCCESS(
                f"stopped cleanly; published {published} events "
                f"({relay.duplicates} re-sends dropped as duplicates)"
            )
        )
