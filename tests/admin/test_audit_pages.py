"""The auditor's pages through Django's test client (issue 17, part 2): links from the
timeline (counterparty by name, a command's events across accounts, a user's actions), the
balance chart, two versions compared, and statements (page and CSV)."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import eventstore as es
from bank.admin import DAYS_REVERSED, VERSION_OUT_OF_RANGE, VERSIONS_REVERSED
from bank.domain import Account
from bank.selectors import account_statement, balance_series
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.accounts import STREAM_TYPE
from projections import runner
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BASE = "/admin/projections/accountbalance"


def at(hours):
    return lambda: START + timedelta(hours=hours)


def staff(client, name, group):
    ensure_roles()
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return user


def audit_url(account_id):
    return f"{BASE}/{account_id}/audit/"


def text(response):
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.fixture
def pair(django_capture_on_commit_callbacks):
    """Ada (10.00 + 5.00 - 2.00 EUR) and Bob (0.00 EUR); then Ada sends Bob 3.00 EUR.

    The openings' commit hooks run as a real commit would run them (the holders' data keys
    are then cached, as in a process that opened the accounts), so the pages' query counts
    are those of a warm process."""
    with django_capture_on_commit_callbacks(execute=True):
        ada = svc.open_account(
            holder_name="Ada Lovelace", initial_balance_cents=1000, actor=SYSTEM, clock=at(0)
        ).id
        bob = svc.open_account(holder_name="Bob <Builder>", actor=SYSTEM, clock=at(100)).id
    svc.deposit(account_id=ada, amount_cents=500, description="salary", actor=SYSTEM, clock=at(24))
    svc.withdraw(account_id=ada, amount_cents=200, description="rent", actor=SYSTEM, clock=at(96))
    transfer_id = uuid.uuid4()
    svc.transfer(
        from_account=ada,
        to_account=bob,
        amount_cents=300,
        description="books",
        actor=Actor("tina", 7, "admin"),
        correlation_id=transfer_id,
        clock=at(216),
    )
    runner.catch_up()
    return ada, bob, transfer_id


# --- 1. links ------------------------------------------------------------------------------


def test_the_counterparty_is_named_by_its_holder_and_links_to_its_audit_page(client, pair):
    ada, bob, _ = pair
    staff(client, "aud", "auditors")
    page = text(client.get(audit_url(ada)))
    link = f'<a href="{audit_url(bob)}" class="account-link" title="{bob}">Bob &lt;Builder&gt;</a>'
    assert f"(to {link})" in page
    page = text(client.get(audit_url(bob)))
    assert f'(from <a href="{audit_url(ada)}" class="account-link"' in page
    assert ">Ada Lovelace</a>)" in page


def test_every_counterparty_on_a_page_is_named_in_one_query(client, pair):
    ada, _, _ = pair
    others = [svc.open_account(holder_name=f"Payee {n:02}", actor=SYSTEM).id for n in range(12)]
    for other in others:
        svc.transfer(from_account=ada, to_account=other, amount_cents=1, actor=SYSTEM)
    runner.catch_up()
    staff(client, "aud", "auditors")
    with CaptureQueriesContext(connection) as queries:
        page = text(client.get(audit_url(ada)))
    named = [q["sql"] for q in queries.captured_queries if "read_account_balances" in q["sql"]]
    assert len(named) == 1, named
    assert all(f">Payee {n:02}</a>" in page for n in range(12))


def test_an_account_the_read_model_has_not_reached_shows_its_short_id(client, pair):
    ada, _, _ = pair
    late = svc.open_account(holder_name="Not Yet Projected", actor=SYSTEM).id
    svc.transfer(from_account=ada, to_account=late, amount_cents=1, actor=SYSTEM)
    staff(client, "aud", "auditors")
    page = text(client.get(audit_url(ada)))
    assert f'<a href="{audit_url(late)}"><code class="short-id-value" title="{late}">' in page
    assert "Not Yet Projected" not in page


def test_the_correlation_page_lists_both_legs_of_a_transfer(
    client, pair, django_assert_max_num_queries
):
    ada, bob, transfer_id = pair
    staff(client, "aud", "auditors")
    timeline = text(client.get(audit_url(ada)))
    url = f"{BASE}/correlation/{transfer_id}/"
    assert f'<a href="{url}" class="correlation-link"' in timeline
    with django_assert_max_num_queries(8):
        page = text(client.get(url))
    rows = re.findall(r'<tr class="row[12]" data-position="(\d+)"[^>]*>(.*?)</tr>', page, re.S)
    assert [int(p) for p, _ in rows] == sorted(int(p) for p, _ in rows)  # the stored order
    legs = {re.search(r'class="event-type">(\w+)<', r)[1]: r for _, r in rows}
    assert set(legs) == {"TransferSent", "TransferReceived"}
    sent, received = legs["TransferSent"], legs["TransferReceived"]
    assert f'<a href="{audit_url(ada)}" class="account-link"' in sent and "-3.00 EUR" in sent
    assert f'(to <a href="{audit_url(bob)}" class="account-link"' in sent
    assert f'<a href="{audit_url(bob)}" class="account-link"' in received
    assert ">3.00 EUR<" in received
    assert 'id="correlation-command">transfer<' in page
    assert "tina</a>" in page and "on 2 accounts" in page
    # An id no event carries: an empty list, not an error.
    empty = text(client.get(f"{BASE}/correlation/{uuid.uuid4()}/"))
    assert "No events." in empty


def test_the_actor_page_lists_that_users_actions_newest_first_a_page_at_a_time(
    client, pair, django_assert_max_num_queries
):
    ada, _, _ = pair
    tina = Actor("tina", 7, "admin")
    for n in range(55):
        svc.deposit(account_id=ada, amount_cents=n + 1, description=f"d{n}", actor=tina)
    runner.catch_up()
    staff(client, "aud", "auditors")
    timeline = text(client.get(audit_url(ada)))
    assert (
        '<a href="/admin/projections/accountbalance/actions/?actor=tina" class="actor-link"'
        in (timeline)
    )
    with django_assert_max_num_queries(8):
        first = text(client.get(f"{BASE}/actions/", {"actor": "tina"}))
    positions = [int(p) for p in re.findall(r'data-position="(\d+)"', first)]
    assert len(positions) == 50 and positions == sorted(positions, reverse=True)
    assert "d54" in first and "salary" not in first  # newest first; the system's are not hers
    assert 'id="actions-newer"' not in first
    older = re.search(r'href="\?actor=tina&amp;before=(\d+)" id="actions-older"', first)
    with django_assert_max_num_queries(8):
        second = text(client.get(f"{BASE}/actions/", {"actor": "tina", "before": older[1]}))
    rest = [int(p) for p in re.findall(r'data-position="(\d+)"', second)]
    # 5 older deposits and the transfer's two legs (tina issued it).
    assert len(rest) == 7 and max(rest) < min(positions)
    assert "TransferSent" in second and "TransferReceived" in second
    assert 'id="actions-older"' not in second
    newer = re.search(r'href="\?actor=tina&amp;after=(\d+)" id="actions-newer"', second)
    back = text(client.get(f"{BASE}/actions/", {"actor": "tina", "after": newer[1]}))
    assert [int(p) for p in re.findall(r'data-position="(\d+)"', back)] == positions
    # Positions that are no positions: an empty page, or the first page, never an error.
    for params, shown in (
        ({"before": "-5"}, []),
        ({"before": str(10**30)}, positions),
        ({"after": str(10**30)}, []),
        ({"before": "x"}, positions),
    ):
        page = text(client.get(f"{BASE}/actions/", {"actor": "tina", **params}))
        assert [int(p) for p in re.findall(r'data-position="(\d+)"', page)] == shown, params
    nobody = text(client.get(f"{BASE}/actions/", {"actor": "nobody"}))
    assert "No events name nobody as their actor" in nobody
    assert 'id="actor-form"' in text(client.get(f"{BASE}/actions/"))


# --- 2. the chart ----------------------------------------------------------------------------


def points_of(page):
    return re.findall(r'<circle class="chart-point" [^>]*data-version="(\d+)"', page)


def test_the_chart_has_one_point_per_balance_change_and_marks_the_time_travel_state(client, pair):
    ada, _, _ = pair
    svc.freeze(account_id=ada, reason="check", actor=SYSTEM, clock=at(300))  # moves no money
    runner.catch_up()
    staff(client, "aud", "auditors")
    page = text(client.get(audit_url(ada)))
    svg = re.search(r'<svg class="balance-chart-svg"[^>]*>', page)[0]
    assert (
        'role="img"' in svg and 'aria-labelledby="balance-chart-title balance-chart-desc"' in svg
    )
    assert '<title id="balance-chart-title">Balance of Ada Lovelace over time, in EUR</title>' in (
        page
    )
    assert points_of(page) == ["1", "2", "3", "4"]  # opening, deposit, withdrawal, transfer
    assert "chart-marker" not in page and "One point per balance change (4)." in page
    # Axis labels in currency units; the data table for screen readers.
    assert re.search(r'class="chart-label chart-y-label"[^>]*>15.00<', page)
    table = re.search(
        r'<div class="visually-hidden" id="balance-chart-data">.*?</table>', page, re.S
    )[0]
    assert table.count("<tr>") == 5 and "<td>13.00 EUR</td>" in table
    # Time travel to version 2: that point is ringed, the others are not.
    page = text(client.get(audit_url(ada), {"as_of_version": 2}))
    marker = re.search(r'<circle class="chart-marker" id="chart-marker" ([^>]*)>', page)[1]
    dot = re.search(
        r'<circle class="chart-point" (cx="[^"]+" cy="[^"]+") r="3" data-version="2"', page
    )[1]
    assert 'data-version="2"' in marker and dot in marker  # drawn on the point itself
    assert "version 2, 2026-03-02 09:00: 15.00 EUR" in page
    # Travel to the freeze (no movement): the mark sits at its time, at the balance then.
    page = text(client.get(audit_url(ada), {"as_of_version": 5}))
    assert re.search(r'<circle class="chart-marker" id="chart-marker" [^>]*data-version="5"', page)
    assert "the state shown above: version 5, 2026-03-13 21:00: 10.00 EUR" in page


def test_a_long_account_is_thinned_to_at_most_500_points_keeping_its_extremes(
    client, django_assert_max_num_queries
):
    account = Account.open(uuid.uuid4(), holder_name="Long History", currency="EUR")
    for n in range(1_999):
        account.deposit(100 if n != 1_234 else 10**8, "d")  # one spike at version 1236
        if n == 1_234:
            account.withdraw(10**8, "back")  # and straight back down
    now = timezone.now()
    events = account.collect_events()
    es.append(
        account.id,
        [
            es.NewEvent(
                event_type=e.event_type, data=e.to_data(), occurred_at=now + timedelta(seconds=i)
            )
            for i, e in enumerate(events)
        ],
        stream_type=STREAM_TYPE,
        expected_version=0,
    )
    runner.catch_up()
    series = balance_series(account.id, version=len(events))
    assert series.movements == 2_000 and series.downsampled and len(series.points) <= 500
    staff(client, "aud", "auditors")
    with django_assert_max_num_queries(30):
        page = text(client.get(audit_url(account.id)))
    versions = [int(v) for v in points_of(page)]
    assert len(versions) == len(series.points) <= 500
    assert versions[0] == 2 and versions[-1] == 2_001  # the first change and the last
    assert 1_236 in versions  # the spike survives the thinning
    assert "Thinned: " in page and f"points for {2_000} balance changes" in page


def test_the_chart_says_when_the_transaction_history_lags(client, pair):
    ada, _, _ = pair
    svc.deposit(account_id=ada, amount_cents=1, actor=SYSTEM)  # not projected yet
    staff(client, "aud", "auditors")
    page = text(client.get(audit_url(ada)))
    assert 'id="chart-lagging"' in page and len(points_of(page)) == 4


# --- 3. two versions -------------------------------------------------------------------------


def compare(client, account_id, a, b):
    return text(client.get(f"{BASE}/{account_id}/audit/compare/", {"a": a, "b": b}))


def cells(page, field):
    row = re.search(rf'<tr class="(\w+)" id="compare-{field}">(.*?)</tr>', page, re.S)
    values = re.findall(r"<td[^>]*>(.*?)</td>", row[2], re.S)
    return row[1], [html.unescape(v) for v in values]


def test_two_versions_side_by_side_with_what_changed_and_the_events_between(
    client, pair, django_assert_max_num_queries
):
    ada, _, _ = pair
    svc.freeze(account_id=ada, reason="check", actor=SYSTEM, clock=at(300))
    staff(client, "aud", "auditors")
    assert f'action="{BASE}/{ada}/audit/compare/"' in text(client.get(audit_url(ada)))
    # 13 on SQLite, where each load's two statements are counted.
    with django_assert_max_num_queries(13):
        page = compare(client, ada, 2, 5)
    assert cells(page, "balance") == ("changed", ["15.00 EUR", "10.00 EUR", "changed: -5.00 EUR"])
    assert cells(page, "status") == ("changed", ["active", "frozen", "changed"])
    assert cells(page, "holder") == ("unchanged", ["Ada Lovelace", "Ada Lovelace", "unchanged"])
    assert cells(page, "version") == ("changed", ["2", "5", "changed: 3 events"])
    assert "Events after version 2 up to and including version 5 (3)" in page
    listed = re.findall(
        r'data-version="(\d+)">.*?class="money balance-after">([^<]*)<', page, re.S
    )
    assert listed == [("3", "13.00"), ("4", "10.00"), ("5", "10.00")]
    same = compare(client, ada, 3, 3)
    assert "A and B are the same version" in same and "compare-lines" not in same


def test_versions_out_of_range_or_reversed_are_form_errors(client, pair):
    ada, _, _ = pair
    staff(client, "aud", "auditors")
    page = compare(client, ada, 1, 9)
    assert 'id="errors-b"' in page and 'id="comparison"' not in page
    assert html.escape(VERSION_OUT_OF_RANGE.format(version=9, last=4)) in page
    page = compare(client, ada, 0, 2)
    assert 'id="errors-a"' in page and "greater than or equal to 1" in page
    page = compare(client, ada, 3, 1)
    assert html.escape(VERSIONS_REVERSED.format(a=1, b=3)) in page
    page = compare(client, ada, "x", 2)
    assert 'id="errors-a"' in page and "Enter a whole number" in page
    assert client.get(f"{BASE}/{uuid.uuid4()}/audit/compare/", {"a": 1, "b": 1}).status_code == 404


# --- 4. statements ---------------------------------------------------------------------------


def statement_url(account_id, suffix="/"):
    return f"{BASE}/{account_id}/audit/statement{suffix}"


def test_a_statement_has_the_opening_balance_every_movement_and_the_closing_balance(
    client, pair, django_assert_max_num_queries
):
    ada, _, _ = pair
    staff(client, "aud", "auditors")
    days = {"from": "2026-03-02", "to": "2026-03-05"}
    with django_assert_max_num_queries(14):
        page = text(client.get(statement_url(ada), days))
    assert 'id="statement-opening">10.00 EUR<' in page
    assert "version 1" in re.search(r'id="statement-opening-note">(.*?)<', page)[1]
    assert 'id="statement-closing">13.00 EUR<' in page
    assert 'id="statement-in">5.00 EUR<' in page and 'id="statement-out">-2.00 EUR<' in page
    movements = re.findall(
        r'data-version="(\d+)">.*?class="money amount[^"]*">([^<]*)<.*?balance-after">([^<]*)<',
        page,
        re.S,
    )
    assert movements == [("2", "5.00", "15.00"), ("3", "-2.00", "13.00")]
    assert 'href="/static/bank/print.css" media="print"' in page
    assert 'data-print id="statement-print"' in page
    # The whole history: opened inside the range, so the opening balance is zero.
    page = text(client.get(statement_url(ada), {"from": "2026-02-01", "to": "2026-03-31"}))
    assert 'id="statement-opening">0.00 EUR<' in page and "not open yet" in page
    assert 'id="statement-closing">10.00 EUR<' in page
    assert len(re.findall(r'<tr class="row[12]" data-position', page)) == 4


def test_the_statement_csv_has_numbers_as_numbers(client, pair, django_assert_max_num_queries):
    ada, _, _ = pair
    svc.deposit(
        account_id=ada, amount_cents=1752, description="=SUM(A1)", actor=SYSTEM, clock=at(230)
    )
    staff(client, "aud", "auditors")
    with django_assert_max_num_queries(14):
        response = client.get(
            statement_url(ada, ".csv"), {"from": "2026-03-02", "to": "2026-03-31"}
        )
        body = b"".join(response.streaming_content).decode()
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["entry"] for r in rows] == [
        "opening balance",
        "MoneyDeposited",
        "MoneyWithdrawn",
        "TransferSent",
        "MoneyDeposited",
        "closing balance",
    ]
    assert [r["amount"] for r in rows] == ["", "5.00", "-2.00", "-3.00", "17.52", ""]
    assert [r["balance"] for r in rows] == ["10.00", "15.00", "13.00", "10.00", "27.52", "27.52"]
    opening, closing = Decimal(rows[0]["balance"]), Decimal(rows[-1]["balance"])
    assert opening + sum(Decimal(r["amount"]) for r in rows[1:-1]) == closing
    assert ",-2.00," in body and "'-2.00" not in body  # numbers unquoted, even negative ones
    assert rows[4]["description_or_reason"] == "'=SUM(A1)"  # text: the formula guard
    assert rows[3]["counterparty"] == str(pair[1])
    assert rows[0]["occurred_at"] == "2026-03-02T00:00:00+00:00"
    bad = client.get(statement_url(ada, ".csv"), {"from": "2026-03-05", "to": "2026-03-01"})
    assert bad.status_code == 400


def test_statement_days_are_the_admin_time_zones(client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    late = svc.open_account(
        holder_name="Night Owl",
        initial_balance_cents=100,
        actor=SYSTEM,
        clock=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    ).id
    # 23:30 UTC on 1 March is 00:30 on 2 March in Berlin.
    svc.deposit(
        account_id=late,
        amount_cents=50,
        actor=SYSTEM,
        clock=lambda: datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
    )
    staff(client, "aud", "auditors")
    page = text(client.get(statement_url(late), {"from": "2026-03-02", "to": "2026-03-02"}))
    assert 'id="statement-opening">1.00 EUR<' in page
    assert 'id="statement-closing">1.50 EUR<' in page and "Europe/Berlin" in page
    page = text(client.get(statement_url(late), {"from": "2026-03-01", "to": "2026-03-01"}))
    assert 'id="statement-closing">1.00 EUR<' in page


def test_statement_dates_are_checked(client, pair):
    ada, _, _ = pair
    staff(client, "aud", "auditors")
    page = text(client.get(statement_url(ada), {"from": "2026-03-05", "to": "2026-03-01"}))
    assert html.escape(DAYS_REVERSED.format(first="2026-03-05", last="2026-03-01")) in page
    assert 'id="statement"' not in page
    page = text(client.get(statement_url(ada), {"from": "9999-12-31", "to": "9999-12-31"}))
    assert "Pick a day from" in page
    page = text(client.get(statement_url(ada), {"from": "nonsense", "to": "2026-03-01"}))
    assert "Enter a valid date" in page
    # No dates: this month so far.
    page = text(client.get(statement_url(ada)))
    today = timezone.localdate()
    assert f'value="{today.replace(day=1).isoformat()}"' in page and 'id="statement"' in page


def test_a_statement_cut_at_its_row_limit_still_closes_on_the_right_balance(pair):
    ada, _, _ = pair
    statement = account_statement(
        ada, first_day=date(2026, 3, 1), last_day=date(2026, 3, 31), limit=2
    )
    assert statement.truncated and len(statement.movements) == 2
    assert statement.closing_balance_cents == 1000  # the state at the end, not the sum listed


# --- the pages hold a strict Content-Security-Policy: no inline style or script ---------------


def test_the_new_pages_have_no_inline_style_or_script(client, pair):
    ada, _, transfer_id = pair
    staff(client, "aud", "auditors")
    for url, params in (
        (audit_url(ada), {"as_of_version": 2}),
        (f"{BASE}/{ada}/audit/compare/", {"a": 1, "b": 4}),
        (statement_url(ada), {"from": "2026-03-01", "to": "2026-03-31"}),
        (f"{BASE}/correlation/{transfer_id}/", {}),
        (f"{BASE}/actions/", {"actor": "tina"}),
        ("/admin/", {}),
    ):
        page = text(client.get(url, params))
        assert "<style" not in page, url
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), url
        assert not re.search(r"\sstyle=", page), url
        assert not re.search(r"\son[a-z]+=", page), url  # no inline event handlers either
