"""The REST API through Django's stack: every endpoint, every error code, the traps."""

from __future__ import annotations

import json
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError

import eventstore as es
from bank.services import accounts as svc
from eventstore.models import Event
from projections import runner
from tests.support import now

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:ledgerline:problem:{code}" and body["title"] and body["detail"]
    return body


def post(client, path, body, **headers):
    return client.post(path, body, format="json", headers=headers)


# --- authentication and roles ---------------------------------------------------------


def test_anonymous_requests_get_401_with_the_token_challenge(anonymous):
    for response in (anonymous.get("/api/accounts/"), post(anonymous, "/api/accounts/", {})):
        assert_problem(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"] == "Token"


def test_a_bad_token_gets_401(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Token nope")
    assert_problem(anonymous.get("/api/accounts/"), 401, "not_authenticated")


def test_auditors_query_but_cannot_command(auditor, open_account):
    account = open_account(100)
    assert auditor.get(f"/api/accounts/{account['id']}/").status_code == 200
    response = post(auditor, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 5})
    assert_problem(response, 403, "permission_denied")
    assert_problem(post(auditor, "/api/accounts/", {"holder_name": "X"}), 403, "permission_denied")
    assert svc.get_account(uuid.UUID(account["id"])).version == 1


def test_a_user_without_a_role_can_do_nothing(nobody, open_account):
    account = open_account()
    assert_problem(nobody.get("/api/accounts/"), 403, "permission_denied")
    assert_problem(nobody.get(f"/api/accounts/{account['id']}/"), 403, "permission_denied")


def test_superusers_may_do_all(superuser):
    response = post(superuser, "/api/accounts/", {"holder_name": "Root's"})
    assert response.status_code == 201


def test_session_authentication_works_for_staff(client, teller_user, open_account):
    account = open_account()
    client.force_login(teller_user)  # a session as the admin's login makes one
    assert client.get(f"/api/accounts/{account['id']}/").status_code == 200


# --- open, read, list -----------------------------------------------------------------


def test_open_returns_201_with_the_account_location_and_etag(teller):
    response = post(
        teller,
        "/api/accounts/",
        {"holder_name": "Grace", "currency": "USD", "initial_balance_cents": 1500},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "holder_name", "currency", "balance_cents", "status", "version"}
    assert (
        body["holder_name"],
        body["currency"],
        body["balance_cents"],
        body["status"],
        body["version"],
    ) == ("Grace", "USD", 1500, "active", 1)
    assert response["Location"] == f"/api/accounts/{body['id']}/"
    assert response["ETag"] == '"1"'
    event = es.read_stream(uuid.UUID(body["id"]))[0]
    assert event.metadata["actor"] == {
        "id": event.metadata["actor"]["id"],
        "username": "teller",
        "auth": "token",
    }


def test_open_defaults_to_euro_and_zero(teller):
    body = post(teller, "/api/accounts/", {"holder_name": "Min"}).json()
    assert (body["currency"], body["balance_cents"]) == ("EUR", 0)


def test_get_reads_the_events_and_sets_the_etag(teller, open_account):
    account = open_account(100)
    post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 50})
    response = teller.get(f"/api/accounts/{account['id']}/")  # no projection run: still current
    assert response.json()["balance_cents"] == 150 and response["ETag"] == '"2"'


def test_unknown_accounts_are_404(teller):
    missing = uuid.uuid4()
    for response in (
        teller.get(f"/api/accounts/{missing}/"),
        post(teller, f"/api/accounts/{missing}/deposit/", {"amount_cents": 1}),
        teller.get(f"/api/accounts/{missing}/events/"),
        teller.get(f"/api/accounts/{missing}/transactions/"),
    ):
        assert_problem(response, 404, "account_not_found")
    assert_problem(teller.get("/api/accounts/not-a-uuid/"), 404, "not_found")
    assert_problem(teller.get("/api/nothing/"), 404, "not_found")


