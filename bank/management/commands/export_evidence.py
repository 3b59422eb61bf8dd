"""python manage.py export_evidence --account UUID [--up-to-version N] --out FILE"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import eventstore as es
from bank.domain import Account
from bank.files import write_atomically
from bank.services import accounts as svc
from eventstore import EventStoreError


class Command(BaseCommand):
    help = (
        "Write an account's evidence pack (its events, seals, snapshot and public keys) to a "
        "JSON file that an auditor checks with the README's verify_evidence.py."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, metavar="UUID", help="the account's id")
        parser.add_argument(
            "--up-to-version",
            type=int,
            metavar="N",
            help="the last version the pack is about (default: the newest); the events up to "
            "the next signed one are added when version N is in the middle of an append",
        )
        parser.add_argument(
            "--out", required=True, metavar="FILE", help="where to write the pack (replaced)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account_id = uuid.UUID(options["account"])
        except ValueError as exc:
            raise CommandError(f"--account must be a UUID, not {options['account']!r}") from exc
        version = svc.account_version(account_id)
        if version == 0:
            raise CommandError(f"no account {account_id}: check the id (`GET /api/accounts/`)")
        up_to = options["up_to_version"]
        if up_to is not None and not 1 <= up_to <= version:
            raise CommandError(
                f"--up-to-version {up_to} is outside account {account_id}'s history: give a "
                f"version from 1 to {version}"
            )
        out = Path(options["out"])
        if not out.parent.is_dir():
            raise CommandError(f"--out {out}: the folder {out.parent} does not exist")
        try:
            pack = es.build_pack(
                account_id,
                up_to_version=up_to,
                snapshot_schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
            )
        except EventStoreError as exc:
            raise CommandError(f"cannot export account {account_id}: {exc}") from exc
        write_atomically(out, json.dumps(pack, indent=2, ensure_ascii=False) + "\n")
        if options["verbosity"] >= 1:
            sealed = pack["sealed_through"]
            self.stdout.write(
                self.style.SUCCESS(
                    f"wrote {len(pack['events'])} events of account {account_id} through version "
                    f"{pack['up_to_version']}, "
                    + (f"sealed through version {sealed}" if sealed else "unsigned segment")
                    + f", keys {', '.join(pack['public_keys'])}, to {out}"
                )
            )
            self.stdout.write(
                f"verify it with the README's script: python verify_evidence.py {out} (and "
                "compare its keys with `python manage.py signing_key --public`)"
            )
