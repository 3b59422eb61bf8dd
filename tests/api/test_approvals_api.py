"""Maker-checker over HTTP (issue 21): 202 and its Location, the queue, approve and reject."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

import eventstore as es
from bank.api.problems import PROBLEM_CODES
from bank.models import ApprovalRequest
from bank.services import Actor, approvals
from bank.services import accounts as svc
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
THRESHOLD = 100_000


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:ledgerline:problem:{code}" and body["title"] and body["detail"]
    return body


def post(client, path, body, **headers):
    return client.post(path, body, format="json", headers=headers)


def user_client(name, *groups, **extra):
    user = User.objects.create_user(name, password="pw-" + name, **extra)
    ensure_roles()
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


@pytest.fixture
def rule(settings):
    settings.APPROVAL_ALWAYS = "freeze,close"
    settings.APPROVAL_THRESHOLD_CENTS = THRESHOLD
    settings.APPROVAL_THRESHOLDS = "JPY=10000"
    settings.APPROVAL_TTL_HOURS = 24
    return settings


@pytest.fixture
def approver(db):
    return user_client("checker", "approvers")


@pytest.fixture
def other_approver(db):
    return user_client("checker2", "approvers")


def version(account):
    return svc.get_account(uuid.UUID(account["id"])).version


def balance(account):
    return svc.get_account(uuid.UUID(account["id"])).balance_cents


def withdraw(client, account, amount, description="car", **headers):
    return post(
        client,
        f"/api/accounts/{account['id']}/withdraw/",
        {"amount_cents": amount, "description": description},
        **headers,
    )


# --- commands that wait: 202 -------------------------------------------------------------


def test_a_withdrawal_from_the_threshold_on_is_202_with_the_request_and_nothing_moves(
    rule, teller, open_account
):
    account = open_account(500_000)
    response = withdraw(teller, account, THRESHOLD, "customer buys a car")
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"/api/approvals/{body['id']}/"
    assert response["Cache-Control"] == "no-store"
    assert "Authorization" in response["Vary"] and "ETag" not in response
    assert "X-Event-Position" not in response
    assert body["status"] == "pending" and body["kind"] == "withdraw"
    assert body["account"] == account["id"] and body["counterparty"] is None
    assert body["amount_cents"] == THRESHOLD
    assert body["command"] == {
        "account_id": account["id"],
        "amount_cents": THRESHOLD,
        "description": "customer buys a car",
    }
    assert body["reason"] == "customer buys a car" and body["requested_by"] == "teller"
    assert body["decided_by"] is None and body["decided_at"] is None
    assert datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["requested_at"]
    ) == timedelta(hours=24)
    # Nothing ran: the account has no new event.
    assert version(account) == 1 and balance(account) == 500_000
    polled = teller.get(response["Location"])
    assert polled.status_code == 200 and polled.json() == body
    assert polled["Cache-Control"] == "no-store"


def test_below_the_threshold_a_withdrawal_runs_at_once(rule, teller, open_account):
    account = open_account(500_000)
    response = withdraw(teller, account, THRESHOLD - 1)
    assert response.status_code == 200 and response.json()["balance_cents"] == 400_001
    assert not ApprovalRequest.objects.exists()


def test_a_superuser_follows_the_rule_too(rule, superuser, open_account):
    account = open_account(500_000)
    assert withdraw(superuser, account, 200_000).status_code == 202
    frozen = post(superuser, f"/api/accounts/{account['id']}/freeze/", {"reason": "fraud?"})
    assert frozen.status_code == 202 and frozen.json()["kind"] == "freeze"
    assert version(account) == 1


def test_freeze_and_close_wait_with_their_reason_as_the_requests(rule, teller, open_account):
    account = open_account(0)
    frozen = post(teller, f"/api/accounts/{account['id']}/freeze/", {"reason": "court order"})
    closed = post(teller, f"/api/accounts/{account['id']}/close/", {"reason": "moved away"})
    assert (frozen.status_code, closed.status_code) == (202, 202)
    assert frozen.json()["reason"] == "court order" and frozen.json()["amount_cents"] is None
    assert closed.json()["command"] == {"account_id": account["id"], "reason": "moved away"}
    assert svc.get_account(uuid.UUID(account["id"])).status == "active"


def test_a_transfer_waits_and_runs_on_approval_with_the_transfer_id_it_announced(
    rule, teller, approver, open_account
):
    a, b = open_account(300_000), open_account(0, holder="Ada")
    response = post(
        teller,
        "/api/transfers/",
        {"from_account": a["id"], "to_account": b["id"], "amount_cents": 150_000},
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["kind"], body["account"], body["counterparty"]) == ("transfer", a["id"], b["id"])
    transfer_id = body["command"]["transfer_id"]
    assert (balance(a), balance(b)) == (300_000, 0)
    approved = post(approver, f"/api/approvals/{body['id']}/approve/", {})
    assert approved.status_code == 200, approved.content
    assert (balance(a), balance(b)) == (150_000, 150_000)
    sent = svc.account_events(uuid.UUID(a["id"]))[-1]
    assert sent.data["transfer_id"] == transfer_id


def test_a_request_that_breaks_a_rule_now_is_refused_at_once(rule, teller, open_account):
    account = open_account(1_000)
    body = assert_problem(withdraw(teller, account, 200_000), 422, "insufficient_funds")
    assert body["available_cents"] == 1_000
    assert not ApprovalRequest.objects.exists() and version(account) == 1


def test_an_unknown_account_is_404_not_a_request(rule, teller):
    missing = uuid.uuid4()
    assert_problem(
        post(teller, f"/api/accounts/{missing}/freeze/", {"reason": "x"}), 404, "account_not_found"
    )
    assert_problem(withdraw(teller, {"id": str(missing)}, 200_000), 404, "account_not_found")
    assert not ApprovalRequest.objects.exists()


def test_a_second_identical_request_is_409_naming_the_pending_one(
    rule, teller, superuser, open_account
):
    account = open_account(500_000)
    first = withdraw(teller, account, 200_000).json()
    body = assert_problem(withdraw(superuser, account, 200_000), 409, "duplicate_request")
    assert body["approval_id"] == first["id"]
    assert ApprovalRequest.objects.count() == 1
    # Another command is another request.
    assert withdraw(teller, account, 200_001).status_code == 202


def test_an_idempotency_key_replays_the_202_and_asks_once(rule, teller, open_account):
    account = open_account(500_000)
    first = withdraw(teller, account, 200_000, **{"Idempotency-Key": "k-1"})
    again = withdraw(teller, account, 200_000, **{"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again["Idempotency-Replayed"] == "true"
    assert again.json() == first.json() and again["Location"] == first["Location"]
    assert "ETag" not in again
    assert ApprovalRequest.objects.count() == 1
    other = withdraw(teller, account, 200_001, **{"Idempotency-Key": "k-1"})
    assert_problem(other, 422, "idempotency_key_reused")


def test_if_match_is_checked_when_the_request_is_made(rule, teller, open_account):
    account = open_account(500_000)
    stale = withdraw(teller, account, 200_000, **{"If-Match": '"7"'})
    body = assert_problem(stale, 412, "version_mismatch")
    assert body["current_version"] == 1
    assert not ApprovalRequest.objects.exists()
    assert_problem(
        withdraw(teller, account, 200_000, **{"If-Match": "nope"}),
        400,
        "invalid_precondition_header",
    )
    assert withdraw(teller, account, 200_000, **{"If-Match": '"1"'}).status_code == 202


# --- deciding ----------------------------------------------------------------------------


def test_an_approver_approves_once_the_money_moves_once_and_a_second_approval_is_409(
    rule, teller, approver, other_approver, open_account
):
    account = open_account(500_000)
    request = withdraw(teller, account, 200_000).json()
    approved = post(
        approver, f"/api/approvals/{request['id']}/approve/", {"note": "checked the ID"}
    )
    assert approved.status_code == 200, approved.content
    body = approved.json()
    assert body["status"] == "approved" and body["decided_by"] == "checker"
    assert body["decision_reason"] == "checked the ID" and body["decided_at"]
    assert int(approved["X-Event-Position"]) == body["position"]
    assert approved["Cache-Control"] == "no-store"
    assert balance(account) == 300_000
    withdrawn = svc.account_events(uuid.UUID(account["id"]))[-1]
    assert withdrawn.event_type == "MoneyWithdrawn"
    assert withdrawn.metadata["actor"]["username"] == "teller"
    assert withdrawn.metadata["approval"]["id"] == request["id"]
    assert withdrawn.position <= body["position"]
    again = post(other_approver, f"/api/approvals/{request['id']}/approve/", {})
    assert assert_problem(again, 409, "approval_not_pending")["approval_status"] == "approved"
    rejected = post(other_approver, f"/api/approvals/{request['id']}/reject/", {"reason": "no"})
    assert_problem(rejected, 409, "approval_not_pending")
    assert balance(account) == 300_000 and version(account) == 2
    assert teller.get(f"/api/approvals/{request['id']}/").json() == body


def test_the_requester_cannot_decide_their_own_request(rule, open_account):
    both = user_client("maker", "tellers", "approvers")
    account = open_account(500_000)
    request = withdraw(both, account, 200_000).json()
    own = post(both, f"/api/approvals/{request['id']}/approve/", {})
    assert assert_problem(own, 403, "self_approval")["detail"].startswith("maker asked")
    assert_problem(
        post(both, f"/api/approvals/{request['id']}/reject/", {"reason": "changed my mind"}),
        403,
        "self_approval",
    )
    assert balance(account) == 500_000
    assert [e.event_type for e in es.read_stream(uuid.UUID(request["id"]))] == [
        "ApprovalRequested"
    ]


def test_a_superuser_cannot_approve_their_own_request_either(rule, superuser, open_account):
    account = open_account(0)
    request = post(superuser, f"/api/accounts/{account['id']}/close/", {"reason": "done"})
    own = post(superuser, f"/api/approvals/{request.json()['id']}/approve/", {})
    assert_problem(own, 403, "self_approval")
    assert svc.get_account(uuid.UUID(account["id"])).status == "active"


def test_a_rejection_needs_a_reason_and_runs_nothing(rule, teller, approver, open_account):
    account = open_account(500_000)
    request = withdraw(teller, account, 200_000).json()
    path = f"/api/approvals/{request['id']}/reject/"
    assert_problem(post(approver, path, {}), 400, "invalid_input")
    assert_problem(post(approver, path, {"reason": "   "}), 400, "invalid_input")
    rejected = post(approver, path, {"reason": "no such car"})
    assert rejected.status_code == 200, rejected.content
    body = rejected.json()
    assert (body["status"], body["decided_by"], body["decision_reason"]) == (
        "rejected",
        "checker",
        "no such car",
    )
    assert int(rejected["X-Event-Position"]) == body["position"]
    assert_problem(
        post(approver, f"/api/approvals/{request['id']}/approve/", {}), 409, "approval_not_pending"
    )
    assert balance(account) == 500_000 and version(account) == 1
    # Rejected, the same command may be asked for again.
    assert withdraw(teller, account, 200_000).status_code == 202


def test_a_command_refused_on_approval_is_422_and_the_request_stays_pending(
    rule, teller, approver, open_account
):
    account = open_account(200_000)
    request = withdraw(teller, account, 150_000).json()
    assert withdraw(teller, account, 60_000).status_code == 200  # below the threshold
    refused = post(approver, f"/api/approvals/{request['id']}/approve/", {})
    assert assert_problem(refused, 422, "insufficient_funds")["available_cents"] == 140_000
    assert teller.get(f"/api/approvals/{request['id']}/").json()["status"] == "pending"
    assert balance(account) == 140_000


def test_an_expired_request_is_409_and_shows_as_expired(rule, teller, approver, open_account):
    account = open_account(500_000)
    two_days_ago = datetime.now(UTC) - timedelta(hours=48)
    row = approvals.request(
        "withdraw",
        command={"account_id": account["id"], "amount_cents": 200_000, "description": ""},
        actor=Actor.from_user(User.objects.get(username="teller"), auth="token"),
        clock=lambda: two_days_ago,
    )
    refused = post(approver, f"/api/approvals/{row.id}/approve/", {})
    assert assert_problem(refused, 409, "approval_expired")["expires_at"]
    shown = teller.get(f"/api/approvals/{row.id}/").json()
    assert shown["status"] == "expired" and shown["decided_by"] == "system"
    assert_problem(
        post(approver, f"/api/approvals/{row.id}/reject/", {"reason": "late"}),
        409,
        "approval_not_pending",
    )
    assert balance(account) == 500_000 and version(account) == 1


def test_an_unknown_request_is_404(teller, approver):
    missing = uuid.uuid4()
    assert_problem(teller.get(f"/api/approvals/{missing}/"), 404, "approval_not_found")
    assert_problem(
        post(approver, f"/api/approvals/{missing}/approve/", {}), 404, "approval_not_found"
    )
    assert_problem(
        post(approver, f"/api/approvals/{missing}/reject/", {"reason": "x"}),
        404,
        "approval_not_found",
    )
    assert_problem(teller.get("/api/approvals/not-a-uuid/"), 404, "not_found")


def test_only_approvers_decide_every_role_that_reads_accounts_sees_the_queue(
    rule, teller, auditor, nobody, approver, anonymous, open_account
):
    account = open_account(500_000)
    request = withdraw(teller, account, 200_000).json()
    for client in (auditor, teller):
        for action, body in (("approve", {}), ("reject", {"reason": "no"})):
            assert_problem(
                post(client, f"/api/approvals/{request['id']}/{action}/", body),
                403,
                "permission_denied",
            )
    for client in (auditor, teller, approver):
        assert client.get("/api/approvals/").json()["count"] == 1
        assert client.get(f"/api/approvals/{request['id']}/").status_code == 200
    assert_problem(nobody.get("/api/approvals/"), 403, "permission_denied")
    assert_problem(anonymous.get("/api/approvals/"), 401, "not_authenticated")
    # Approvers decide; they do not issue commands.
    assert_problem(withdraw(approver, account, 5), 403, "permission_denied")
    assert_problem(
        approver.get(f"/api/approvals/{request['id']}/approve/"), 405, "method_not_allowed"
    )
    assert balance(account) == 500_000


def test_decisions_refuse_preconditions_and_unknown_fields(rule, teller, approver, open_account):
    account = open_account(500_000)
    request = withdraw(teller, account, 200_000).json()
    path = f"/api/approvals/{request['id']}/approve/"
    assert_problem(
        post(approver, path, {}, **{"If-Match": '"1"'}), 400, "precondition_not_supported"
    )
    assert_problem(post(approver, path, {"reason": "x"}), 400, "invalid_input")
    assert teller.get(f"/api/approvals/{request['id']}/").json()["status"] == "pending"


# --- the queue ---------------------------------------------------------------------------


def test_the_queue_filters_by_status_account_requester_and_kind(
    rule, teller, superuser, approver, open_account
):
    a, b = open_account(500_000), open_account(500_000, holder="Ada")
    first = withdraw(teller, a, 200_000).json()
    withdraw(superuser, b, 300_000)
    post(teller, f"/api/accounts/{b['id']}/freeze/", {"reason": "fraud?"})
    moved = post(
        teller,
        "/api/transfers/",
        {"from_account": b["id"], "to_account": a["id"], "amount_cents": 100_000},
    ).json()
    post(approver, f"/api/approvals/{first['id']}/approve/", {})

    def ids(**query):
        response = teller.get("/api/approvals/", query)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"count", "next", "previous", "results"}
        assert body["count"] == len(body["results"])
        return [row["id"] for row in body["results"]]

    assert len(ids()) == 4
    pending = ids(status="pending")
    assert len(pending) == 3 and first["id"] not in pending
    assert ids(status="approved") == [first["id"]]
    # An account's requests: either side of a transfer.
    assert set(ids(account=a["id"])) == {first["id"], moved["id"]}
    assert len(ids(requested_by="root")) == 1
    assert ids(kind="transfer") == [moved["id"]]
    assert ids(kind="transfer", status="approved") == []
    # Oldest first, in pages.
    page = teller.get("/api/approvals/", {"page_size": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    assert [r["id"] for r in page["results"]][0] == first["id"]
    assert teller.get("/api/approvals/", {"page": 9}).json()["results"] == []
    for bad in ({"status": "maybe"}, {"kind": "deposit"}, {"account": "x"}, {"page": 0}):
        assert_problem(teller.get("/api/approvals/", bad), 400, "invalid_input")


# --- the OpenAPI document -----------------------------------------------------------------


@pytest.fixture(scope="module")
def doc():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    return json.loads(out.getvalue())


def test_the_document_describes_the_approval_operations_and_their_problems(doc):
    paths = doc["paths"]
    for path, method, operation_id in (
        ("/api/approvals/", "get", "approvals_list"),
        ("/api/approvals/{approval_id}/", "get", "approvals_retrieve"),
        ("/api/approvals/{approval_id}/approve/", "post", "approvals_approve"),
        ("/api/approvals/{approval_id}/reject/", "post", "approvals_reject"),
    ):
        assert paths[path][method]["operationId"] == operation_id
    listed = paths["/api/approvals/"]["get"]
    assert {p["name"] for p in listed["parameters"]} >= {
        "status",
        "account",
        "requested_by",
        "kind",
        "page",
        "page_size",
    }
    approve = paths["/api/approvals/{approval_id}/approve/"]["post"]["responses"]
    assert approve["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Approval"
    }
    assert approve["200"]["headers"]["X-Event-Position"]["required"]
    assert "self_approval" in approve["403"]["description"]
    assert "approval_not_pending" in approve["409"]["description"]
    assert "approval_expired" in approve["409"]["description"]
    assert "approval_not_found" in approve["404"]["description"]
    schemas = doc["components"]["schemas"]
    assert schemas["RejectRequest"]["required"] == ["reason"]
    assert schemas["ApprovalStatus"]["enum"] == ["pending", "approved", "rejected", "expired"]
    assert set(schemas["Approval"]["properties"]) >= {"id", "status", "command", "position"}
    known = set(schemas["ProblemCode"]["enum"])
    assert known == set(PROBLEM_CODES)
    assert {
        "duplicate_request",
        "self_approval",
        "approval_not_pending",
        "approval_expired",
        "approval_not_found",
        "posting_not_found",
        "not_reversible",
        "already_reversed",
    } <= known


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/accounts/{account_id}/withdraw/", "post"),
        ("/api/accounts/{account_id}/freeze/", "post"),
        ("/api/accounts/{account_id}/close/", "post"),
        ("/api/transfers/", "post"),
        ("/api/accounts/{account_id}/reversals/", "post"),
    ],
)
def test_commands_that_may_wait_document_the_202_and_its_location(doc, path, method):
    responses = doc["paths"][path][method]["responses"]
    accepted = responses["202"]
    assert accepted["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Approval"
    }
    assert accepted["headers"]["Location"]["required"]
    assert "Idempotency-Replayed" in accepted["headers"]
    assert "duplicate_request" in responses["409"]["description"]


def test_commands_that_never_wait_document_no_202(doc):
    for path in ("/api/accounts/{account_id}/deposit/", "/api/accounts/{account_id}/unfreeze/"):
        assert "202" not in doc["paths"][path]["post"]["responses"]
