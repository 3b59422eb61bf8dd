"""Maker-checker and reversals in the admin, through Django's test client (issue 21).

Commands that cross the rule become requests (superusers' too); the approval queue, its
filters and the rule; the decision page with what will change; who may decide (approvers,
never the requester); several decisions at once; reversals from the timeline, struck
through and linked both ways, hidden on demand, in the CSV and in time travel; readable
refusals, never a 500.
"""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages

import eventstore as es
from bank import selectors
from bank.admin import (
    COMMAND_STALE,
    DUPLICATE_REQUEST,
    REVERSAL_NOT_OFFERED,
    WHY_ALREADY_REVERSED,
    WHY_NO_VERSION,
    WHY_NOT_A_POSTING,
)
from bank.admin_approvals import (
    APPROVAL_BROKE_A_RULE,
    APPROVED,
    APPROVED_OUTCOME,
    BULK_DONE,
    BULK_OWN,
    DECISION_REFUSED,
    NO_DECISION,
    NOT_FOUND,
    REJECTED,
)
from bank.models import ApprovalRequest
from bank.services import Actor, approvals, reversals
from bank.services import accounts as svc
from projections import runner
from tests.admin.approving import (
    QUEUE_URL,
    audit_url,
    command_url,
    decide_url,
    ensure_approvers,
    reverse_url,
    rule_on,
)

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


def staff(client, name, *groups, superuser=False):
    ensure_approvers()
    user = User.objects.create_user(name, password="pw", is_staff=True, is_superuser=superuser)
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    if client is not None:
        client.force_login(user)
    return user


def actor_of(user):
    return Actor.from_user(user, auth="admin")


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def text_of(markup):
    """A message's text: without its tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", markup)).split())


def short(row):
    """A request as the messages name it: its id's first characters."""
    return f"{str(row.id)[:8]}…"


