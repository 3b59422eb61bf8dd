"""python manage.py signing_key --new KEY_ID | --public"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventstore.signing import KeyConfigError, generate_key_text, keyring


class Command(BaseCommand):
    help = (
        "Generate a new Ed25519 signing key for EVENTSTORE_SIGNING_KEY, or print the public "
        "keys that verify this store (for EVENTSTORE_VERIFY_KEYS of an outside verifier)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument(
            "--new",
            metavar="KEY_ID",
            help="print a new signing key `KEY_ID:base64` (keep it secret, out of the database)",
        )
        group.add_argument(
            "--public",
            action="store_true",
            help="print every trusted public key as EVENTSTORE_VERIFY_KEYS text",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["new"]:
            try:
                self.stdout.write(generate_key_text(options["new"]))
            except KeyConfigError as exc:
                raise CommandError(str(exc)) from exc
            return
        keys = keyring().public_key_texts()
        self.stdout.write(",".join(f"{key_id}:{text}" for key_id, text in keys.items()))
