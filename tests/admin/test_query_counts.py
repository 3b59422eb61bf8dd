"""Every admin page an auditor uses costs a bounded number of queries (issue 17).

Each page is measured twice: with 3 accounts of 3 movements each, then with 30 accounts of
30 movements each (transfers between them, so counterparties are named). The second count
must not exceed the first: a count that grows with the data is an N+1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

import eventstore as es
from bank.domain import Account
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SMALL, LARGE = 3, 30


class Books:
    """Accounts that grow from SMALL to LARGE accounts of as many movements each."""

    def __init__(self) -> None:
        self.ids: list = []
        self.moves = 0
        self.tick = 0

    def clock(self):
        self.tick += 1
        return START + timedelta(minutes=self.tick)

    def grow(self, size: int) -> None:
        while len(self.ids) < size:
            self.ids.append(
                svc.open_account(
                    holder_name=f"Holder {len(self.ids):02d}",
                    initial_balance_cents=1_000_000,
                    actor=SYSTEM,
                    clock=self.clock,
                ).id
            )
        for account in self.ids:
            while svc.get_account(account).version < size:
                other = self.ids[(self.ids.index(account) + 1) % len(self.ids)]
                self.moves += 1
                if self.moves % 3 == 1:
                    svc.transfer(
                        from_account=account,
                        to_account=other,
                        amount_cents=125,
                        description=f"transfer {self.moves}",
                        actor=Actor("tom", None, "admin"),
                        clock=self.clock,
                    )
                else:
                    svc.deposit(
                        account_id=account,
                        amount_cents=1_250,
                        description=f"deposit {self.moves}",
                        actor=SYSTEM,
                        clock=self.clock,
                    )
        runner.catch_up()
        call_command("verify_events", "--full", verbosity=0)


def pages(account, event_position, correlation):
    audit = f"/admin/projections/accountbalance/{account}/audit/"
    return {
        "index": ("/admin/", {}),
        "account list": ("/admin/projections/accountbalance/", {}),
        "account search": ("/admin/projections/accountbalance/", {"q": "holder"}),
        "audit page": (audit, {}),
        "audit page, time travel to a version": (audit, {"as_of_version": "2"}),
        "audit page, time travel to a moment": (audit, {"as_of": "2026-03-01T09:05"}),
        "comparison": (f"{audit}compare/", {"a": "1", "b": "3"}),
        "statement": (
            f"{audit}statement/",
            {"from": "2026-03-01", "to": "2026-03-31"},
        ),
        "statement CSV": (
            f"/admin/projections/accountbalance/{account}/audit/statement.csv",
            {"from": "2026-03-01", "to": "2026-03-31"},
        ),
        "CSV export": (f"{audit}export.csv", {}),
        "correlation": (f"/admin/projections/accountbalance/correlation/{correlation}/", {}),
        "actions of a user": ("/admin/projections/accountbalance/actions/", {"actor": "tom"}),
        "events list": ("/admin/eventstore/event/", {}),
        "events search by holder": ("/admin/eventstore/event/", {"q": "holder 01"}),
        "events search by amount": ("/admin/eventstore/event/", {"q": "12.50"}),
        "events in a date range": (
            "/admin/eventstore/event/",
            {"occurred_from": "2026-03-01", "occurred_to": "2026-03-02"},
        ),
        "event page": (f"/admin/eventstore/event/{event_position}/change/", {}),
        "snapshots list": ("/admin/eventstore/snapshot/", {}),
        "access log": ("/admin/bank/accesslogentry/", {}),
        "access log CSV": ("/admin/bank/accesslogentry/export.csv", {}),
    }


def measure(client, url, params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
        assert response.status_code == 200, (url, response.status_code)
        if response.streaming:
            b"".join(response.streaming_content)  # the rows are read while streaming
        else:
            assert len(response.content) > 0
    return len(queries)


def counts_at(client, books, size):
    books.grow(size)
    account = books.ids[0]
    event = es.read_stream(account)[1]
    transfer = next(e for e in es.read_stream(account) if e.event_type == "TransferSent")
    urls = pages(account, event.position, transfer.metadata["correlation_id"])
    return {name: measure(client, url, params) for name, (url, params) in urls.items()}


@pytest.mark.parametrize("role", ["auditors", "tellers"])
def test_every_admin_page_costs_the_same_queries_with_ten_times_the_data(
    client, role, django_assert_max_num_queries, settings
):
    settings.SNAPSHOT_INTERVAL = 10  # the large accounts have snapshots, the small none
    ensure_roles()
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    if role == "tellers":  # the access log is the auditors' (tellers see everything else)
        user.groups.add(Group.objects.get(name="auditors"))
    client.force_login(user)
    books = Books()
    small = counts_at(client, books, SMALL)
    large = counts_at(client, books, LARGE)
    assert es.load_snapshot(books.ids[0], schema_version=Account.SNAPSHOT_SCHEMA_VERSION)
    grown = {name: (small[name], large[name]) for name in small if large[name] > small[name]}
    assert grown == {}, f"pages whose query count grew with the data (3 → 30): {grown}"
    # And each stays within what was measured at the small size, with the data ten times
    # larger (pytest-django's own guard, for the record of every page's budget).
    account = books.ids[0]
    event = es.read_stream(account)[1]
    transfer = next(e for e in es.read_stream(account) if e.event_type == "TransferSent")
    for name, (url, params) in pages(
        account, event.position, transfer.metadata["correlation_id"]
    ).items():
        with django_assert_max_num_queries(small[name], info=name):
            measure(client, url, params)
