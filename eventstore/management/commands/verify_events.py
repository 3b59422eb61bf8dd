"""python manage.py verify_events [--digest-out FILE] [--digest FILE] [--stream ID]"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from eventstore import make_digest, verify_all


class Command(BaseCommand):
    help = "Recompute every stream's hash chain and name the first bad event of each broken one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--digest-out",
            metavar="FILE",
            help="write a digest of every stream's head to FILE, to keep off the database host",
        )
        parser.add_argument(
            "--digest",
            metavar="FILE",
            help="check that the store still extends a digest written earlier with --digest-out",
        )
        parser.add_argument("--stream", metavar="ID", help="verify one stream only")

    def handle(self, *args: Any, **options: Any) -> None:
        digest = None
        if options["digest"]:
            try:
                digest = json.loads(Path(options["digest"]).read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the digest {options['digest']}: {exc}") from exc
        stream_id = None
        if options["stream"]:
            try:
                stream_id = uuid.UUID(options["stream"])
            except ValueError as exc:
                raise CommandError(f"--stream must be a UUID, not {options['stream']!r}") from exc
        if stream_id is not None and (digest is not None or options["digest_out"]):
            raise CommandError("--stream cannot be combined with --digest or --digest-out")

        from eventstore.models import Event

        total = Event.objects.count() if stream_id is None else None
        started = time.perf_counter()
        with tqdm(
            total=total,
            unit="ev",
            desc="verifying",
            file=sys.stderr,
            disable=None if options["verbosity"] >= 1 else True,
        ) as bar:
            report = verify_all(digest=digest, stream_id=stream_id, progress=bar.update)
        elapsed = max(time.perf_counter() - started, 1e-9)

        summary = (
            f"checked {report.streams} streams, {report.events} events in {elapsed:.2f} s "
            f"({report.events / elapsed:,.0f} events/s)"
        )
        for problem in report.problems:
            self.stderr.write(self.style.ERROR(str(problem)))
        for problem in report.digest_problems:
            self.stderr.write(self.style.ERROR(f"digest: {problem}"))
        if not report.ok:
            raise CommandError(
                f"{summary}: {len(report.problems)} broken stream(s)"
                + (
                    f", {len(report.digest_problems)} digest problem(s)"
                    if report.digest_problems
                    else ""
                )
                + ". Restore the named streams from a backup taken before the change and "
                "investigate who had write access to the database."
            )
        if options["digest_out"]:
            path = Path(options["digest_out"])
            path.write_text(json.dumps(make_digest(report), indent=2) + "\n")
            summary += f"; digest of {len(report.heads)} stream heads written to {path}"
        if digest is not None:
            summary += f"; the store extends the digest of {digest.get('created_at')}"
        self.stdout.write(self.style.SUCCESS(f"{summary}: all chains intact"))