def test_time_travel_by_version_and_by_time(teller, open_account):
    account = open_account(100)
    post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 50})
    url = f"/api/accounts/{account['id']}/"
    assert teller.get(url, {"as_of_version": 1}).json()["balance_cents"] == 100
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert teller.get(url, {"as_of": later}).json()["balance_cents"] == 150
    assert_problem(teller.get(url, {"as_of_version": 9}), 404, "version_not_found")
    assert_problem(
        teller.get(url, {"as_of": "2001-01-01T00:00:00Z"}), 404, "account_did_not_exist_yet"
    )
    for bad in (
        {"as_of_version": 0},
        {"as_of_version": "x"},
        {"as_of": "yesterday"},
        {"as_of": "2026-01-01T00:00:00"},
        {"as_of_version": 1, "as_of": later},
    ):
        assert_problem(teller.get(url, bad), 400, "invalid_input")


def test_list_reads_the_balance_read_model_paginated_filtered_and_searched(teller, open_account):
    ids = [open_account(i * 10, holder=f"Holder {i}")["id"] for i in range(5)]
    open_account(0, holder="Zoë Ångström")
    post(teller, f"/api/accounts/{ids[0]}/freeze/", {"reason": "check"})
    runner.catch_up()
    page = teller.get("/api/accounts/", {"page_size": 2}).json()
    assert (
        page["count"] == 6
        and len(page["results"]) == 2
        and page["next"]
        and page["previous"] is None
    )
    assert page["results"][0]["holder_name"] == "Holder 0"
    frozen = teller.get("/api/accounts/", {"status": "frozen"}).json()
    assert [a["id"] for a in frozen["results"]] == [ids[0]]
    assert frozen["results"][0]["version"] == 2
    found = teller.get("/api/accounts/", {"search": "ångström"}).json()
    assert [a["holder_name"] for a in found["results"]] == ["Zoë Ångström"]
    assert_problem(teller.get("/api/accounts/", {"status": "weird"}), 400, "invalid_input")
    assert_problem(teller.get("/api/accounts/", {"page_size": 1000}), 400, "invalid_input")


# --- commands -------------------------------------------------------------------------


def test_each_command_returns_the_new_state(teller, open_account):
    account = open_account(1000)
    base = f"/api/accounts/{account['id']}"
    steps = [
        ("deposit", {"amount_cents": 500, "description": "salary"}, 1500, "active"),
        ("withdraw", {"amount_cents": 1500}, 0, "active"),
        ("freeze", {"reason": "check"}, 0, "frozen"),
        ("unfreeze", {"reason": "ok"}, 0, "active"),
        ("close", {"reason": "bye"}, 0, "closed"),
    ]
    for version, (name, body, balance, status) in enumerate(steps, start=2):
        response = post(teller, f"{base}/{name}/", body)
        assert response.status_code == 200, response.content
        assert response.json()["balance_cents"] == balance and response.json()["status"] == status
        assert response.json()["version"] == version and response["ETag"] == f'"{version}"'


@pytest.mark.parametrize(
    "setup, command, body, code",
    [
        (None, "withdraw", {"amount_cents": 101}, "insufficient_funds"),
        ("freeze", "deposit", {"amount_cents": 1}, "account_not_active"),
        ("freeze", "freeze", {"reason": "again"}, "invalid_state_transition"),
        (None, "unfreeze", {"reason": "x"}, "invalid_state_transition"),
        (None, "close", {"reason": "x"}, "balance_not_zero"),
        ("max", "deposit", {"amount_cents": 2}, "invalid_amount"),
    ],
)
def test_business_rules_answer_422_with_the_domain_code_and_write_nothing(
    teller, open_account, setup, command, body, code
):
    account = open_account(2**53 - 2 if setup == "max" else 100)
    base = f"/api/accounts/{account['id']}"
    if setup == "freeze":
        post(teller, f"{base}/freeze/", {"reason": "hold"})
    before = Event.objects.count()
    problem = assert_problem(post(teller, f"{base}/{command}/", body), 422, code)
    assert Event.objects.count() == before
    if code == "insufficient_funds":
        assert (problem["available_cents"], problem["requested_cents"]) == (100, 101)


