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


def test_a_snapshot_forged_by_the_app_role_is_never_used_and_is_caught(app_role, capsys):
    """Issue 14: the app role may INSERT into snapshots; without the signing key it cannot
    make one that loads accept, verify_events passes or the health check ignores."""
    from django.core.management import CommandError, call_command

    account = svc.open_account(
        holder_name="Target", initial_balance_cents=1_234, actor=Actor.system("t")
    )
    call_command("verify_events", "--full", verbosity=0)
    with psycopg.connect(app_role, autocommit=True) as app:
        app.execute(
            "INSERT INTO snapshots (stream_id, stream_type, version, schema_version, state, "
            "created_at, anchor_hash, signature, key_id) SELECT stream_id, stream_type, 1, 1, "
            "%s::jsonb, now(), hash, %s, 'dev' FROM events WHERE stream_id = %s AND version = 1",
            [
                '{"holder_name": "Target", "currency": "EUR", "balance_cents": 100000000000, '
                '"status": "active"}',
                "A" * 86 + "==",
                account.id,
            ],
        )
        for statement in (
            "INSERT INTO signing_epoch (events_from_position, snapshots_from_id, created_at) "
            "VALUES (1000000, 1000000, now())",
            "UPDATE signing_epoch SET events_from_position = 1000000",
            # What verify_events recorded: only the verifier writes it.
            'INSERT INTO verification_runs (started_at, finished_at, "full", ok, streams, '
            "events, snapshots, events_not_rechecked, head_position, snapshot_id_reached, "
            "root, problems) VALUES (now(), now(), true, true, 0, 0, 0, 0, 1000000000, "
            "1000000000, '', '[]')",
            "UPDATE stream_verifications SET problem = ''",
            "DELETE FROM verification_runs",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
    # Loads (also as the app role, in its own process) replay instead of using it.
    result = _as_app(
        app_role,
        "from bank.services import accounts as svc; import uuid;"
        f"print('BALANCE', svc.get_account(uuid.UUID('{account.id}')).balance_cents)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["BALANCE", "1234"]
    assert f"snapshot of stream {account.id} at version 1 rejected" in result.stderr
    with pytest.raises(CommandError):
        call_command("verify_events", verbosity=0)
    assert f"stream {account.id}: snapshot at version 1: its signature does not verify" in (
        capsys.readouterr().err
    )
    with pytest.raises(CommandError, match="found 1 problem"):
        call_command("healthcheck")
