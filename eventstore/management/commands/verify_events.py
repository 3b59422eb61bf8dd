"""python manage.py verify_events [--full] [--digest-out FILE] [--digest FILE] [--stream ID]"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from eventstore import make_digest, run_verification, verify_all
from eventstore.runs import VerificationRunning
from eventstore.signing import KeyConfigError, keyring, verify_only_keyring


class Command(BaseCommand):
    help = (
        "Check the event store: every hash chain, the application's signatures, every "
        "snapshot (signature, anchor, state against the replay), and optionally a digest "
        "kept elsewhere. Incremental by default (only what is new since the last run); "
        "--full re-checks everything. Needs public keys only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="re-check every event and snapshot, not only what is new since the last run "
            "(run it daily; the health check fails when none succeeded recently)",
        )
        parser.add_argument(
            "--digest-out",
            metavar="FILE",
            help="write a digest of every stream's head to FILE, to keep off the database host "
            "(implies --full)",
        )
        parser.add_argument(
            "--digest",
            metavar="FILE",
            help="check that the store still extends a digest written earlier with --digest-out "
            "(implies --full)",
        )
        parser.add_argument(
            "--stream", metavar="ID", help="verify one stream in full (records nothing)"
        )
        parser.add_argument(
            "--verify-keys",
            metavar="KEYS",
            help="verify with these public keys only (key_id:base64,...) instead of the "
            "configured ones, as an outside auditor would",
        )

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
        try:
            keys = (
                verify_only_keyring(options["verify_keys"])
                if options["verify_keys"] is not None
                else keyring()
            )
        except KeyConfigError as exc:
            raise CommandError(str(exc)) from exc
        full = bool(options["full"] or digest is not None or options["digest_out"])

        from eventstore.models import Event

        total = Event.objects.count() if stream_id is None and full else None
        started = time.perf_counter()
        with tqdm(
            total=total,
            unit="ev",
            desc="verifying",
            file=sys.stderr,
            disable=None if options["verbosity"] >= 1 else True,
        ) as bar:
            if stream_id is not None:
                report = verify_all(stream_id=stream_id, progress=bar.update, keys=keys)
                if report.events == 0:
                    raise CommandError(
                        f"stream {stream_id} has no events: nothing was verified. Check the id "
                        "(an account's id is its stream's)."
                    )
            else:
                try:
                    report, _ = run_verification(
                        full=full, digest=digest, progress=bar.update, keys=keys
                    )
                except VerificationRunning as exc:
                    raise CommandError(str(exc)) from exc
        elapsed = max(time.perf_counter() - started, 1e-9)

        kind = "full" if report.full else "incremental"
        summary = (
            f"{kind} verification: checked {report.streams} streams, {report.events} events "
            f"and {report.snapshots} snapshots in {elapsed:.2f} s "
            f"({report.events / elapsed:,.0f} events/s)"
        )
        notes = []
        if not report.full:
            notes.append(
                f"not re-checked: {report.events_not_rechecked} events of "
                f"{report.streams_not_rechecked} streams verified by earlier runs "
                "(run --full to re-check them)"
            )
        if report.unsigned_events:
            notes.append(
                f"{report.unsigned_events} events of the unsigned segment (written before "
                "signing began) are protected by the hash chain and your digests only"
            )
        if report.unsigned_snapshots:
            notes.append(
                f"{report.unsigned_snapshots} snapshots from before signing are never used"
            )
        if report.snapshots_state_unchecked:
            notes.append(
                f"{report.snapshots_state_unchecked} snapshots of a kind with no registered "
                "replay: signature and anchor checked, state not"
            )
        for problem in report.all_problems():
            self.stderr.write(self.style.ERROR(problem))
        if not report.ok:
            counts = [
                f"{len(report.problems)} broken stream(s)" if report.problems else "",
                f"{len(report.snapshot_problems)} rejected snapshot(s)"
                if report.snapshot_problems
                else "",
                f"{len(report.digest_problems)} digest problem(s)"
                if report.digest_problems
                else "",
                f"{len(report.carried_problems)} problem(s) found earlier"
                if report.carried_problems
                else "",
                f"{len(report.store_problems)} store problem(s)" if report.store_problems else "",
            ]
            raise CommandError(
                f"{summary}: {', '.join(c for c in counts if c)}. Restore the named streams "
                "from a backup taken before the change, investigate who had write access to "
                "the database, and run verify_events --full once repaired."
            )
        if options["digest_out"]:
            path = Path(options["digest_out"])
            path.write_text(json.dumps(make_digest(report), indent=2) + "\n")
            summary += f"; digest of {len(report.heads)} stream heads written to {path}"
        if digest is not None:
            summary += f"; the store extends the digest of {digest.get('created_at')}"
        for note in notes:
            self.stdout.write(note)
        self.stdout.write(self.style.SUCCESS(f"{summary}: all chains and seals intact"))