def cells_of(markup):
    """A table's text, cell by cell (each tag a space)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def versions_listed(page):
    """The timeline's rows, by version, in the page's order."""
    return re.findall(r'<tr id="version-\d+" class="[^"]*" data-version="(\d+)">', page)


@pytest.fixture
def rule(settings):
    return rule_on(settings)


@pytest.fixture
def grace():
    """Grace Hopper's account with 5,000.00 EUR (version 1) and Someone Else's, empty."""
    account = svc.open_account(
        holder_name="Grace Hopper", initial_balance_cents=500_000, actor=SYSTEM
    ).id
    other = svc.open_account(holder_name="Someone Else", actor=SYSTEM).id
    runner.catch_up()
    return account, other


def ask(kind, command, user, reason="", **kwargs):
    return approvals.request(kind, command=command, actor=actor_of(user), reason=reason, **kwargs)


def freeze_request(account, user, reason="card stolen", **kwargs):
    return ask("freeze", {"account_id": str(account), "reason": reason}, user, reason, **kwargs)


# --- commands that cross the rule -----------------------------------------------------------


def test_a_tellers_freeze_is_sent_for_approval_with_a_link_and_changes_nothing(
    client, rule, grace
):
    account, _ = grace
    tina = staff(client, "tina", "tellers")
    response = client.post(command_url(account, "freeze"), {"freeze-reason": "card stolen"})
    page = " ".join(response.content.decode().split())
    assert "This command needs a second person's approval." in page
    assert 'value="Send for approval: freeze the account"' in page
    response = client.post(
        command_url(account, "freeze"),
        {"freeze-reason": "card stolen", "confirm": "yes", "expected_version": "1"},
    )
    assert response.status_code == 302 and response["Location"] == audit_url(account)
    row = ApprovalRequest.objects.get()
    assert (row.kind, row.status, row.requested_by, row.requested_by_id) == (
        "freeze",
        "pending",
        "tina",
        tina.pk,
    )
    assert row.command == {"account_id": str(account), "reason": "card stolen"}
    (message,) = messages_of(response)
    assert f'href="{decide_url(row.id)}"' in message
    assert text_of(message).startswith(
        f"Sent for approval: request {str(row.id)[:8]}… (freeze) waits for an approver."
    )
    assert svc.get_account(account).status == "active" and es.stream_version(account) == 1


def test_a_superusers_large_withdrawal_waits_too_and_a_small_one_runs(client, rule, grace):
    account, _ = grace
    staff(client, "root", superuser=True)
    response = client.post(
        command_url(account, "withdraw"),
        {"withdraw-amount": "1000.00", "withdraw-description": "car"},
    )
    (message,) = messages_of(response)
    row = ApprovalRequest.objects.get()
    assert (row.kind, row.amount_cents, row.reason) == ("withdraw", 100_000, "car")
    assert "(withdraw 1,000.00 EUR) waits for an approver" in text_of(message)
    assert svc.get_account(account).balance_cents == 500_000
    response = client.post(command_url(account, "withdraw"), {"withdraw-amount": "999.99"})
    assert messages_of(response)[-1].startswith("Withdraw done: the balance is 4,000.01 EUR")
    assert ApprovalRequest.objects.count() == 1


def test_the_same_command_twice_is_refused_naming_the_pending_request(client, rule, grace):
    account, _ = grace
    staff(client, "tina", "tellers")
    fields = {"freeze-reason": "x", "confirm": "yes", "expected_version": "1"}
    client.post(command_url(account, "freeze"), fields)
    response = client.post(command_url(account, "freeze"), fields)
    row = ApprovalRequest.objects.get()
    message = messages_of(response)[-1]
    assert text_of(message) == DUPLICATE_REQUEST.format(label="Freeze", request=short(row))
    assert f'href="{decide_url(row.id)}"' in message


def test_a_request_the_rules_refuse_now_is_not_queued(client, rule, grace):
    account, _ = grace
    staff(client, "tina", "tellers")
    response = client.post(command_url(account, "withdraw"), {"withdraw-amount": "6000"})
    assert messages_of(response) == [
        "Withdraw refused: 6,000.00 EUR exceeds the balance of 5,000.00 EUR. Nothing was changed."
    ]
    assert not ApprovalRequest.objects.exists()


def test_a_stale_confirmation_is_refused_before_any_request(client, rule, grace):
    account, _ = grace
    staff(client, "tina", "tellers")
    svc.deposit(account_id=account, amount_cents=1, actor=SYSTEM)
    response = client.post(
        command_url(account, "close"),
        {"close-reason": "x", "confirm": "yes", "expected_version": "1"},
    )
    # Closing is not offered with a balance: the refusal comes first, before any request.
    assert "Close refused" in messages_of(response)[0]
    response = client.post(
        command_url(account, "freeze"),
        {"freeze-reason": "x", "confirm": "yes", "expected_version": "1"},
    )
    assert messages_of(response)[-1] == COMMAND_STALE.format(label="Freeze", actual=2, expected=1)
    assert not ApprovalRequest.objects.exists()


def test_the_audit_page_lists_what_waits_for_approval_on_the_account(client, rule, grace):
    account, _ = grace
    tina = staff(client, "tina", "tellers")
    page = client.get(audit_url(account)).content.decode()
    assert "No command on this account waits for an approval." in page
    row = freeze_request(account, tina)
    page = " ".join(client.get(audit_url(account)).content.decode().split())
    assert f'href="{decide_url(row.id)}" class="pending-request-link">freeze</a>' in page
    assert "asked by tina" in page and "(“card stolen”)" in page
    assert f"?account_id={account}&amp;status=all" in page


# --- the queue ------------------------------------------------------------------------------


@pytest.fixture
def queue(rule, grace):
    """Three requests: tina's freeze of Grace's account (5 hours old), tom's withdrawal of
    2,000.00 EUR from it (an hour old), tom's transfer to Someone Else (just made)."""
    account, other = grace
    tina, tom = staff(None, "tina", "tellers"), staff(None, "tom", "tellers")
    now = datetime.now(UTC)
    freeze = freeze_request(account, tina, clock=lambda: now - timedelta(hours=5))
    withdraw = ask(
        "withdraw",
        {"account_id": str(account), "amount_cents": 200_000, "description": "car"},
        tom,
        "car",
        clock=lambda: now - timedelta(hours=1, minutes=5),
    )
    transfer = ask(
        "transfer",
        {
            "from_account": str(account),
            "to_account": str(other),
            "amount_cents": 150_000,
            "description": "rent",
        },
        tom,
        "rent",
    )
    return {"freeze": freeze, "withdraw": withdraw, "transfer": transfer}


