"""After an erasure the name is nowhere in the database, and a restored backup is erased
again."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.authtoken.models import Token

from bank.services import Actor, encryption, personal_data
from bank.services import accounts as svc
from projections import runner
from tests.support import database_url, dump_database, manage_env, restored, run_manage

NAME = "Wisława Szymborska"
# The name, and parts of it long enough to mean something, in any case.
NEEDLES = ("wisława szymborska", "szymborska", "wisława")


@pytest.fixture(autouse=True)
def _fresh_keys():
    encryption.forget_cached_keys()
    yield
    encryption.forget_cached_keys()


def _columns_holding(needles):
    """Every (table, column) of every table whose text holds one of the needles."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            for column in connection.introspection.get_table_description(cursor, table):
                quoted_table = connection.ops.quote_name(table)
                quoted = connection.ops.quote_name(column.name)
                cursor.execute(
                    f"SELECT COUNT(*) FROM {quoted_table} WHERE "
                    + " OR ".join([f"LOWER(CAST({quoted} AS TEXT)) LIKE %s"] * len(needles)),
                    [f"%{needle}%" for needle in needles],
                )
                if cursor.fetchone()[0]:
                    found.append((table, column.name))
    return found


def _teller(django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("teller9", password="x")
    user.groups.add(Group.objects.get(name="tellers"))
    return Token.objects.create(user=user).key


@pytest.mark.django_db
def test_after_an_erasure_no_table_holds_the_name_in_any_form(client, django_user_model, settings):
    settings.SNAPSHOT_INTERVAL = 2
    key = _teller(django_user_model)
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    opened = client.post(
        "/api/accounts/",
        {"holder_name": NAME, "initial_balance_cents": 500},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="open-1",
        **auth,
    )
    assert opened.status_code == 201, opened.content
    account = uuid.UUID(opened.json()["id"])
    for path, body in [
        ("deposit", {"amount_cents": 100, "description": "gift"}),
        ("withdraw", {"amount_cents": 600, "description": "all out"}),
        ("close", {"reason": "moved away"}),
    ]:
        answer = client.post(
            f"/api/accounts/{account}/{path}/",
            body,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"{path}-1",
            **auth,
        )
        assert answer.status_code == 200, answer.content
    assert client.get(f"/api/accounts/{account}/", **auth).json()["holder_name"] == NAME
    runner.catch_up()
    # Before: the name is in clear only where it is read from (the balances read model, the
    # stored answers of the Idempotency-Key requests); the events and snapshots hold tokens.
    before = {table for table, _ in _columns_holding(NEEDLES)}
    assert "events" not in before and "snapshots" not in before
    assert {"read_account_balances", "idempotency_records"} <= before, before
    personal_data.erase(account_id=account, reason="request 2026-7", actor=Actor.system("dpo"))
    runner.catch_up()
    assert _columns_holding(NEEDLES) == []
    # What the readers show instead; a replayed request answers with the name erased.
    assert client.get(f"/api/accounts/{account}/", **auth).json()["holder_name"] == "[erased]"
    replay = client.post(
        "/api/accounts/",
        {"holder_name": NAME, "initial_balance_cents": 500},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="open-1",
        **auth,
    )
    assert replay.status_code == 201 and replay.json()["holder_name"] == "[erased]"
    assert call_command("verify_events", "--full", verbosity=0) is None
    call_command("rebuild_projections", verbosity=0)
    assert _columns_holding(NEEDLES) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_dump_taken_before_an_erasure_is_erased_again_after_restore(tmp_path):
    system = Actor.system("tests")
    gone = svc.open_account(holder_name=NAME, actor=system)
    kept = svc.open_account(holder_name="Kept Holder", actor=system)
    svc.close(account_id=gone.id, reason="left", actor=system)
    dump = dump_database(tmp_path / "before.dump")
    personal_data.erase(account_id=gone.id, reason="request 8", actor=system)
    register = tmp_path / "erasure-register.txt"
    with register.open("w") as out:
        call_command("erase_personal_data", "--list", stdout=out)
    assert register.read_text().split() == [str(gone.id)]
    with restored(dump) as copy:
        env = manage_env(database_url(copy))
        show = (
            "from bank.services import accounts as svc;"
            f"print(svc.get_account('{gone.id}').holder_name);"
            f"print(svc.get_account('{kept.id}').holder_name)"
        )
        # The dump predates the erasure: its key is back, and the name reads again.
        assert run_manage(env, "shell", "-c", show).stdout.splitlines()[-2:] == [
            NAME,
            "Kept Holder",
        ]
        result = run_manage(env, "erase_personal_data", "--reapply", "--subjects", str(register))
        assert f"deleted again the data key of {gone.id}" in result.stdout, result.stdout
        assert run_manage(env, "shell", "-c", show).stdout.splitlines()[-2:] == [
            "[erased]",
            "Kept Holder",
        ]
        assert "all chains and seals intact" in run_manage(env, "verify_events", "--full").stdout
