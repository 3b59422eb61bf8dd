"""Personal data in the read models, on the bus's message bodies and after a rebuild."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from bank import privacy
from bank.selectors import account_list
from bank.services import Actor, encryption, personal_data
from bank.services import accounts as svc
from projections import runner
from projections.models import AccountBalance
from tests.projections.helpers import balance_rows, history_rows

pytestmark = pytest.mark.django_db

CLERK = Actor(username="clerk", user_id=3, auth="admin")


@pytest.fixture(autouse=True)
def _fresh_keys():
    encryption.forget_cached_keys()
    yield
    encryption.forget_cached_keys()


def test_the_read_models_show_and_search_the_name_until_erased_and_a_rebuild_agrees():
    kept = svc.open_account(holder_name="Sofia Kovalevskaya", actor=CLERK)
    gone = svc.open_account(holder_name="Marie Skłodowska", initial_balance_cents=10, actor=CLERK)
    runner.catch_up()
    assert [row.holder_name for row in account_list(search="skłodowska")] == ["Marie Skłodowska"]
    svc.withdraw(account_id=gone.id, amount_cents=10, actor=CLERK)
    svc.close(account_id=gone.id, reason="left", actor=CLERK)
    personal_data.erase(account_id=gone.id, reason="request 12", actor=CLERK)
    runner.catch_up()
    row = AccountBalance.objects.get(account_id=gone.id)
    assert (row.holder_name, row.holder_search, row.status) == ("[erased]", "", "closed")
    assert not account_list(search="skłodowska").exists()
    assert AccountBalance.objects.get(account_id=kept.id).holder_name == "Sofia Kovalevskaya"
    live = (balance_rows(), history_rows())
    call_command("rebuild_projections", verbosity=0)
    assert (balance_rows(), history_rows()) == live


def test_the_stored_payload_the_relay_publishes_holds_only_the_ciphertext():
    from projections.relay import message_body

    account = svc.open_account(holder_name="Hypatia", actor=CLERK)
    (opened,) = svc.account_events(account.id)
    body = json.loads(message_body(opened))
    assert privacy.is_token(body["data"]["holder_name"])
    assert "Hypatia" not in str(body)
    assert body["schema_version"] == 2


@pytest.mark.django_db(transaction=True)  # the openings commit, as in production
def test_a_batch_of_openings_reads_its_holders_keys_in_one_query():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for number in range(20):
        svc.open_account(holder_name=f"Holder {number}", actor=CLERK)
    encryption.forget_cached_keys()
    with CaptureQueriesContext(connection) as queries:
        runner.catch_up()
    reads = [q["sql"] for q in queries if "personal_data_keys" in q["sql"]]
    assert len(reads) == 1, reads
    assert AccountBalance.objects.filter(holder_name__startswith="Holder ").count() == 20
