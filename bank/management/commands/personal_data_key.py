"""python manage.py personal_data_key --new KEY_ID | --rotate"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bank import privacy
from bank.services import encryption


class Command(BaseCommand):
    help = (
        "Make a new personal-data master key (--new ID: prints key_id:base64 for "
        "PII_MASTER_KEYS), or re-wrap every data key under the current master key (--rotate)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--new", metavar="KEY_ID", help="print a new master key")
        action.add_argument(
            "--rotate",
            action="store_true",
            help="re-wrap every data key with the first key of PII_MASTER_KEYS",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["new"]:
            try:
                self.stdout.write(privacy.new_master_key_text(options["new"]))
            except privacy.PersonalDataKeyError as exc:
                raise CommandError(str(exc)) from exc
            return
        try:
            moved, total = encryption.rotate()
        except privacy.PersonalDataKeyError as exc:
            raise CommandError(f"rotation stopped, nothing after it changed: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"re-wrapped {moved} of {total} data key(s) with master key "
                f"{encryption.master_keys().current}; the other keys of PII_MASTER_KEYS can "
                "be removed once every process runs with the new first key"
            )
        )