@pytest.mark.parametrize(
    "body",
    [
        {"amount_cents": -5},
        {"amount_cents": 0},
        {"amount_cents": 1.5},
        {"amount_cents": "10"},
        {"amount_cents": True},
        {"amount_cents": None},
        {"amount_cents": 2**53},
        {"amount_cents": 10**30},
        {},
        {"amount_cents": 5, "balance_cents": 10**9},
        {"amount_cents": 5, "description": "x" * 501},
        {"amount_cents": 5, "description": "a\x00b"},
        {"amount_cents": 5, "description": "bell\x07"},
        {"amount_cents": 5, "description": 7},
    ],
    ids=[
        "negative",
        "zero",
        "fraction",
        "string",
        "bool",
        "null",
        "2^53",
        "huge",
        "missing",
        "unknown field",
        "long text",
        "nul",
        "control",
        "text type",
    ],
)
def test_invalid_input_is_400_and_writes_nothing(teller, open_account, body):
    account = open_account(100)
    before = Event.objects.count()
    body = assert_problem(
        post(teller, f"/api/accounts/{account['id']}/deposit/", body), 400, "invalid_input"
    )
    assert body["errors"]
    assert Event.objects.count() == before


@pytest.mark.parametrize(
    "raw, content_type, status, code",
    [
        (b"[" * 20_000 + b"]" * 20_000, "application/json", 400, "malformed_request"),
        (b'{"amount_cents": 5', "application/json", 400, "malformed_request"),
        (b'{"amount_cents": NaN}', "application/json", 400, "malformed_request"),
        (
            b'{"amount_cents": 1, "amount_cents": 100}',
            "application/json",
            400,
            "malformed_request",
        ),
        (
            b'{"amount_cents": 5, "description": "\\ud800"}',
            "application/json",
            400,
            "invalid_input",
        ),
        (
            b'{"amount_cents": 5, "description": "\\u0000"}',
            "application/json",
            400,
            "invalid_input",
        ),
        (b"\xff\xfe{}", "application/json", 400, "malformed_request"),
        (b"[1, 2]", "application/json", 400, "invalid_input"),
        (b'"just a string"', "application/json", 400, "invalid_input"),
        (b"amount_cents=5", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"5", "text/plain", 415, "unsupported_media_type"),
        (
            b'{"amount_cents": 5, "description": "' + b"x" * 70_000 + b'"}',
            "application/json",
            400,
            "request_too_large",
        ),
    ],
    ids=[
        "deeply nested",
        "truncated",
        "nan",
        "duplicate key",
        "lone surrogate",
        "nul",
        "bad utf-8",
        "array",
        "string",
        "form",
        "text",
        "too large",
    ],
)
def test_hostile_bodies_never_cause_a_500(teller, open_account, raw, content_type, status, code):
    account = open_account(100)
    before = Event.objects.count()
    response = teller.generic(
        "POST", f"/api/accounts/{account['id']}/deposit/", raw, content_type=content_type
    )
    assert_problem(response, status, code)
    assert Event.objects.count() == before


def test_if_match_runs_only_at_that_version(teller, open_account):
    account = open_account(100)
    url = f"/api/accounts/{account['id']}/deposit/"
    assert post(teller, url, {"amount_cents": 1}, **{"If-Match": '"1"'}).status_code == 200
    stale = assert_problem(
        post(teller, url, {"amount_cents": 1}, **{"If-Match": '"1"'}), 412, "version_mismatch"
    )
    assert (stale["expected_version"], stale["current_version"]) == (1, 2)
    assert post(teller, url, {"amount_cents": 1}, **{"If-Match": "2"}).status_code == 200
    # RFC 9110: If-Match compares strongly, so a weak tag never matches (issue 19).
    weak = assert_problem(
        post(teller, url, {"amount_cents": 1}, **{"If-Match": 'W/"3"'}), 412, "version_mismatch"
    )
    assert weak["current_version"] == 3 and "weak" in weak["detail"]
    assert post(teller, url, {"amount_cents": 1}, **{"If-Match": '"3"'}).status_code == 200
    # A malformed header has a code of its own (issue 19; it was invalid_input).
    assert_problem(
        post(teller, url, {"amount_cents": 1}, **{"If-Match": "*x"}),
        400,
        "invalid_precondition_header",
    )
    assert svc.get_account(uuid.UUID(account["id"])).version == 4


