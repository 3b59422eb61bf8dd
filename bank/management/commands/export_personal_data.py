"""python manage.py export_personal_data --account UUID --out FILE"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bank.files import write_atomically
from bank.services import personal_data
from bank.services.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Write everything the bank holds about an account's holder, from the events, to a "
        "JSON file (GDPR Art. 15: the subject's right of access)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, metavar="UUID", help="the account's id")
        parser.add_argument(
            "--out", required=True, metavar="FILE", help="where to write it (replaced)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account_id = uuid.UUID(options["account"])
        except ValueError as exc:
            raise CommandError(f"--account must be a UUID, not {options['account']!r}") from exc
        out = Path(options["out"])
        if not out.parent.is_dir():
            raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
        try:
            held = personal_data.export(account_id)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        write_atomically(out, json.dumps(held, indent=2, ensure_ascii=False) + "\n")
        self.stdout.write(
            self.style.SUCCESS(
                f"wrote the personal data held about account {account_id} "
                f"({len(held['events'])} events) to {out}"
            )
        )
