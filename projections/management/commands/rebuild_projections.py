"""python manage.py rebuild_projections [name ...]"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import eventstore as es
from bank.progress import progress
from projections.base import ProjectionError
from projections.runner import catch_up, get_projections, reset


class Command(BaseCommand):
    help = "Empty the named read models (all by default) and replay every event into them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to rebuild (default: all)")
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="events per transaction (5000)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            projections = get_projections(options["names"])
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        names = [p.name for p in projections]
        total = es.count_after(0)
        started = time.perf_counter()
        reset(names)
        with progress(
            total=total,
            desc=f"rebuilding {', '.join(names)}",
            # The terminal itself for tqdm's bar; else the command's stderr (call_command's).
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=options["verbosity"],
        ) as bar:
            try:
                applied = catch_up(names, limit=options["batch_size"], progress=bar.update)
            except ProjectionError as exc:
                raise CommandError(
                    f"{exc}. The read model holds what was applied before it; fix the cause "
                    "and run rebuild_projections again."
                ) from exc
        elapsed = max(time.perf_counter() - started, 1e-9)
        if options["verbosity"] < 1:
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"rebuilt {', '.join(names)}: {applied} events applied in {elapsed:.2f} s "
                f"({applied / elapsed:,.0f} events/s)"
            )
        )