def test_idempotency_key_replays_the_first_answer_and_appends_nothing(teller, open_account):
    account = open_account(100)
    url = f"/api/accounts/{account['id']}/withdraw/"
    first = post(teller, url, {"amount_cents": 30}, **{"Idempotency-Key": "k-1"})
    again = post(teller, url, {"amount_cents": 30}, **{"Idempotency-Key": "k-1"})
    assert (first.status_code, first.json()) == (again.status_code, again.json())
    assert again["Idempotency-Replayed"] == "true"
    assert svc.get_account(uuid.UUID(account["id"])).balance_cents == 70
    other = post(teller, url, {"amount_cents": 31}, **{"Idempotency-Key": "k-1"})
    reused = assert_problem(other, 422, "idempotency_key_reused")
    assert reused["title"] == "Idempotency-Key already used for another request"  # no rule
    assert svc.get_account(uuid.UUID(account["id"])).version == 2
    assert es.read_stream(uuid.UUID(account["id"]))[-1].metadata["idempotency_key"] == "k-1"
    assert_problem(
        post(teller, url, {"amount_cents": 1}, **{"Idempotency-Key": "x" * 256}),
        400,
        "invalid_input",
    )


def test_idempotency_keys_are_per_user(teller, superuser, open_account):
    account = open_account(100)
    url = f"/api/accounts/{account['id']}/deposit/"
    post(teller, url, {"amount_cents": 1}, **{"Idempotency-Key": "same"})
    post(superuser, url, {"amount_cents": 1}, **{"Idempotency-Key": "same"})
    assert svc.get_account(uuid.UUID(account["id"])).balance_cents == 102


def test_a_refused_command_with_a_key_can_be_retried(teller, open_account):
    account = open_account(0)
    url = f"/api/accounts/{account['id']}/withdraw/"
    assert_problem(
        post(teller, url, {"amount_cents": 5}, **{"Idempotency-Key": "r"}),
        422,
        "insufficient_funds",
    )
    post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 5})
    assert post(teller, url, {"amount_cents": 5}, **{"Idempotency-Key": "r"}).status_code == 200


def test_transfers_move_money_atomically(teller, open_account):
    a, b = open_account(500), open_account(0, holder="Bob")
    response = post(
        teller,
        "/api/transfers/",
        {
            "from_account": a["id"],
            "to_account": b["id"],
            "amount_cents": 200,
            "description": "rent",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (
        body["from_account"]["balance_cents"] == 300 and body["to_account"]["balance_cents"] == 200
    )
    uuid.UUID(body["transfer_id"])
    before = Event.objects.count()
    assert_problem(
        post(
            teller,
            "/api/transfers/",
            {"from_account": a["id"], "to_account": a["id"], "amount_cents": 1},
        ),
        422,
        "invalid_transfer",
    )
    assert_problem(
        post(
            teller,
            "/api/transfers/",
            {"from_account": a["id"], "to_account": b["id"], "amount_cents": 301},
        ),
        422,
        "insufficient_funds",
    )
    assert_problem(
        post(
            teller,
            "/api/transfers/",
            {"from_account": a["id"], "to_account": str(uuid.uuid4()), "amount_cents": 1},
        ),
        404,
        "account_not_found",
    )
    assert_problem(
        post(
            teller,
            "/api/transfers/",
            {"from_account": "nope", "to_account": b["id"], "amount_cents": 1},
        ),
        400,
        "invalid_input",
    )
    assert Event.objects.count() == before


def test_events_are_paginated_in_version_order(teller, open_account):
    account = open_account(0)
    for _ in range(4):
        post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 1})
    url = f"/api/accounts/{account['id']}/events/"
    page = teller.get(url, {"page_size": 2, "page": 2}).json()
    assert page["count"] == 5
    assert [e["version"] for e in page["results"]] == [3, 4]
    assert page["next"].endswith("page=3&page_size=2") and page["previous"].endswith(
        "page=1&page_size=2"
    )
    event = page["results"][0]
    assert set(event) == {
        "event_id",
        "position",
        "version",
        "event_type",
        "schema_version",
        "data",
        "metadata",
        "occurred_at",
    }
    assert event["event_type"] == "MoneyDeposited" and event["data"]["amount_cents"] == 1
    assert teller.get(url, {"page": 9}).json()["results"] == []