def listed(response):
    """The kinds listed, in order."""
    page = response.content.decode()
    return re.findall(r'class="decide-link" title="request [^"]+">(\w+)</a>', page)


def test_the_queue_lists_pending_requests_oldest_first_with_the_rule(client, queue, grace):
    account, other = grace
    staff(client, "audrey", "auditors")
    approvals.reject(queue["transfer"].id, actor=Actor("ann", 99, "admin"), reason="no")
    response = client.get(QUEUE_URL)
    assert response.status_code == 200
    assert listed(response) == ["freeze", "withdraw"]
    page = " ".join(response.content.decode().split())
    for line in approvals.policy().describe():
        assert f"<li>{line}</li>" in page
    assert "You see the queue read-only" in page
    assert (
        f'<a href="{audit_url(account)}" class="account-link" title="{account}">Grace Hopper</a>'
        in page
    )
    assert "2,000.00 EUR" in page and ">car<" in page and ">tom<" in page
    assert 'name="_selected_action"' not in page and 'name="action"' not in page
    everything = client.get(QUEUE_URL, {"status": "all"})
    assert listed(everything) == ["freeze", "withdraw", "transfer"]
    assert listed(client.get(QUEUE_URL, {"status": "rejected"})) == ["transfer"]


def test_the_queue_filters_by_kind_account_requester_and_age_and_searches(client, queue, grace):
    account, other = grace
    staff(client, "audrey", "auditors")
    assert listed(client.get(QUEUE_URL, {"kind": "withdraw"})) == ["withdraw"]
    assert listed(client.get(QUEUE_URL, {"requested_by": "tina"})) == ["freeze"]
    assert listed(client.get(QUEUE_URL, {"account_id": str(other)})) == ["transfer"]
    assert listed(client.get(QUEUE_URL, {"age": "1h"})) == ["freeze", "withdraw"]
    assert listed(client.get(QUEUE_URL, {"age": "4h"})) == ["freeze"]
    assert listed(client.get(QUEUE_URL, {"q": "someone"})) == ["transfer"]
    assert listed(client.get(QUEUE_URL, {"q": str(queue["freeze"].id)})) == ["freeze"]
    assert listed(client.get(QUEUE_URL, {"q": "tom"})) == ["withdraw", "transfer"]
    page = client.get(QUEUE_URL).content.decode()
    assert f"?account_id={account}" in page and ">Grace Hopper</a>" in page
    # Nonsense in the filters is an empty list, not an error.
    for params in ({"status": "nonsense"}, {"account_id": "nope"}, {"age": "7y"}):
        response = client.get(QUEUE_URL, params)
        assert response.status_code == 200 and listed(response) == [], params


def test_the_decision_page_shows_the_accounts_now_and_after(client, queue, grace):
    staff(client, "ann", "approvers")
    page = " ".join(client.get(decide_url(queue["transfer"].id)).content.decode().split())
    assert 'id="request-kind">transfer<' in page and 'id="request-amount">1,500.00 EUR<' in page
    table = re.search(r'<table class="preview-table".*?</table>', page).group(0)
    assert cells_of(table).split("Version ")[1] == (
        "Grace Hopper now 5,000.00 EUR active 1 after 3,500.00 EUR active 2 "
        "Someone Else now 0.00 EUR active 1 after 1,500.00 EUR active 2"
    )
    assert 'id="approve-form"' in page and 'id="reject-form"' in page
    freeze = " ".join(client.get(decide_url(queue["freeze"].id)).content.decode().split())
    assert "now 5,000.00 EUR active 1 after 5,000.00 EUR frozen 2" in cells_of(freeze)


@pytest.mark.parametrize("role", ["tellers", "auditors"])
def test_tellers_and_auditors_see_a_request_but_cannot_decide_it(client, queue, role):
    staff(client, "viewer", role)
    row = queue["freeze"]
    page = client.get(decide_url(row.id)).content.decode()
    assert "Only members of the approvers group approve or reject" in page
    assert 'id="approve-form"' not in page
    response = client.post(decide_url(row.id), {"decision": "approve"})
    assert response.status_code == 403
    response = client.post(
        QUEUE_URL, {"action": "approve_selected", "_selected_action": [str(row.id)]}
    )
    assert ApprovalRequest.objects.get(pk=row.id).status == "pending"


