"""python manage.py rebuild_projections [name ...] [--batch-size N] [--in-place]

Builds the read models aside and swaps them in (``projections.rebuild``): the live ones keep
serving and following until one transaction replaces them.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import eventstore as es
from bank.progress import progress
from projections.base import ProjectionError
from projections.rebuild import NOT_TOUCHED, RebuildError, rebuild
from projections.runner import get_projections


class Command(BaseCommand):
    help = (
        "Replay every event into the named read models (all by default), built aside and "
        "swapped in while the live ones keep serving."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="projections to rebuild (default: all)")
        parser.add_argument(
            "--batch-size", type=int, default=5000, help="events per transaction (5000)"
        )
        parser.add_argument(
            "--in-place",
            action="store_true",
            help=(
                "empty the live read models and replay into them (readers see them empty "
                "and refilling); for a role that may not create tables, or a stopped service"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            projections = get_projections(options["names"])
        except ProjectionError as exc:
            raise CommandError(str(exc)) from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        names = [p.name for p in projections]
        in_place = options["in_place"]
        total = es.count_after(0)
        started = time.perf_counter()
        with progress(
            total=total,
            desc=f"rebuilding {', '.join(names)}" + (" in place" if in_place else ""),
            # The terminal itself for tqdm's bar; else the command's stderr (call_command's).
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=options["verbosity"],
        ) as bar:
            try:
                result = rebuild(
                    names, batch_size=options["batch_size"], progress=bar.update, in_place=in_place
                )
            except RebuildError as exc:
                raise CommandError(str(exc)) from exc
            except ProjectionError as exc:
                if in_place:
                    raise CommandError(
                        f"{exc}. The read model holds what was applied before it; fix the "
                        "cause and run rebuild_projections again."
                    ) from exc
                raise CommandError(f"{exc}. {NOT_TOUCHED}") from exc
        elapsed = max(time.perf_counter() - started, 1e-9)
        if options["verbosity"] < 1:
            return
        how = "in place" if in_place else "aside and swapped in"
        self.stdout.write(
            self.style.SUCCESS(
                f"rebuilt {', '.join(names)}: {result.applied} events applied in "
                f"{elapsed:.2f} s ({result.applied / elapsed:,.0f} events/s), {how}; "
                f"followers continue after position {result.position}"
            )
        )