def test_transactions_come_from_the_history_read_model(teller, open_account):
    account = open_account(100)
    post(
        teller,
        f"/api/accounts/{account['id']}/withdraw/",
        {"amount_cents": 40, "description": "atm"},
    )
    runner.catch_up()
    rows = teller.get(f"/api/accounts/{account['id']}/transactions/").json()["results"]
    assert [(r["kind"], r["amount_cents"], r["balance_after_cents"]) for r in rows] == [
        ("opening", 100, 100),
        ("withdrawal", -40, 60),
    ]
    # Signed as the admin and its CSV show it: each row's balance is the last one's plus it.
    assert all(
        later["balance_after_cents"] == earlier["balance_after_cents"] + later["amount_cents"]
        for earlier, later in zip(rows, rows[1:], strict=False)
    )
    assert rows[1]["description"] == "atm" and rows[1]["actor"] == "teller"


def test_a_database_outage_is_a_503_with_retry_after(teller, open_account, monkeypatch):
    account = open_account(100)

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    from bank.services import repository

    monkeypatch.setattr(repository, "load", down)
    response = post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 1})
    assert_problem(response, 503, "database_unavailable")
    assert response["Retry-After"] == "2"
    assert "connection refused" not in response.content.decode()


def test_the_schema_and_offline_docs_are_served(teller, anonymous):
    schema = anonymous.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    doc = json.loads(schema.content)
    assert doc["openapi"].startswith("3.")
    assert "/api/accounts/{account_id}/deposit/" in doc["paths"]
    assert "412" in doc["paths"]["/api/accounts/{account_id}/deposit/"]["post"]["responses"]
    docs = anonymous.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower()


def test_throttling_answers_429_with_retry_after(teller, open_account, monkeypatch):
    from rest_framework.throttling import UserRateThrottle

    account = open_account()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/minute"})
    from django.core.cache import cache

    cache.clear()
    for _ in range(2):
        assert teller.get(f"/api/accounts/{account['id']}/").status_code == 200
    response = teller.get(f"/api/accounts/{account['id']}/")
    assert_problem(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_times_at_the_ends_of_the_calendar_are_handled(teller, open_account):
    account = open_account(5)
    url = f"/api/accounts/{account['id']}/"
    assert_problem(
        teller.get(url, {"as_of": "0001-01-01T00:00:00+05:00"}), 404, "account_did_not_exist_yet"
    )
    assert teller.get(url, {"as_of": "9999-12-31T23:59:59-05:00"}).json()["balance_cents"] == 5
    assert_problem(
        teller.get(url, {"as_of": "2026-01-01T00:00:00+17:30"}), 404, "account_did_not_exist_yet"
    )


def test_expired_idempotency_keys_are_purged_and_may_be_reused(teller, open_account):
    from django.core.management import call_command

    from bank.models import IdempotencyRecord

    account = open_account(100)
    url = f"/api/accounts/{account['id']}/deposit/"
    post(teller, url, {"amount_cents": 1}, **{"Idempotency-Key": "old"})
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=datetime.now(UTC) - timedelta(hours=25)
    )
    assert post(teller, url, {"amount_cents": 2}, **{"Idempotency-Key": "old"}).status_code == 200
    IdempotencyRecord.objects.update(created_at=datetime.now(UTC) - timedelta(hours=25))
    call_command("purge_idempotency_keys", verbosity=0)
    assert IdempotencyRecord.objects.count() == 0
    assert svc.get_account(uuid.UUID(account["id"])).balance_cents == 103