def test_staff_without_a_role_cannot_see_the_queue(client, queue):
    staff(client, "nobody")
    assert client.get(QUEUE_URL).status_code == 403
    assert client.get(decide_url(queue["freeze"].id)).status_code == 403


def test_an_approver_approves_and_the_command_runs_with_the_note(client, queue, grace):
    account, _ = grace
    ann = staff(client, "ann", "approvers")
    row = queue["freeze"]
    response = client.post(
        decide_url(row.id), {"decision": "approve", "approve-note": "called the customer"}
    )
    assert response.status_code == 302 and response["Location"] == QUEUE_URL
    (message,) = messages_of(response)
    assert text_of(message) == APPROVED.format(
        request=short(row),
        what="freeze",
        outcome=APPROVED_OUTCOME.format(
            holder="Grace Hopper", balance="5,000.00 EUR", status="frozen", version=2
        ),
    )
    decided = ApprovalRequest.objects.get(pk=row.id)
    assert (decided.status, decided.decided_by, decided.decision_reason) == (
        "approved",
        "ann",
        "called the customer",
    )
    frozen = es.read_stream(account)[-1]
    assert frozen.event_type == "AccountFrozen"
    assert frozen.metadata["actor"]["username"] == "tina"
    assert frozen.metadata["approval"]["approved_by"]["id"] == ann.pk
    # Decided already: approving again is a message, not a second freeze.
    response = client.post(decide_url(row.id), {"decision": "approve"})
    assert "it cannot be approved any more" in messages_of(response)[-1]
    assert es.stream_version(account) == 2


def test_rejecting_needs_a_reason_and_runs_nothing(client, queue, grace):
    account, _ = grace
    staff(client, "ann", "approvers")
    row = queue["withdraw"]
    response = client.post(decide_url(row.id), {"decision": "reject", "reject-reason": ""})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="reject-errors"' in page and "This field is required." in page
    assert ApprovalRequest.objects.get(pk=row.id).status == "pending"
    response = client.post(
        decide_url(row.id), {"decision": "reject", "reject-reason": "no ID shown"}
    )
    (message,) = messages_of(response)
    assert text_of(message) == REJECTED.format(
        request=short(row), what="withdraw 2,000.00 EUR", reason="no ID shown"
    )
    assert ApprovalRequest.objects.get(pk=row.id).status == "rejected"
    assert svc.get_account(account).balance_cents == 500_000


def test_the_requester_cannot_approve_their_own_request_superuser_or_not(client, rule, grace):
    account, _ = grace
    root = staff(client, "root", "approvers", superuser=True)
    row = freeze_request(account, root)
    page = client.get(decide_url(row.id)).content.decode()
    assert "You (root) asked for this command: another approver must decide it." in page
    assert 'id="approve-form"' not in page
    for decision in ({"decision": "approve"}, {"decision": "reject", "reject-reason": "x"}):
        response = client.post(decide_url(row.id), decision)
        message = messages_of(response)[-1]
        assert "root asked for this command and cannot also" in text_of(message)
        assert "another approver must" in text_of(message)
    assert ApprovalRequest.objects.get(pk=row.id).status == "pending"
    assert svc.get_account(account).status == "active"


def test_an_approval_the_account_no_longer_allows_is_refused_and_stays_pending(
    client, queue, grace
):
    account, _ = grace
    staff(client, "ann", "approvers")
    svc.withdraw(account_id=account, amount_cents=450_000, actor=SYSTEM)
    row = queue["withdraw"]
    page = " ".join(client.get(decide_url(row.id)).content.decode().split())
    assert (
        "Approving now would be refused: 2,000.00 EUR exceeds the balance of 500.00 EUR." in page
    )
    response = client.post(decide_url(row.id), {"decision": "approve"})
    (message,) = messages_of(response)
    assert text_of(message) == DECISION_REFUSED.format(
        action="Approval",
        request=short(row),
        why=APPROVAL_BROKE_A_RULE.format(why="2,000.00 EUR exceeds the balance of 500.00 EUR"),
    )
    assert ApprovalRequest.objects.get(pk=row.id).status == "pending"


