"""A pg_dump of the store restores into a fresh database where verify_events passes."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from bank.services import Actor
from bank.services import accounts as svc
from tests.support import database_url, manage_env, run_manage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def test_a_dump_restores_into_a_fresh_database_with_history_intact(tmp_path):
    system = Actor.system("tests")
    a = svc.open_account(holder_name="Backed Up", initial_balance_cents=1_000, actor=system)
    b = svc.open_account(holder_name="Restored", actor=system)
    for amount in range(1, 30):
        svc.transfer(from_account=a.id, to_account=b.id, amount_cents=amount, actor=system)
    dump = tmp_path / "ledger.dump"
    subprocess.run(
        [
            str(PG_BIN / "pg_dump"),
            "--format=custom",
            f"--file={dump}",
            database_url(),
        ],
        check=True,
        capture_output=True,
    )
    restored = f"restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{restored}"')
    try:
        subprocess.run(
            [
                str(PG_BIN / "pg_restore"),
                "--exit-on-error",
                "--no-owner",
                f"--dbname={database_url(restored)}",
                str(dump),
            ],
            check=True,
            capture_output=True,
        )
        env = manage_env(database_url(restored))
        verify = run_manage(env, "verify_events")
        assert "2 streams" in verify.stdout and "60 events" in verify.stdout, verify.stdout
        balance = run_manage(
            env,
            "shell",
            "-c",
            "from bank.services import accounts as svc;"
            f"print(svc.get_account('{b.id}').balance_cents)",
        )
        assert balance.stdout.split()[-1] == str(sum(range(1, 30)))
        with psycopg.connect(
            database_url(restored), autocommit=True
        ) as db:  # the triggers came along
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                db.execute("DELETE FROM events")
    finally:
        with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
