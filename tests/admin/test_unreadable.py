"""An account whose stream holds an event this release cannot read (issue 18): the audit page
shows a banner naming it and the events as stored, offers no command, and the account's other
pages send there instead of failing."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


def teller(client):
    ensure_roles()
    user = User.objects.create_user("tina", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="tellers"))
    user.groups.add(Group.objects.get(name="auditors"))
    client.force_login(user)


@pytest.fixture
def unreadable():
    """An account (opened, a deposit) then an ``InterestAccrued`` a newer release wrote."""
    account_id = svc.open_account(
        holder_name="Ada Lovelace", initial_balance_cents=1000, actor=SYSTEM
    ).id
    svc.deposit(account_id=account_id, amount_cents=500, description="salary", actor=SYSTEM)
    es.append(
        account_id,
        [
            es.NewEvent(
                event_type="InterestAccrued",
                data={"amount_cents": 3, "rate": "0.25%"},
                occurred_at=datetime.now(UTC),
                schema_version=2,
            )
        ],
        stream_type=svc.STREAM_TYPE,
        expected_version=2,
    )
    runner.catch_up()
    return account_id


def audit_url(account_id, suffix=""):
    return f"/admin/projections/accountbalance/{account_id}/audit/{suffix}"


def test_the_audit_page_shows_a_banner_and_the_events_as_stored_without_commands(
    client, unreadable
):
    teller(client)
    response = client.get(audit_url(unreadable))
    assert response.status_code == 200
    page = response.content.decode()
    banner = re.search(
        r'<div class="integrity-banner" role="alert" id="unreadable-banner">(.*?)</div>',
        page,
        re.S,
    ).group(1)
    assert "<code>InterestAccrued</code>, schema version 2" in banner
    assert "version 3" in banner and "deploy the release that wrote this event" in banner
    rows = re.findall(r'<tr class="row\d( unreadable-event)?" data-version="(\d)">', page)
    assert [version for _, version in rows] == ["3", "2", "1"]
    assert rows[0][0] == " unreadable-event"
    assert "&quot;rate&quot;: &quot;0.25%&quot;" in page and "AccountOpened" in page
    assert 'id="commands"' not in page and "command-form" not in page
    # The opening's data as stored: the holder's name is a token (what the chain covers),
    # marked, and shown decrypted beside it.
    opening = re.search(r'data-version="1">(.*?)</tr>', page, re.S).group(1)
    stored = re.search(r'<pre class="stored-json">(.*?)</pre>', opening, re.S).group(1)
    assert re.search(r"&quot;holder_name&quot;: &quot;pii:v1:[0-9a-f-]{36}:", stored)
    assert "Ada Lovelace" not in stored
    assert "(encrypted: shown decrypted below)" in opening
    assert re.search(r'<dd class="personal-value">Ada Lovelace</dd>', opening)


@pytest.mark.parametrize(
    "suffix, what",
    [
        ("export.csv", "The CSV export"),
        ("compare/?a=1&b=2", "Comparing versions"),
        ("statement/", "The statement"),
        ("statement.csv?from=2026-01-01&to=2026-12-31", "The statement"),
    ],
)
def test_the_accounts_other_pages_send_to_the_audit_page_and_say_why(
    client, unreadable, suffix, what
):
    teller(client)
    response = client.get(audit_url(unreadable, suffix))
    assert response.status_code == 302 and response.url == audit_url(unreadable)
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [
        f"{what} is not available for this account: its event at version 3 is a "
        "“InterestAccrued” that this release cannot read. The audit page shows its events "
        "as stored."
    ]


def test_a_command_posted_for_it_is_refused_and_writes_nothing(client, unreadable):
    teller(client)
    response = client.post(
        f"/admin/projections/accountbalance/{unreadable}/command/deposit/",
        {"deposit-amount": "1.00", "deposit-description": ""},
    )
    assert response.status_code == 302 and response.url == audit_url(unreadable)
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said and said[0].startswith("Deposit is not available for this account")
    assert es.stream_version(unreadable) == 3