def test_an_expired_request_is_listed_as_expired_and_cannot_be_approved(client, rule, grace):
    account, _ = grace
    tina = staff(None, "tina", "tellers")
    staff(client, "ann", "approvers")
    long_ago = datetime.now(UTC) - timedelta(hours=30)
    row = freeze_request(account, tina, clock=lambda: long_ago)
    response = client.post(decide_url(row.id), {"decision": "approve"})
    assert response.status_code == 302
    (message,) = messages_of(response)
    assert "it cannot be approved any more" in message or "expired" in message
    assert ApprovalRequest.objects.get(pk=row.id).status == "expired"
    assert listed(client.get(QUEUE_URL)) == []
    assert listed(client.get(QUEUE_URL, {"status": "expired"})) == ["freeze"]
    assert svc.get_account(account).status == "active"


def test_unknown_requests_and_odd_posts_are_messages_not_errors(client, queue):
    staff(client, "ann", "approvers")
    missing = uuid.uuid4()
    response = client.get(decide_url(missing))
    assert response.status_code == 302 and response["Location"] == QUEUE_URL
    assert messages_of(response) == [NOT_FOUND.format(approval_id=missing)]
    assert client.get(f"{QUEUE_URL}not-a-uuid/decide/").status_code in (302, 404)
    response = client.post(decide_url(queue["freeze"].id), {"decision": "explode"})
    assert response.status_code == 302 and messages_of(response)[-1] == NO_DECISION
    assert client.put(decide_url(queue["freeze"].id)).status_code == 405
    response = client.get(f"{QUEUE_URL}{queue['freeze'].id}/change/")
    assert response.status_code == 302 and response["Location"] == decide_url(queue["freeze"].id)
    response = client.post(QUEUE_URL, {"action": "approve_selected", "_selected_action": ["x"]})
    assert response.status_code in (200, 302)
    assert ApprovalRequest.objects.filter(status="pending").count() == 3


# --- several at once ----------------------------------------------------------------------


def test_bulk_approval_runs_the_others_and_refuses_the_approvers_own(client, queue, grace):
    account, other = grace
    ann = staff(client, "ann", "approvers")
    own = freeze_request(other, ann, reason="ann's own")
    selected = [str(queue["withdraw"].id), str(own.id), str(queue["transfer"].id)]
    response = client.post(QUEUE_URL, {"action": "approve_selected", "_selected_action": selected})
    assert response.status_code == 200
    page = " ".join(response.content.decode().split())
    assert "You are about to <strong>approve</strong> these 3 requests." in page
    assert page.count('class="bulk-own"') == 1
    assert ApprovalRequest.objects.filter(status="pending").count() == 4
    response = client.post(
        QUEUE_URL,
        {
            "action": "approve_selected",
            "_selected_action": selected,
            "post": "yes",
            "note": "batch of Monday",
        },
    )
    assert response.status_code == 302
    done, refused = messages_of(response)
    assert text_of(done) == BULK_DONE.format(
        decided="Approved",
        count=2,
        s="s",
        requests=f"{short(queue['withdraw'])}, {short(queue['transfer'])}",
    )
    assert text_of(refused) == BULK_OWN.format(count=1, s="", requests=short(own), them="it")
    assert ApprovalRequest.objects.get(pk=own.id).status == "pending"
    assert svc.get_account(account).balance_cents == 500_000 - 200_000 - 150_000
    assert svc.get_account(other).balance_cents == 150_000
    assert ApprovalRequest.objects.get(pk=queue["withdraw"].id).decision_reason == (
        "batch of Monday"
    )


