"""python manage.py expire_approvals [--batch-size N] [--dry-run]

For cron: records every pending maker-checker request past its time to live as expired
(``approvals.expire_due``). Requests and the queue's reads expire the due ones they meet
anyway; this keeps the streams and the queue current when nobody looks.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

import eventstore as es
from bank.domain.approval import PENDING
from bank.models import ApprovalRequest
from bank.progress import progress
from bank.services import approvals
from bank.services.context import system_clock
from bank.services.errors import ApprovalNotFound


class Command(BaseCommand):
    help = "Record every pending approval request past APPROVAL_TTL_HOURS as expired (cron)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="requests expired per round (500); rounds go on until none is due",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count the due requests, expire none"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch = options["batch_size"]
        if batch < 1:
            raise CommandError("--batch-size must be at least 1")
        now = system_clock()
        try:
            due = self._due(now)
            if options["dry_run"]:
                self._summary(options, f"{due} approval request(s) due to expire; none expired")
                return
            expired = self._expire(batch, due, options["verbosity"])
            left = self._due(now)
        except ApprovalNotFound as exc:
            raise CommandError(
                f"{exc}, yet the approval queue lists it: the queue disagrees with the "
                "event store; run `manage.py rebuild_approvals`, then expire_approvals again"
            ) from exc
        except (DatabaseError, es.StoreUnavailableError) as exc:
            raise CommandError(
                f"the database failed while expiring approval requests ({exc}); what was "
                "expired stays expired: run expire_approvals again once it is back"
            ) from exc
        if left:
            raise CommandError(
                f"expired {expired} approval request(s), but {left} due request(s) are still "
                "pending in the queue while their streams say otherwise: run "
                "`manage.py rebuild_approvals`, then expire_approvals again"
            )
        self._summary(
            options, f"expired {expired} approval request(s) due at {now:%Y-%m-%d %H:%M:%S %Z}"
        )

    @staticmethod
    def _due(now: Any) -> int:
        return ApprovalRequest.objects.filter(status=PENDING, expires_at__lte=now).count()

    def _expire(self, batch: int, due: int, verbosity: int) -> int:
        expired = 0
        with progress(
            total=due,
            desc="expiring approval requests",
            unit="req",
            # The terminal itself for tqdm's bar; else the command's stderr (call_command's).
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=verbosity,
        ) as bar:
            while True:
                # A round skips the requests decided meanwhile: it ends the loop when it
                # expired none, so a request the streams say is decided cannot spin it.
                done = approvals.expire_due(limit=batch)
                bar.update(done)
                expired += done
                if not done:
                    return expired

    def _summary(self, options: dict[str, Any], text: str) -> None:
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(text))
