"""python manage.py erase_personal_data --account UUID --reason "…" | --reapply | --list"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bank.domain import DomainError
from bank.progress import progress
from bank.services import Actor, personal_data
from bank.services.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Erase an account holder's personal data (GDPR Art. 17): delete their data key and "
        "append PersonalDataErased. --reapply deletes again the keys of every subject erased "
        "before (run it after restoring a backup)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", metavar="UUID", help="the account whose holder to erase")
        target.add_argument(
            "--list",
            action="store_true",
            help="print the id of every erased subject, one per line (the erasure register "
            "to keep outside the database, for --reapply --subjects after a restore)",
        )
        target.add_argument(
            "--reapply",
            action="store_true",
            help="re-erase every subject with a PersonalDataErased event (after a restore)",
        )
        parser.add_argument(
            "--subjects",
            metavar="FILE",
            help="with --reapply: a file of subject (account) ids, one per line, erased "
            "according to a register kept outside this database",
        )
        parser.add_argument("--reason", default="", help="why (required with --account)")
        parser.add_argument(
            "--actor",
            default="erase_personal_data",
            help="the name recorded as who erased (default: the command's)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for subject in dict.fromkeys(personal_data.erased_subjects()):
                self.stdout.write(str(subject))
            return
        if options["reapply"]:
            self._reapply(options["verbosity"], self._subjects(options["subjects"]))
            return
        if options["subjects"]:
            raise CommandError("--subjects goes with --reapply")
        try:
            account_id = uuid.UUID(options["account"])
        except ValueError as exc:
            raise CommandError(f"--account must be a UUID, not {options['account']!r}") from exc
        if not options["reason"].strip():
            raise CommandError('--reason is required: say why, e.g. --reason "request 2026-114"')
        try:
            state = personal_data.erase(
                account_id=account_id,
                reason=options["reason"],
                actor=Actor.system(options["actor"]),
            )
        except (DomainError, ServiceError) as exc:
            raise CommandError(f"nothing was erased: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"erased the personal data of account {state.id} (version {state.version}): "
                "its data key is deleted; the events keep only ciphertext"
            )
        )

    @staticmethod
    def _subjects(path: str | None) -> list[uuid.UUID]:
        if not path:
            return []
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"--subjects {path}: cannot read it ({exc.strerror})") from exc
        subjects = []
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                subjects.append(uuid.UUID(text))
            except ValueError as exc:
                raise CommandError(
                    f"--subjects {path}, line {number}: {text!r} is not an account id; "
                    "nothing was deleted"
                ) from exc
        return subjects

    def _reapply(self, verbosity: int, also: list[uuid.UUID]) -> None:
        with progress(
            total=None,
            desc="reading the store",
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=verbosity,
        ) as bar:

            def step(reached: int, head: int) -> None:
                bar.total = head
                bar.update(reached - bar.n)

            deleted = personal_data.reapply(also=also, on_batch=step)
        for subject in deleted:
            self.stdout.write(f"deleted again the data key of {subject}")
        self.stdout.write(
            self.style.SUCCESS(
                f"re-applied the erasures: {len(deleted)} data key(s) deleted again "
                "(the others were gone already)"
            )
        )