def test_bulk_rejection_needs_a_reason_and_reports_what_was_decided_already(client, queue, grace):
    staff(client, "ann", "approvers")
    approvals.reject(queue["freeze"].id, actor=Actor("bob", 98, "admin"), reason="dup")
    selected = [str(queue["freeze"].id), str(queue["withdraw"].id)]
    response = client.post(
        QUEUE_URL,
        {"action": "reject_selected", "_selected_action": selected, "post": "yes", "reason": ""},
    )
    assert response.status_code == 200 and 'id="bulk-errors"' in response.content.decode()
    assert ApprovalRequest.objects.get(pk=queue["withdraw"].id).status == "pending"
    response = client.post(
        QUEUE_URL,
        {
            "action": "reject_selected",
            "_selected_action": selected,
            "post": "yes",
            "reason": "not today",
        },
    )
    done, failed = messages_of(response)
    assert text_of(done) == BULK_DONE.format(
        decided="Rejected", count=1, s="", requests=short(queue["withdraw"])
    )
    assert text_of(failed).startswith(f"Not rejected: {short(queue['freeze'])} (")
    assert "is rejected: it cannot be rejected any more" in text_of(failed)


def test_an_approver_sees_the_bulk_actions_and_a_teller_does_not(client, queue):
    staff(client, "ann", "approvers")
    page = client.get(QUEUE_URL).content.decode()
    assert 'value="approve_selected"' in page and 'value="reject_selected"' in page
    assert "You are an approver" in page
    staff(client, "tina2", "tellers")
    page = client.get(QUEUE_URL).content.decode()
    assert "approve_selected" not in page


# --- reversals from the timeline -----------------------------------------------------------


@pytest.fixture
def ada():
    """Ada's account: opened with 100.00 EUR, a deposit of 25.00 (v2), a withdrawal of
    10.00 (v3)."""
    account = svc.open_account(
        holder_name="Ada Lovelace", initial_balance_cents=10_000, actor=SYSTEM
    ).id
    svc.deposit(account_id=account, amount_cents=2_500, description="typo", actor=SYSTEM)
    svc.withdraw(account_id=account, amount_cents=1_000, description="cash", actor=SYSTEM)
    runner.catch_up()
    return account


def test_a_teller_reverses_a_deposit_after_confirming_with_a_reason(client, ada):
    teller = staff(client, "tina", "tellers")
    page = client.get(audit_url(ada)).content.decode()
    assert f'href="{reverse_url(ada, 2)}" class="reverse-link"' in page
    assert f'href="{reverse_url(ada, 3)}" class="reverse-link"' in page
    assert reverse_url(ada, 1) not in page  # an opening is not a posting
    response = client.get(reverse_url(ada, 2))
    assert response.status_code == 200
    page = " ".join(response.content.decode().split())
    assert "You are about to <strong>reverse</strong> version 2" in page
    assert 'id="confirm-balance">115.00 EUR<' in page
    assert 'id="confirm-balance-after">90.00 EUR<' in page
    response = client.post(reverse_url(ada, 2), {"confirm": "yes", "expected_version": "3"})
    assert response.status_code == 200 and "This field is required." in response.content.decode()
    assert es.stream_version(ada) == 3
    response = client.post(
        reverse_url(ada, 2),
        {"confirm": "yes", "expected_version": "3", "reverse-reason": "wrong account"},
    )
    assert response.status_code == 302 and response["Location"] == audit_url(ada)
    assert messages_of(response) == [
        "Reversal done: version 2 (MoneyDeposited of 25.00 EUR) is reversed by version 4; "
        "the balance is 90.00 EUR."
    ]
    event = es.read_stream(ada)[-1]
    assert event.event_type == "PostingReversed" and event.data["reversed_version"] == 2
    assert event.data["reason"] == "wrong account"
    assert event.metadata["actor"]["username"] == teller.username


def test_the_timeline_strikes_the_original_through_and_links_both_ways(client, ada):
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )
    staff(client, "audrey", "auditors")
    page = client.get(audit_url(ada)).content.decode()
    original = re.search(
        r'<tr id="version-2" class="[^"]*reversed-posting"[^>]*>.*?</tr>', page, re.S
    )
    assert original, "version 2 is not marked reversed"
    row = original.group(0)
    assert '<del><span class="visually-hidden">reversed: </span>25.00</del>' in row
    assert '<a href="#version-4" class="reversed-by-link">reversed by v4</a>' in row
    reversal = re.search(
        r'<tr id="version-4" class="[^"]*reversal-posting"[^>]*>.*?</tr>', page, re.S
    )
    assert reversal, "version 4 is not marked as a reversal"
    row = reversal.group(0)
    assert ">-25.00<" in row and ">typo<" in row
    assert '<a href="#version-2" class="reverses-link">reverses v2</a>' in row
    assert "reverse-link" not in page  # auditors reverse nothing
    assert 'id="state-balance" class="money">90.00 EUR<' in page


