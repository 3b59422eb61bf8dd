"""The application runs as a role that cannot change history, triggers or no triggers.

The role gets exactly the grants of config/app_role.sql (the README's); the app then runs
as that role in a separate process: commands, projections, verification. The role cannot
UPDATE, DELETE or TRUNCATE events and snapshots, nor switch the triggers off, even while
the owner has switched them off.
"""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from django.db import connection

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from tests.support import ROOT, database_url, manage_env, run_manage, triggers_disabled

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROLE = "ledger_app_test"


@pytest.fixture
def app_role():
    grants = (ROOT / "config" / "app_role.sql").read_text().replace("ledger_app", ROLE)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {ROLE}" if _role_exists(cursor) else "SELECT 1")
        cursor.execute(f"DROP ROLE IF EXISTS {ROLE}")
        cursor.execute(f"CREATE ROLE {ROLE} LOGIN")
        cursor.execute(f"GRANT CONNECT ON DATABASE {connection.settings_dict['NAME']} TO {ROLE}")
        cursor.execute(grants)
    url = database_url(user=ROLE)
    try:
        yield url
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {ROLE}")
            cursor.execute(f"DROP ROLE {ROLE}")


def _role_exists(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE])
    return cursor.fetchone() is not None


def _as_app(url: str, code: str) -> subprocess.CompletedProcess:
    return run_manage(manage_env(url), "shell", "-c", code)


def test_the_app_works_as_the_restricted_role(app_role):
    result = _as_app(
        app_role,
        "from bank.services import Actor, accounts as svc;"
        "from projections import runner;"
        "import eventstore as es;"
        "a = svc.open_account(holder_name='Least', initial_balance_cents=100, actor=Actor.system('t'));"
        "b = svc.open_account(holder_name='Privilege', actor=Actor.system('t'));"
        "svc.transfer(from_account=a.id, to_account=b.id, amount_cents=40, actor=Actor.system('t'));"
        "runner.catch_up(); runner.reset(); runner.catch_up();"
        "assert es.verify_all().ok;"
        "print('OK', svc.get_account(b.id).balance_cents)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["OK", "40"]


def test_the_restricted_role_cannot_change_history_even_without_triggers(app_role):
    account = svc.open_account(
        holder_name="History", initial_balance_cents=5, actor=Actor.system("t")
    )
    with triggers_disabled(), psycopg.connect(app_role, autocommit=True) as app:
        for statement in (
            "UPDATE events SET data = '{}'::jsonb",
            "DELETE FROM events",
            "TRUNCATE events",
            "UPDATE snapshots SET state = '{}'::jsonb",
            "DELETE FROM snapshots",
            "ALTER TABLE events DISABLE TRIGGER ALL",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
    assert [e.version for e in es.read_stream(account.id)] == [1]
    assert es.verify_all().ok