@pytest.mark.parametrize(
    "field, text",
    [
        ("holder_name", "Alice \u202eecilA"),
        ("holder_name", "\u2066Mallory\u2069"),
        ("description", "invoice \u202dpaid\u202c"),
    ],
    ids=["right-to-left override", "isolate", "left-to-right override"],
)
def test_bidirectional_overrides_are_refused_and_write_nothing(teller, open_account, field, text):
    before = Event.objects.count()
    if field == "holder_name":
        response = post(teller, "/api/accounts/", {"holder_name": text})
    else:
        account = open_account(100)
        before = Event.objects.count()
        response = post(
            teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 1, field: text}
        )
    body = assert_problem(response, 400, "invalid_input")
    assert "bidirectional" in json.dumps(body["errors"])
    assert Event.objects.count() == before


def test_real_world_unicode_names_are_kept_normalised(teller):
    for name in ("Zoë Ångström", "李小龍", "محمد بن موسى", "Ана-Мария O’Neil", "👩‍💻 Dev"):
        response = post(teller, "/api/accounts/", {"holder_name": name})
        assert response.status_code == 201, response.content
        assert response.json()["holder_name"] == unicodedata.normalize("NFC", name)
    decomposed = "Zoe\u0308"  # e + combining diaeresis: stored as the single "ë"
    response = post(teller, "/api/accounts/", {"holder_name": decomposed})
    assert response.json()["holder_name"] == "Zo\u00eb"


def test_a_forged_snapshot_never_reaches_the_api(teller, settings):
    """Issue 14's attack: a snapshot row INSERTed by hand with a balance of 10^11 cents."""
    from tests.eventstore.forgery import forge_snapshot

    settings.SNAPSHOT_INTERVAL = 1000
    opened = teller.post(
        "/api/accounts/", {"holder_name": "Target", "initial_balance_cents": 1_234}, format="json"
    ).json()
    forged = {**{k: opened[k] for k in ("holder_name", "currency", "status")}}
    forge_snapshot(uuid.UUID(opened["id"]), 1, {**forged, "balance_cents": 100_000_000_000})
    shown = teller.get(f"/api/accounts/{opened['id']}/").json()
    assert shown["balance_cents"] == 1_234
    refused = teller.post(
        f"/api/accounts/{opened['id']}/withdraw/",
        {"amount_cents": 50_000_000_000, "description": "cash"},
        format="json",
    )
    assert refused.status_code == 422 and refused.json()["code"] == "insufficient_funds"


def test_an_unknown_currency_is_refused_with_the_valid_codes_listed(teller):
    response = post(teller, "/api/accounts/", {"holder_name": "Zed", "currency": "XYZ"})
    body = assert_problem(response, 400, "invalid_input")
    message = " ".join(body["errors"]["currency"])
    assert '"XYZ" is not an ISO 4217 currency code' in message
    assert "EUR" in message and "JPY" in message and "KWD" in message


def test_an_event_this_release_cannot_read_is_a_named_problem_not_a_bare_500(teller, open_account):
    account = open_account(100)
    account_id = uuid.UUID(account["id"])
    es.append(
        account_id,
        [es.NewEvent(event_type="InterestAccrued", data={"amount_cents": 3}, occurred_at=now())],
        stream_type=svc.STREAM_TYPE,
        expected_version=1,
    )
    body = assert_problem(teller.get(f"/api/accounts/{account_id}/"), 500, "unreadable_stream")
    assert (body["event_type"], body["event_version"]) == ("InterestAccrued", 2)
    assert "InterestAccrued" in body["detail"] and "version 2" in body["detail"]
    # Commands are refused the same way, and nothing is written.
    response = post(teller, f"/api/accounts/{account_id}/deposit/", {"amount_cents": 5})
    assert_problem(response, 500, "unreadable_stream")
    assert es.stream_version(account_id) == 2


def test_an_account_id_must_be_a_uuid_string_not_a_number(teller, open_account):
    source = open_account(100)
    response = post(
        teller,
        "/api/transfers/",
        {"from_account": source["id"], "to_account": 5, "amount_cents": 1},
    )
    body = assert_problem(response, 400, "invalid_input")
    assert body["errors"]["to_account"] == ["must be a UUID given as a string"]


def test_a_method_an_endpoint_does_not_have_is_405_for_every_role(teller, auditor, open_account):
    account = open_account(100)
    for client in (teller, auditor):
        response = client.get(f"/api/accounts/{account['id']}/deposit/")
        assert_problem(response, 405, "method_not_allowed")
