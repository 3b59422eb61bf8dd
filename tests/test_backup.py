"""A pg_dump of the store restores into a fresh database where verify_events passes."""

from __future__ import annotations

import psycopg
import pytest

from bank.services import Actor
from bank.services import accounts as svc
from tests.support import database_url, dump_database, manage_env, restored, run_manage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_dump_restores_into_a_fresh_database_with_history_intact(tmp_path):
    system = Actor.system("tests")
    a = svc.open_account(holder_name="Backed Up", initial_balance_cents=1_000, actor=system)
    b = svc.open_account(holder_name="Restored", actor=system)
    for amount in range(1, 30):
        svc.transfer(from_account=a.id, to_account=b.id, amount_cents=amount, actor=system)
    with restored(dump_database(tmp_path / "ledger.dump")) as copy:
        env = manage_env(database_url(copy))
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
        with psycopg.connect(database_url(copy), autocommit=True) as db:  # the triggers came along
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                db.execute("DELETE FROM events")
