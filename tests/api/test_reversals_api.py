"""Reversals over HTTP (issue 21): POST /api/accounts/{id}/reversals/ undoes one posting."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bank.models import ApprovalRequest
from bank.services import accounts as svc
from tests.support import ensure_roles

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


@pytest.fixture
def approver(db):
    user = User.objects.create_user("checker", password="pw-checker")
    ensure_roles()
    user.groups.add(Group.objects.get(name="approvers"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def events(client, account):
    response = client.get(f"/api/accounts/{account['id']}/events/", {"page_size": 100})
    assert response.status_code == 200
    return response.json()["results"]


def last_event(client, account):
    return events(client, account)[-1]


def state(account):
    return svc.get_account(uuid.UUID(account["id"]))


def reverse(client, account, event_id, reason="keyed twice", **headers):
    return post(
        client,
        f"/api/accounts/{account['id']}/reversals/",
        {"event_id": str(event_id), "reason": reason},
        **headers,
    )


def deposit(client, account, amount):
    response = post(client, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": amount})
    assert response.status_code == 200, response.content
    return last_event(client, account)


def test_a_deposit_is_reversed_with_a_linked_posting(teller, open_account):
    account = open_account(0)
    deposited = deposit(teller, account, 700)
    response = reverse(teller, account, deposited["event_id"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["reversed_event_id"] == deposited["event_id"]
    (after,) = body["accounts"]
    assert (after["id"], after["balance_cents"], after["version"]) == (account["id"], 0, 3)
    assert response["Cache-Control"] == "no-store" and "Authorization" in response["Vary"]
    reversal = last_event(teller, account)
    assert int(response["X-Event-Position"]) == reversal["position"]
    assert reversal["event_type"] == "PostingReversed"
    assert reversal["data"]["reversed_event_id"] == deposited["event_id"]
    assert reversal["data"]["reversed_version"] == 2
    assert reversal["data"]["reason"] == "keyed twice"
    assert reversal["metadata"]["actor"]["username"] == "teller"


def test_a_withdrawal_is_reversed_and_the_money_comes_back(teller, open_account):
    account = open_account(1_000)
    post(teller, f"/api/accounts/{account['id']}/withdraw/", {"amount_cents": 300})
    withdrawn = last_event(teller, account)
    response = reverse(teller, account, withdrawn["event_id"], "wrong account")
    assert response.status_code == 200, response.content
    assert response.json()["accounts"][0]["balance_cents"] == 1_000


@pytest.mark.parametrize("named", ["sender", "receiver"])
def test_either_side_of_a_transfer_reverses_both_and_restores_both_balances(
    teller, open_account, named
):
    a, b = open_account(1_000), open_account(0, holder="Ada")
    moved = post(
        teller,
        "/api/transfers/",
        {"from_account": a["id"], "to_account": b["id"], "amount_cents": 400},
    )
    assert moved.status_code == 200
    side, other = (a, b) if named == "sender" else (b, a)
    posting = last_event(teller, side)
    response = reverse(teller, side, posting["event_id"], "wrong payee")
    assert response.status_code == 200, response.content
    accounts = response.json()["accounts"]
    assert [x["id"] for x in accounts] == [side["id"], other["id"]]
    assert (state(a).balance_cents, state(b).balance_cents) == (1_000, 0)
    assert {x["id"]: x["balance_cents"] for x in accounts} == {a["id"]: 1_000, b["id"]: 0}
    ra, rb = last_event(teller, a), last_event(teller, b)
    assert ra["event_type"] == rb["event_type"] == "PostingReversed"
    assert ra["data"]["transfer_id"] == rb["data"]["transfer_id"] == moved.json()["transfer_id"]
    assert int(response["X-Event-Position"]) == max(ra["position"], rb["position"])
    # The other side was reversed with it: it cannot be reversed again.
    other_posting = events(teller, other)[-2]
    refused = reverse(teller, other, other_posting["event_id"])
    assert_problem(refused, 409, "already_reversed")
    assert (state(a).version, state(b).version) == (3, 3)


def test_a_posting_is_reversed_once(teller, open_account):
    account = open_account(0)
    deposited = deposit(teller, account, 700)
    assert reverse(teller, account, deposited["event_id"]).status_code == 200
    body = assert_problem(reverse(teller, account, deposited["event_id"]), 409, "already_reversed")
    assert (body["version"], body["reversed_by_version"]) == (2, 3)
    assert state(account).version == 3 and state(account).balance_cents == 0


def test_a_reversal_an_opening_or_a_status_change_is_not_reversible(teller, open_account):
    account = open_account(0)
    deposited = deposit(teller, account, 700)
    reverse(teller, account, deposited["event_id"])
    reversal = last_event(teller, account)
    body = assert_problem(reverse(teller, account, reversal["event_id"]), 422, "not_reversible")
    assert body["version"] == 3 and body["event_type"] == "PostingReversed"
    opened = events(teller, account)[0]
    assert_problem(reverse(teller, account, opened["event_id"]), 422, "not_reversible")
    post(teller, f"/api/accounts/{account['id']}/freeze/", {"reason": "check"})
    frozen = last_event(teller, account)
    assert_problem(reverse(teller, account, frozen["event_id"]), 422, "not_reversible")
    assert state(account).version == 4


def test_unknown_postings_and_accounts_are_404(teller, open_account):
    a, b = open_account(0), open_account(0, holder="Ada")
    deposited = deposit(teller, a, 5)
    body = assert_problem(reverse(teller, b, deposited["event_id"]), 404, "posting_not_found")
    assert body["event_id"] == deposited["event_id"]
    assert_problem(reverse(teller, a, uuid.uuid4()), 404, "posting_not_found")
    assert_problem(
        reverse(teller, {"id": str(uuid.uuid4())}, deposited["event_id"]), 404, "account_not_found"
    )
    assert (state(a).version, state(b).version) == (2, 1)


def test_business_rules_refuse_with_422_and_write_nothing(teller, open_account):
    account = open_account(0)
    deposited = deposit(teller, account, 700)
    post(teller, f"/api/accounts/{account['id']}/withdraw/", {"amount_cents": 500})
    body = assert_problem(
        reverse(teller, account, deposited["event_id"]), 422, "insufficient_funds"
    )
    assert (body["available_cents"], body["requested_cents"]) == (200, 700)
    withdrawn = last_event(teller, account)
    post(teller, f"/api/accounts/{account['id']}/freeze/", {"reason": "check"})
    assert_problem(reverse(teller, account, withdrawn["event_id"]), 422, "account_not_active")
    assert state(account).version == 4 and state(account).balance_cents == 200


def test_the_input_is_checked_and_roles_apply(teller, auditor, open_account):
    account = open_account(0)
    deposited = deposit(teller, account, 700)
    path = f"/api/accounts/{account['id']}/reversals/"
    for body in (
        {"event_id": deposited["event_id"]},
        {"event_id": deposited["event_id"], "reason": " "},
        {"event_id": 5, "reason": "x"},
        {"event_id": deposited["event_id"], "reason": "x", "amount_cents": 1},
    ):
        assert_problem(post(teller, path, body), 400, "invalid_input")
    assert_problem(reverse(auditor, account, deposited["event_id"]), 403, "permission_denied")
    assert state(account).version == 2


def test_if_match_pins_the_named_account_and_a_key_replays_the_answer(teller, open_account):
    account = open_account(0)
    deposited = deposit(teller, account, 700)
    body = assert_problem(
        reverse(teller, account, deposited["event_id"], **{"If-Match": '"1"'}),
        412,
        "version_mismatch",
    )
    assert body["current_version"] == 2
    first = reverse(
        teller, account, deposited["event_id"], **{"If-Match": '"2"', "Idempotency-Key": "r1"}
    )
    again = reverse(
        teller, account, deposited["event_id"], **{"If-Match": '"2"', "Idempotency-Key": "r1"}
    )
    assert (first.status_code, again.status_code) == (200, 200)
    assert again["Idempotency-Replayed"] == "true" and again.json() == first.json()
    assert again["X-Event-Position"] == first["X-Event-Position"]
    assert state(account).version == 3


# --- maker-checker -------------------------------------------------------------------------


@pytest.fixture
def rule(settings):
    settings.APPROVAL_ALWAYS = ""
    settings.APPROVAL_THRESHOLD_CENTS = 100_000
    settings.APPROVAL_TTL_HOURS = 24
    return settings


def test_a_reversal_from_the_threshold_on_waits_for_an_approval(
    rule, teller, approver, open_account
):
    account = open_account(0)
    deposited = deposit(teller, account, 250_000)
    response = reverse(teller, account, deposited["event_id"], "paid in twice")
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"/api/approvals/{body['id']}/"
    assert (body["kind"], body["amount_cents"], body["reason"]) == (
        "reversal",
        250_000,
        "paid in twice",
    )
    assert body["command"] == {
        "account_id": account["id"],
        "event_id": deposited["event_id"],
        "reason": "paid in twice",
    }
    assert state(account).version == 2
    duplicate = reverse(teller, account, deposited["event_id"], "paid in twice")
    assert assert_problem(duplicate, 409, "duplicate_request")["approval_id"] == body["id"]
    approved = post(approver, f"/api/approvals/{body['id']}/approve/", {})
    assert approved.status_code == 200, approved.content
    assert state(account).balance_cents == 0
    reversal = last_event(teller, account)
    assert reversal["event_type"] == "PostingReversed"
    assert reversal["metadata"]["approval"]["id"] == body["id"]
    # Reversed on approval: a later reversal is refused like any other.
    assert_problem(reverse(teller, account, deposited["event_id"]), 409, "already_reversed")


def test_below_the_threshold_a_reversal_runs_at_once_and_unknown_postings_stay_404(
    rule, teller, open_account
):
    account = open_account(0)
    deposited = deposit(teller, account, 99_999)
    assert reverse(teller, account, deposited["event_id"]).status_code == 200
    assert_problem(reverse(teller, account, uuid.uuid4()), 404, "posting_not_found")
    assert not ApprovalRequest.objects.exists()


def test_a_reversal_that_could_not_run_now_is_refused_rather_than_queued(
    rule, teller, open_account
):
    account = open_account(0)
    deposited = deposit(teller, account, 250_000)
    assert reverse(teller, account, deposited["event_id"]).status_code == 202
    # The money is spent meanwhile: a second ask (another reason, so not a duplicate)
    # could not run now, and is refused at once instead of joining the queue.
    post(teller, f"/api/accounts/{account['id']}/withdraw/", {"amount_cents": 99_999})
    other = reverse(teller, account, deposited["event_id"], "another reason")
    assert_problem(other, 422, "insufficient_funds")
    assert ApprovalRequest.objects.count() == 1
