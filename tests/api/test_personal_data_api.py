"""Personal data over HTTP (issue 20): names shown to the caller, never the stored token, and
``[erased]`` in every answer once the holder's data is erased."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection

import eventstore as es
from bank import privacy
from bank.api.fields import ACCOUNT_EVENT_TYPES
from bank.domain import EVENT_TYPES
from bank.services import Actor, encryption, personal_data
from projections import runner

pytestmark = pytest.mark.django_db

NAME = "Émilie du Châtelet"
# In any form a database may hold the name (JSON escapes the accents): this part of it.
NAME_PART = "milie du Ch"
OFFICER = Actor(username="dpo", user_id=9, auth="admin")
REASON = "erasure request 2026-117"


@pytest.fixture(autouse=True)
def _fresh_keys():
    encryption.forget_cached_keys()
    yield
    encryption.forget_cached_keys()


def events_of(client, account):
    response = client.get(f"/api/accounts/{account['id']}/events/")
    assert response.status_code == 200, response.content
    return response


def stored_account_opened():
    """The events table's AccountOpened payloads, as the database holds them (raw SQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CAST(data AS TEXT) FROM events WHERE event_type = %s", ["AccountOpened"]
        )
        return [row[0] for row in cursor.fetchall()]


def erased(client, open_account):
    account = open_account(holder=NAME)
    closed = client.post(
        f"/api/accounts/{account['id']}/close/", {"reason": "moved abroad"}, format="json"
    )
    assert closed.status_code == 200, closed.content
    personal_data.erase(account_id=uuid.UUID(account["id"]), reason=REASON, actor=OFFICER)
    return account


def test_the_answers_show_the_name_and_the_events_table_holds_only_the_token(teller, open_account):
    account = open_account(holder=NAME)
    assert account["holder_name"] == NAME
    assert teller.get(f"/api/accounts/{account['id']}/").json()["holder_name"] == NAME
    (opened,) = events_of(teller, account).json()["results"]
    assert opened["event_type"] == "AccountOpened" and opened["schema_version"] == 2
    assert opened["data"]["holder_name"] == NAME
    assert privacy.TOKEN_PREFIX not in json.dumps(opened)

    (stored,) = stored_account_opened()
    held = json.loads(stored)["holder_name"]
    assert held.startswith(f"{privacy.TOKEN_PREFIX}{account['id']}:")
    assert NAME_PART not in stored and "Ch\\u00e2telet" not in stored


def test_after_erasure_every_answer_shows_erased_and_never_the_name(teller, auditor, open_account):
    account = erased(teller, open_account)
    path = f"/api/accounts/{account['id']}/"

    now = teller.get(path)
    assert now.status_code == 200 and now.json()["holder_name"] == privacy.ERASED
    before = teller.get(path, {"as_of_version": 1})
    assert before.status_code == 200, before.content
    assert before.json()["holder_name"] == privacy.ERASED and before.json()["version"] == 1

    for client in (teller, auditor):
        response = events_of(client, account)
        assert NAME_PART not in response.content.decode()
        assert privacy.TOKEN_PREFIX not in response.content.decode()
        events = response.json()["results"]
        assert [e["event_type"] for e in events] == [
            "AccountOpened",
            "AccountClosed",
            "PersonalDataErased",
        ]
        assert events[0]["data"]["holder_name"] == privacy.ERASED
        assert events[-1]["data"] == {"reason": REASON}
        assert events[-1]["metadata"]["actor"]["username"] == OFFICER.username

    runner.catch_up()
    listed = teller.get("/api/accounts/")
    assert listed.status_code == 200
    (row,) = [a for a in listed.json()["results"] if a["id"] == account["id"]]
    assert row["holder_name"] == privacy.ERASED
    assert NAME_PART not in listed.content.decode()
    assert teller.get("/api/accounts/", {"search": "Châtelet"}).json()["count"] == 0
    # The token stays in the events (the chain covers it), unreadable for good.
    (stored,) = stored_account_opened()
    assert json.loads(stored)["holder_name"].startswith(privacy.TOKEN_PREFIX)
    assert es.verify_stream(uuid.UUID(account["id"])) is None


def test_events_written_before_encryption_show_what_they_hold(teller):
    account_id = uuid.uuid4()
    es.append(
        account_id,
        [
            es.NewEvent(
                event_type="AccountOpened",
                schema_version=1,
                data={"holder_name": "Old Clear", "currency": "EUR", "initial_balance_cents": 0},
                occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
            )
        ],
        stream_type="bank.account",
        expected_version=0,
        metadata={"actor": {"username": "legacy"}},
    )
    (opened,) = events_of(teller, {"id": str(account_id)}).json()["results"]
    assert opened["schema_version"] == 1 and opened["data"]["holder_name"] == "Old Clear"


@pytest.fixture(scope="module")
def doc():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    return json.loads(out.getvalue())


def test_the_document_says_personal_fields_are_decrypted_and_read_erased_after_erasure(doc):
    (events,) = [
        op
        for item in doc["paths"].values()
        for op in item.values()
        if op["operationId"] == "accounts_events"
    ]
    data = doc["components"]["schemas"]["Event"]["properties"]["data"]
    for text in (events["description"], data["description"]):
        assert "decrypted for the caller" in text
        assert "[erased]" in text and "PersonalDataErased" in text
        assert "written before encryption" in text and "show what they hold" in text


def test_the_event_type_enum_has_every_account_event_erasure_included(doc):
    assert set(ACCOUNT_EVENT_TYPES) == set(EVENT_TYPES)
    assert "PersonalDataErased" in doc["components"]["schemas"]["EventType"]["enum"]