def test_links_to_a_row_on_another_page_name_that_page(client, ada):
    for _ in range(60):
        svc.deposit(account_id=ada, amount_cents=1, actor=SYSTEM)
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )  # version 64, on page 1 (64 to 15); the deposit, version 2, is on page 2
    staff(client, "audrey", "auditors")
    page = client.get(audit_url(ada), {"page": 2}).content.decode()
    assert f'href="{audit_url(ada)}?page=1#version-64" class="reversed-by-link"' in page
    page = client.get(audit_url(ada)).content.decode()
    assert f'href="{audit_url(ada)}?page=2#version-2" class="reverses-link"' in page


def test_the_filter_hides_reversed_pairs(client, ada):
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )
    staff(client, "audrey", "auditors")
    page = client.get(audit_url(ada)).content.decode()
    assert 'id="hide-reversed"' in page
    assert versions_listed(page) == ["4", "3", "2", "1"]
    page = client.get(audit_url(ada), {"hide_reversed": "1"}).content.decode()
    assert versions_listed(page) == ["3", "1"]
    assert "2 rows of this page hidden" in " ".join(page.split())
    assert 'id="show-reversed"' in page


def test_a_transfer_reversed_from_one_side_is_linked_on_both_timelines(client):
    a = svc.open_account(holder_name="Payer", initial_balance_cents=5_000, actor=SYSTEM).id
    b = svc.open_account(holder_name="Payee", actor=SYSTEM).id
    svc.transfer(from_account=a, to_account=b, amount_cents=2_000, actor=SYSTEM)
    runner.catch_up()
    staff(client, "tina", "tellers")
    page = " ".join(client.get(reverse_url(b, 2)).content.decode().split())
    assert "A transfer is reversed on both accounts at once" in page and ">Payer</a>" in page
    response = client.post(
        reverse_url(b, 2), {"confirm": "yes", "expected_version": "2", "reverse-reason": "dup"}
    )
    assert messages_of(response)[0].startswith("Reversal done: version 2 (TransferReceived")
    assert svc.get_account(a).balance_cents == 5_000 and svc.get_account(b).balance_cents == 0
    for account in (a, b):
        page = client.get(audit_url(account)).content.decode()
        assert "reversed by v3" in page and "reverses v2" in page


def test_refused_reversals_say_why_and_change_nothing(client, ada):
    staff(client, "tina", "tellers")
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )
    cases = {
        2: WHY_ALREADY_REVERSED.format(by=4),
        1: WHY_NOT_A_POSTING.format(event_type="AccountOpened"),
        4: WHY_NOT_A_POSTING.format(event_type="PostingReversed"),
        99: WHY_NO_VERSION.format(version=99),
        0: WHY_NO_VERSION.format(version=0),
    }
    for version, why in cases.items():
        for response in (
            client.get(reverse_url(ada, version)),
            client.post(
                reverse_url(ada, version),
                {"confirm": "yes", "expected_version": "4", "reverse-reason": "x"},
            ),
        ):
            assert response.status_code == 302, version
            assert messages_of(response)[-1] == REVERSAL_NOT_OFFERED.format(
                version=version, why=why
            )
    assert es.stream_version(ada) == 4
    response = client.post(
        reverse_url(ada, 3), {"confirm": "yes", "expected_version": "3", "reverse-reason": "x"}
    )
    assert messages_of(response)[-1] == COMMAND_STALE.format(
        label="Reversal", actual=4, expected=3
    )
    assert es.stream_version(ada) == 4
    response = client.get(reverse_url(uuid.uuid4(), 2))
    assert response.status_code == 302
    assert client.put(reverse_url(ada, 3)).status_code == 405


