"""The events list in the admin: searched by holder, description, id beginning, amount in
currency units and a date range, in a bounded number of queries (issue 17)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

import eventstore as es
from bank.selectors.event_search import ID_PREFIX_MIN
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")
EVENTS = "/admin/eventstore/event/"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(days):
    return lambda: START + timedelta(days=days)


@pytest.fixture
def auditor(client):
    ensure_roles()
    user = User.objects.create_user("aud", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="auditors"))
    client.force_login(user)
    return client


@pytest.fixture
def books():
    """Ada (EUR) and Yuki (JPY), each with a deposit of 1250 minor units on other days."""
    ada = svc.open_account(holder_name="Ada Lovelace", actor=SYSTEM, clock=at(0)).id
    yuki = svc.open_account(
        holder_name="Yukihiro Matsumoto", currency="JPY", actor=SYSTEM, clock=at(0)
    ).id
    svc.deposit(
        account_id=ada,
        amount_cents=1250,
        description="Monthly salary",
        actor=SYSTEM,
        clock=at(3),
    )
    svc.deposit(account_id=yuki, amount_cents=1250, description="Gift", actor=SYSTEM, clock=at(10))
    svc.freeze(account_id=yuki, reason="Card stolen", actor=SYSTEM, clock=at(11))
    runner.catch_up()
    return {"ada": ada, "yuki": yuki}


def found(client, **params):
    """The (stream id, version) of every event on the list's page."""
    response = client.get(EVENTS, params)
    assert response.status_code == 200
    page = response.content.decode()
    positions = [int(p) for p in re.findall(r'href="/admin/eventstore/event/(\d+)/change/', page)]
    by_position = {e.position: e for e in es.read_all(after_position=0, limit=1000)}
    return {(by_position[p].stream_id, by_position[p].version) for p in positions}


def test_events_are_found_by_the_holders_name_in_any_case(auditor, books):
    assert found(auditor, q="ada lovelace") == {(books["ada"], 1), (books["ada"], 2)}
    assert found(auditor, q="MATSUMOTO") == {(books["yuki"], v) for v in (1, 2, 3)}


def test_events_are_found_by_words_of_their_description_or_reason(auditor, books):
    assert found(auditor, q="salary") == {(books["ada"], 2)}
    assert found(auditor, q="stolen") == {(books["yuki"], 3)}
    assert found(auditor, q="nothing like this") == set()


def test_events_are_found_by_the_beginning_of_their_event_or_account_id(auditor, books):
    event = es.read_stream(books["ada"])[1]
    short = str(event.event_id)[:8]
    assert (books["ada"], 2) in found(auditor, q=short)
    assert found(auditor, q=str(books["yuki"])[:8]) >= {(books["yuki"], v) for v in (1, 2, 3)}
    # Too short a beginning is no id search (it would match a sixteenth of the store).
    assert (books["ada"], 2) not in found(auditor, q=short[: ID_PREFIX_MIN - 1])


def test_amounts_are_typed_in_currency_units_of_each_accounts_currency(auditor, books):
    # 1250 minor units are 12.50 EUR and 1250 JPY: each search finds its own account's.
    assert found(auditor, q="12.50") == {(books["ada"], 2)}
    assert found(auditor, q="1250") == {(books["yuki"], 2)}
    assert found(auditor, q="12,50") == set()  # not an amount in English, and no text


def test_the_list_shows_each_events_holder_and_amount_in_currency_units(auditor, books):
    page = auditor.get(EVENTS, {"q": "1250"}).content.decode()
    assert '<td class="field-holder">Yukihiro Matsumoto</td>' in page
    assert '<td class="field-amount">1,250 JPY</td>' in page
    page = auditor.get(EVENTS, {"q": "12.50"}).content.decode()
    assert '<td class="field-amount">12.50 EUR</td>' in page


def test_a_date_range_selects_the_days_events_occurred_on(auditor, books):
    day = (START + timedelta(days=10)).date()
    assert found(auditor, occurred_from=str(day), occurred_to=str(day)) == {(books["yuki"], 2)}
    assert found(auditor, occurred_from=str(day)) == {(books["yuki"], 2), (books["yuki"], 3)}
    assert found(auditor, occurred_to=str(START.date())) == {
        (books["ada"], 1),
        (books["yuki"], 1),
    }
    # With a search: both conditions hold.
    assert found(auditor, q="matsumoto", occurred_to=str(day)) == {
        (books["yuki"], 1),
        (books["yuki"], 2),
    }
    page = auditor.get(EVENTS, {"q": "matsumoto", "occurred_from": str(day)}).content.decode()
    assert 'id="date-range-filter"' in page
    assert '<input type="hidden" name="q" value="matsumoto">' in page
    assert re.search(r'<input[^>]*name="occurred_from"[^>]*value="' + str(day), page)


def test_a_reversed_or_invalid_date_range_is_said_and_left_out(auditor, books):
    response = auditor.get(EVENTS, {"occurred_from": "2026-03-12", "occurred_to": "2026-03-01"})
    assert response.status_code == 200
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("The date range was left out" in m and "before the first" in m for m in said)
    assert len(found(auditor, occurred_from="not-a-day")) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"q": "ada"},
        {"q": "12.50"},
        {"q": "salary", "occurred_from": "2026-03-01", "occurred_to": "2026-03-31"},
    ],
)
def test_a_search_costs_the_same_queries_with_three_or_thirty_accounts(auditor, params):
    counts, opened = [], 0
    for accounts in (3, 30):
        for number in range(opened, accounts):
            state = svc.open_account(
                holder_name=f"Ada {number}", initial_balance_cents=1250, actor=SYSTEM
            )
            svc.deposit(account_id=state.id, amount_cents=1250, description="salary", actor=SYSTEM)
        opened = accounts
        runner.catch_up()
        with CaptureQueriesContext(connection) as queries:
            assert auditor.get(EVENTS, params).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