def test_a_reversal_the_funds_do_not_allow_is_refused_in_currency_units(client, ada):
    staff(client, "tina", "tellers")
    svc.withdraw(account_id=ada, amount_cents=10_000, actor=SYSTEM)  # 15.00 EUR left
    response = client.post(
        reverse_url(ada, 2), {"confirm": "yes", "expected_version": "4", "reverse-reason": "x"}
    )
    assert messages_of(response) == [
        "Reversal refused: 25.00 EUR exceeds the balance of 15.00 EUR. Nothing was changed."
    ]
    assert es.stream_version(ada) == 4


def test_a_frozen_account_offers_no_reversal(client, ada):
    staff(client, "tina", "tellers")
    svc.freeze(account_id=ada, reason="x", actor=SYSTEM)
    assert "reverse-link" not in client.get(audit_url(ada)).content.decode()
    response = client.get(reverse_url(ada, 2))
    assert messages_of(response) == [
        REVERSAL_NOT_OFFERED.format(
            version=2, why="the account is frozen: no money can move on it"
        )
    ]


def test_only_tellers_reverse(client, ada):
    staff(client, "audrey", "auditors")
    assert client.get(reverse_url(ada, 2)).status_code == 403
    assert client.post(reverse_url(ada, 2), {"reverse-reason": "x"}).status_code == 403
    staff(client, "ann", "approvers")
    assert client.get(reverse_url(ada, 2)).status_code == 403
    assert es.stream_version(ada) == 3


def test_a_reversal_above_the_threshold_is_sent_for_approval_then_approved(client, settings, ada):
    rule_on(settings, threshold_cents=2_000)
    staff(client, "tina", "tellers")
    page = " ".join(client.get(reverse_url(ada, 2)).content.decode().split())
    assert "This reversal needs a second person's approval" in page
    response = client.post(
        reverse_url(ada, 2), {"confirm": "yes", "expected_version": "3", "reverse-reason": "dup"}
    )
    row = ApprovalRequest.objects.get()
    assert (row.kind, row.amount_cents, row.reason) == ("reversal", 2_500, "dup")
    assert "(reversal 25.00 EUR) waits for an approver" in text_of(messages_of(response)[0])
    assert es.stream_version(ada) == 3
    # Below the threshold it runs at once.
    response = client.post(
        reverse_url(ada, 3), {"confirm": "yes", "expected_version": "3", "reverse-reason": "x"}
    )
    assert messages_of(response)[-1].startswith("Reversal done: version 3")
    staff(client, "ann", "approvers")
    client.post(decide_url(row.id), {"decision": "approve"})
    assert svc.get_account(ada).balance_cents == 10_000
    assert "reversed by v5" in client.get(audit_url(ada)).content.decode()


# --- the CSV and time travel carry reversals ------------------------------------------------


def test_the_csv_carries_the_reversal_with_its_signed_amount_and_both_links(client, ada):
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )
    staff(client, "audrey", "auditors")
    response = client.get(f"{audit_url(ada)}export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [
        (
            r["version"],
            r["event_type"],
            r["amount"],
            r["reverses_version"],
            r["reversed_by_version"],
        )
        for r in rows
    ] == [
        ("1", "AccountOpened", "100.00", "", ""),
        ("2", "MoneyDeposited", "25.00", "", "4"),
        ("3", "MoneyWithdrawn", "-10.00", "", ""),
        ("4", "PostingReversed", "-25.00", "2", ""),
    ]
    assert rows[-1]["description_or_reason"] == "typo"
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(rows[-1]["balance_after"])


def test_the_balance_chart_follows_the_reversal(client, ada):
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )
    runner.catch_up()
    series = selectors.balance_series(ada, version=4)
    assert [(p.version, p.balance_cents) for p in series.points] == [
        (1, 10_000),
        (2, 12_500),
        (3, 11_500),
        (4, 9_000),
    ]
    assert not series.lagging


def test_time_travel_before_a_reversal_shows_the_balance_then(client, ada):
    reversals.reverse_posting(
        account_id=ada, event_id=es.read_stream(ada)[1].event_id, reason="typo", actor=SYSTEM
    )
    staff(client, "audrey", "auditors")
    page = client.get(audit_url(ada), {"as_of_version": 3}).content.decode()
    assert 'id="past-balance" class="money">115.00 EUR<' in page
    page = client.get(audit_url(ada), {"as_of_version": 4}).content.decode()
    assert 'id="past-balance" class="money">90.00 EUR<' in page
