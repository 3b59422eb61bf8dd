"""The admin through Django's test client: pages, roles, read-only store, commands, CSV,
integrity (the audit page's section and banner, the index panel)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import eventstore as es
from bank.admin import (
    COMMAND_NOT_OFFERED,
    COMMAND_STALE,
    COMMAND_WITHHELD,
    COMMANDS,
    WHY_NOT_ZERO,
    AccountAdmin,
)
from bank.domain import Account
from bank.selectors import account_integrity
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.accounts import STREAM_TYPE
from eventstore.hashing import canonical_json
from eventstore.models import Event
from projections import runner
from tests.support import ensure_roles, triggers_disabled

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


def staff(client, name, group=None, superuser=False):
    ensure_roles()
    user = User.objects.create_user(name, password="pw", is_staff=True, is_superuser=superuser)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return user


START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(hours):
    return lambda: START + timedelta(hours=hours)


@pytest.fixture
def account():
    state = svc.open_account(
        holder_name="Ada Lovelace", initial_balance_cents=1000, actor=SYSTEM, clock=at(0)
    )
    svc.deposit(
        account_id=state.id, amount_cents=500, description="salary", actor=SYSTEM, clock=at(1)
    )
    svc.withdraw(
        account_id=state.id,
        amount_cents=200,
        description='=HYPERLINK("x")',
        actor=SYSTEM,
        clock=at(2),
    )
    runner.catch_up()
    return state.id


def audit_url(account_id):
    return f"/admin/projections/accountbalance/{account_id}/audit/"


@pytest.mark.parametrize("role", ["auditors", "tellers", "superuser"])
def test_staff_roles_see_the_lists_and_the_audit_view(client, account, role):
    staff(client, role, None if role == "superuser" else role, superuser=role == "superuser")
    for url in (
        "/admin/",
        "/admin/projections/accountbalance/",
        "/admin/eventstore/event/",
        "/admin/eventstore/snapshot/",
        audit_url(account),
    ):
        assert client.get(url).status_code == 200, url
    page = client.get(audit_url(account)).content.decode()
    assert "Ada Lovelace" in page and 'id="state-balance" class="money">13.00 EUR<' in page
    assert ("command-deposit" in page) == (role != "auditors")


def test_anonymous_and_non_staff_are_sent_to_the_login(client, account):
    assert client.get(audit_url(account))["Location"].startswith("/admin/login/")
    user = User.objects.create_user("plain", password="pw")
    client.force_login(user)
    assert client.get(audit_url(account))["Location"].startswith("/admin/login/")


def test_staff_without_a_role_are_refused(client, account):
    staff(client, "norole")
    assert client.get(audit_url(account)).status_code == 403
    assert client.get("/admin/eventstore/event/").status_code == 403


def test_the_account_list_searches_filters_and_sorts(client, account):
    svc.open_account(holder_name="Zoë Ångström", currency="USD", actor=SYSTEM)
    runner.catch_up()
    staff(client, "aud", "auditors")
    assert (
        "Zoë"
        in client.get("/admin/projections/accountbalance/", {"q": "ångström"}).content.decode()
    )
    found = client.get("/admin/projections/accountbalance/", {"q": str(account)}).content.decode()
    assert "Ada Lovelace" in found and "Zoë" not in found
    usd = client.get(
        "/admin/projections/accountbalance/", {"currency__exact": "USD"}
    ).content.decode()
    assert "Zoë" in usd and "Ada Lovelace" not in usd
    assert client.get("/admin/projections/accountbalance/", {"o": "-4"}).status_code == 200


def test_the_timeline_shows_balances_actors_and_links_newest_first(client, account):
    staff(client, "aud", "auditors")
    page = client.get(audit_url(account)).content.decode()
    assert (
        page.index("MoneyWithdrawn") < page.index("MoneyDeposited") < page.index("AccountOpened")
    )
    assert page.count('class="chain chain-intact"') == 3
    assert "intact: every event" in page
    first = es.read_stream(account)[0]
    assert f"/admin/eventstore/event/{first.position}/change/" in page
    assert "tests" in page  # the actor


def test_time_travel_shows_the_state_then(client, account):
    staff(client, "aud", "auditors")
    page = client.get(audit_url(account), {"as_of_version": 2}).content.decode()
    assert 'id="past-balance" class="money">15.00 EUR<' in page
    page = client.get(audit_url(account), {"as_of": "2026-03-01T10:30"}).content.decode()
    assert 'id="past-version">2<' in page and 'id="past-balance" class="money">15.00 EUR<' in page
    page = client.get(audit_url(account), {"as_of_version": 99}, follow=True).content.decode()
    assert "version 99 does not exist" in page
    page = client.get(audit_url(account), {"as_of": "2001-01-01T00:00"}).content.decode()
    assert "did not exist yet" in page


def change_the_deposit(account_id):
    """Rewrite the account's version 2 below the application, as a database writer could."""
    victim = es.read_stream(account_id)[1]
    cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE events SET data = {cast} WHERE position = %s",
            ['{"amount_cents": 5000, "description": "salary"}', victim.position],
        )


def forge_snapshot(account_id, version):
    """INSERT a snapshot with a bogus signature, as anyone allowed to INSERT could."""
    stream = account_id if connection.vendor == "postgresql" else account_id.hex
    cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hash FROM events WHERE stream_id = %s AND version = %s", [stream, version]
        )
        (anchor,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO snapshots (stream_id, stream_type, version, schema_version, state, "
            f"created_at, anchor_hash, signature, key_id) VALUES (%s, %s, %s, 1, {cast}, "
            "%s, %s, %s, %s)",
            [
                stream,
                STREAM_TYPE,
                version,
                canonical_json({"balance_cents": 10**9}),
                connection.ops.adapt_datetimefield_value(timezone.now()),
                anchor,
                "bm90IGEgc2lnbmF0dXJl",
                "dev",
            ],
        )


def command_inputs(page):
    """Every input of the command forms (the CSRF token aside), as raw tags."""
    names = "|".join(COMMANDS)
    return [
        tag
        for tag in re.findall(r"<input[^>]*>", page)
        if re.search(rf'(name="({names})-|id="submit-)', tag)
    ]


def test_a_broken_chain_is_shown_on_the_audit_view(client, account):
    staff(client, "aud", "auditors")
    change_the_deposit(account)
    page = client.get(audit_url(account)).content.decode()
    assert "BROKEN" in page and "version 2" in page
    assert 'class="chain chain-broken"' in page and 'class="chain chain-unverified"' in page


def test_tellers_issue_commands_recorded_with_them_as_actor(client, account):
    teller = staff(client, "tina", "tellers")
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/freeze/",
        {"freeze-reason": "suspicious", "confirm": "yes", "expected_version": "3"},
        follow=True,
    )
    assert "Freeze done" in response.content.decode()
    event = es.read_stream(account)[-1]
    assert event.event_type == "AccountFrozen" and event.data["reason"] == "suspicious"
    assert event.metadata["actor"] == {"id": teller.pk, "username": "tina", "auth": "admin"}
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/deposit/",
        {"deposit-amount": "5", "deposit-description": ""},
        follow=True,
    )
    assert "Deposit refused" in response.content.decode() and "frozen" in response.content.decode()
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/close/",
        {"close-reason": ""},
        follow=True,
    )
    assert "Close was not done" in response.content.decode()
    client.post(
        f"/admin/projections/accountbalance/{account}/command/unfreeze/", {"unfreeze-reason": "ok"}
    )
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/withdraw/",
        {"withdraw-amount": "999999", "withdraw-description": "x"},
        follow=True,
    )
    assert "exceeds the balance" in response.content.decode()
    assert [e.event_type for e in es.read_stream(account)][-2:] == [
        "AccountFrozen",
        "AccountUnfrozen",
    ]


def test_auditors_cannot_issue_commands(client, account):
    staff(client, "aud", "auditors")
    before = Event.objects.count()
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/deposit/",
        {"deposit-amount": "5"},
    )
    assert response.status_code == 403
    assert Event.objects.count() == before


def test_commands_need_csrf(account):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    staff(client, "tina", "tellers")
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/freeze/", {"freeze-reason": "x"}
    )
    assert response.status_code == 403
    assert svc.get_account(account).status == "active"


def test_events_and_snapshots_are_read_only_even_for_superusers(client, account):
    staff(client, "root", superuser=True)
    event = Event.objects.filter(stream_id=account).first()
    change_url = f"/admin/eventstore/event/{event.pk}/change/"
    page = client.get(change_url).content.decode()
    assert "&quot;amount_cents&quot;" in page or "initial_balance_cents" in page
    assert "Save" not in page and 'name="_save"' not in page
    response = client.post(change_url, {"event_type": "Hacked", "version": 99})
    assert response.status_code == 403
    assert client.get("/admin/eventstore/event/add/").status_code == 403
    assert client.get(f"/admin/eventstore/event/{event.pk}/delete/").status_code == 403
    response = client.post(
        "/admin/eventstore/event/", {"action": "delete_selected", "_selected_action": [event.pk]}
    )
    assert Event.objects.filter(pk=event.pk).exists()
    assert "delete_selected" not in client.get("/admin/eventstore/event/").content.decode()
    refreshed = Event.objects.get(pk=event.pk)
    assert (refreshed.event_type, refreshed.version) == (event.event_type, event.version)


def test_event_search_by_stream_event_actor_and_correlation(client, account):
    staff(client, "aud", "auditors")
    event = es.read_stream(account)[1]
    for term in (str(account), str(event.event_id), "tests", event.metadata["correlation_id"]):
        page = client.get("/admin/eventstore/event/", {"q": term}).content.decode()
        assert f"/admin/eventstore/event/{event.position}/change/" in page, term
    page = client.get("/admin/eventstore/event/", {"q": "nobody-like-this"}).content.decode()
    assert f"/admin/eventstore/event/{event.position}/change/" not in page


def test_the_csv_export_has_every_event_and_neutralises_formulas(client, account):
    staff(client, "aud", "auditors")
    response = client.get(f"/admin/projections/accountbalance/{account}/audit/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(AccountAdmin.EXPORT_HEADER)
    assert [r[1] for r in rows[1:]] == ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]
    assert [r[4] for r in rows[1:]] == ["10.00", "15.00", "13.00"]
    assert rows[3][5] == '\'=HYPERLINK("x")'  # text: the formula guard
    assert rows[3][2] == "-2.00"  # a number: no guard


def test_a_ten_thousand_event_account_renders_with_a_bounded_number_of_queries(client):
    account = Account.open(uuid.uuid4(), holder_name="Long History", currency="EUR")
    for _ in range(9_999):
        account.deposit(1, "d")
    now = datetime.now(UTC)
    es.append(
        account.id,
        [
            es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=now)
            for e in account.collect_events()
        ],
        stream_type=STREAM_TYPE,
        expected_version=0,
    )
    runner.catch_up()
    staff(client, "aud", "auditors")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(audit_url(account.id), {"page": 3})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-version="9900"' in page and 'data-version="9851"' in page
    assert "page 3 of 200" in page
    assert len(queries.captured_queries) <= 25, len(queries.captured_queries)


def test_unknown_accounts_in_the_admin_are_reported_not_crashed(client):
    staff(client, "aud", "auditors")
    missing = uuid.uuid4()
    response = client.get(audit_url(missing), follow=True)
    assert "does not exist" in response.content.decode()
    assert (
        client.get(f"/admin/projections/accountbalance/{missing}/audit/export.csv").status_code
        == 404
    )


def test_a_broken_account_shows_the_banner_and_disables_every_command(client, account):
    staff(client, "tina", "tellers")
    change_the_deposit(account)
    page = client.get(audit_url(account)).content.decode()
    banner = re.search(r'<div[^>]*id="integrity-banner"[^>]*>(.*?)</div>', page, re.S)
    assert banner and 'role="alert"' in banner.group(0)
    assert "version 2" in banner.group(1) and "verify_events --full" in banner.group(1)
    assert "backup" in banner.group(1) and "write access" in banner.group(1)
    inputs = command_inputs(page)
    # An active account with money: deposit and withdraw (2 fields + submit), freeze (1 + 1);
    # unfreeze and close are not offered.
    assert len(inputs) == 2 * 3 + 1 * 2
    assert all(re.search(r"\sdisabled[\s>]", tag) for tag in inputs), inputs
    assert 'id="commands-withheld"' in page and "the account&#x27;s record is broken" in page


def test_a_command_posted_for_a_broken_account_is_refused_and_changes_nothing(client, account):
    staff(client, "tina", "tellers")
    change_the_deposit(account)
    before, events = svc.get_account(account), Event.objects.count()
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/deposit/",
        {"deposit-amount": "5", "deposit-description": "sneaky"},
    )
    assert response.status_code == 302 and response["Location"] == audit_url(account)
    reason = account_integrity(account).reason
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        COMMAND_WITHHELD.format(label="Deposit", reason=reason)
    ]
    after = svc.get_account(account)
    assert (after.balance_cents, after.version) == (before.balance_cents, before.version)
    assert Event.objects.count() == events


def test_a_rejected_snapshot_withholds_commands_too(client, account):
    staff(client, "tina", "tellers")
    forge_snapshot(account, 2)
    with pytest.raises(CommandError):
        call_command("verify_events", "--full", verbosity=0)
    page = client.get(audit_url(account)).content.decode()
    assert 'id="integrity-banner"' in page and "A snapshot of the account was rejected" in page
    assert "REJECTED: snapshot at version 2" in page
    assert all(" disabled" in tag for tag in command_inputs(page))
    events = Event.objects.count()
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/freeze/", {"freeze-reason": "x"}
    )
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        COMMAND_WITHHELD.format(label="Freeze", reason=account_integrity(account).reason)
    ]
    assert svc.get_account(account).status == "active" and Event.objects.count() == events


def test_an_intact_account_shows_its_recorded_verification_and_what_was_checked_since(
    client, account
):
    staff(client, "tina", "tellers")
    page = client.get(audit_url(account)).content.decode()
    assert "never verified by verify_events" in page
    call_command("verify_events", "--full", verbosity=0)
    svc.deposit(account_id=account, amount_cents=1, description="later", actor=SYSTEM)
    page = client.get(audit_url(account)).content.decode()
    recorded = re.search(r'id="integrity-recorded">(.*?)</td>', page, re.S).group(1)
    assert "through version 3" in recorded and "never" not in recorded
    checked = re.search(r'id="integrity-checked">(.*?)</td>', page, re.S).group(1)
    assert "through version 4" in checked and "versions 4 to 4 verified for this page" in checked
    assert "intact: every event" in page
    assert 'id="integrity-banner"' not in page and 'id="commands-withheld"' not in page
    assert not any(" disabled" in tag for tag in command_inputs(page))


def index_panel(client):
    page = client.get("/admin/").content.decode()
    found = re.search(r'<div class="module[^"]*" id="integrity-panel">.*?</table>', page, re.S)
    return page, found.group(0) if found else ""


def test_the_index_says_when_the_store_was_never_verified_and_keeps_the_app_list(client, account):
    staff(client, "aud", "auditors")
    page, panel = index_panel(client)
    assert 'id="integrity-never"' in panel and "python manage.py verify_events --full" in panel
    assert 'role="alert"' not in panel and "all in place" in panel
    assert "/admin/projections/accountbalance/" in page  # Django's app list is still there


def test_the_index_shows_an_ok_run_with_its_root_without_verifying_anything(client, account):
    call_command("verify_events", "--full", verbosity=0)
    run = es.last_run()
    staff(client, "aud", "auditors")
    with CaptureQueriesContext(connection) as queries:
        page, panel = index_panel(client)
    assert 'id="integrity-result">OK<' in panel and "full:" in panel
    assert f'id="integrity-root">{run.root}<' in panel and len(run.root) == 64
    assert f"position reached: {run.head_position}" in panel
    assert "3 events of 1 stream" in panel
    assert 'role="alert"' not in panel and 'id="integrity-stale"' not in panel
    sql = [query["sql"] for query in queries.captured_queries]
    assert sum("verification_runs" in text for text in sql) == 1  # the newest is the full one
    assert not any(
        re.search(r'FROM "?(events|snapshots|stream_verifications)"?\s', text) for text in sql
    ), sql


def test_the_index_shows_an_incremental_run_beside_the_last_full_one(client, account):
    call_command("verify_events", "--full", verbosity=0)
    svc.deposit(account_id=account, amount_cents=1, description="later", actor=SYSTEM)
    call_command("verify_events", verbosity=0)
    staff(client, "aud", "auditors")
    _, panel = index_panel(client)
    assert "incremental:" in panel and 'id="integrity-result">OK<' in panel
    assert "(3 verified by earlier runs, not re-checked)" in panel
    full = re.search(r'id="integrity-last-full">(.*?)</td>', panel, re.S).group(1)
    assert "OK" in full and "none yet" not in full


def test_the_index_shows_a_failed_run_in_the_error_colour_with_its_first_problems(client, account):
    change_the_deposit(account)
    with pytest.raises(CommandError):
        call_command("verify_events", "--full", verbosity=0)
    staff(client, "aud", "auditors")
    _, panel = index_panel(client)
    assert "integrity-failing" in panel and 'role="alert"' in panel
    assert 'id="integrity-result">FAILED<' in panel and "1 problem" in panel
    problems = re.search(r'<ul id="integrity-problems">(.*?)</ul>', panel, re.S).group(1)
    assert str(account) in problems and "version 2" in problems
    assert f'id="integrity-root">{es.last_run().root}<' in panel


def test_the_index_raises_the_alert_when_immutability_triggers_are_missing(client, account):
    call_command("verify_events", "--full", verbosity=0)
    staff(client, "aud", "auditors")
    with triggers_disabled():
        _, panel = index_panel(client)
    assert 'role="alert"' in panel and "immutability trigger" in panel
    # triggers_disabled() disables them on PostgreSQL and drops them on SQLite.
    expected = (
        "trigger events_refuse_update_delete on events is disabled"
        if connection.vendor == "postgresql"
        else "trigger events_refuse_update on events is missing"
    )
    assert expected in panel
    _, panel = index_panel(client)
    assert 'role="alert"' not in panel and "all in place" in panel


def test_the_index_has_no_integrity_panel_for_staff_who_may_not_view_accounts(client, account):
    staff(client, "norole")
    page = client.get("/admin/").content.decode()
    assert client.get("/admin/").status_code == 200 and 'id="integrity-panel"' not in page


def test_a_long_history_links_the_pages_near_this_one_not_every_page(client):
    staff(client, "aud", "auditors")
    opened = svc.open_account(holder_name="Long", actor=Actor.system("t"))
    es.append(
        opened.id,
        [
            es.NewEvent(
                event_type="MoneyDeposited",
                data={"amount_cents": 1, "description": ""},
                occurred_at=timezone.now(),
            )
            for _ in range(2_000)
        ],
        stream_type="bank.account",
        expected_version=1,
    )
    page = client.get(audit_url(opened.id) + "?page=20").content.decode()
    links = re.findall(rf'href="{audit_url(opened.id)}\?page=(\d+)"', page)
    assert {"1", "2", "17", "23", "40", "41"} <= set(links) and len(links) < 15
    assert '<span class="this-page">20</span>' in page and "…" in page


# --- issue 17: money in currency units, safe commands, the back-office look --------------

LIST_URL = "/admin/projections/accountbalance/"


def command_url(account_id, name):
    return f"/admin/projections/accountbalance/{account_id}/command/{name}/"


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def currencies():
    """EUR, JPY and KWD accounts, each holding 1,234,567 minor units."""
    ids = {}
    for holder, currency in (
        ("Euro Holder", "EUR"),
        ("Yen Holder", "JPY"),
        ("Dinar Holder", "KWD"),
    ):
        ids[currency] = svc.open_account(
            holder_name=holder, currency=currency, initial_balance_cents=1234567, actor=SYSTEM
        ).id
    runner.catch_up()
    return ids


SHOWN = {"EUR": "12,345.67 EUR", "JPY": "1,234,567 JPY", "KWD": "1,234.567 KWD"}


def test_money_shows_in_each_currencys_units_on_the_list_and_the_audit_page(client, currencies):
    staff(client, "aud", "auditors")
    listing = client.get(LIST_URL).content.decode()
    for currency, shown in SHOWN.items():
        assert f'<td class="field-balance">{shown}</td>' in listing, currency
        page = client.get(audit_url(currencies[currency])).content.decode()
        assert f'id="state-balance" class="money">{shown}<' in page, currency
        assert f"Amount ({currency})" in page and f"Balance after ({currency})" in page
        assert "cents" not in page
    jpy = client.get(audit_url(currencies["JPY"])).content.decode()
    assert re.search(r'class="money balance-after">1,234,567</td>', jpy)


def test_debits_carry_a_minus_sign_not_only_a_colour(client, account):
    staff(client, "aud", "auditors")
    page = client.get(audit_url(account)).content.decode()
    withdrawn = re.search(r'<tr[^>]*data-version="3">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'<td class="money amount amount-out">-2\.00</td>', withdrawn)
    assert re.search(r'<td class="money balance-after">13\.00</td>', withdrawn)
    deposited = re.search(r'<tr[^>]*data-version="2">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'<td class="money amount amount-in">5\.00</td>', deposited)


def test_time_travel_shows_the_past_balance_in_currency_units(client, currencies):
    staff(client, "aud", "auditors")
    page = client.get(audit_url(currencies["KWD"]), {"as_of_version": 1}).content.decode()
    assert 'id="past-balance" class="money">1,234.567 KWD<' in page


def test_a_teller_deposit_typed_in_units_is_stored_in_minor_units(client, account):
    teller = staff(client, "tina", "tellers")
    response = client.post(
        command_url(account, "deposit"),
        {"deposit-amount": "12.50", "deposit-description": "cash"},
    )
    assert response.status_code == 302 and response["Location"] == audit_url(account)
    event = es.read_stream(account)[-1]
    assert event.event_type == "MoneyDeposited" and event.data["amount_cents"] == 1250
    assert event.metadata["actor"]["username"] == teller.username
    assert messages_of(response) == [
        "Deposit done: the balance is 25.50 EUR, the status active, version 4."
    ]


def test_a_teller_deposit_in_yen_and_a_withdrawal_in_dinars(client, currencies):
    staff(client, "tina", "tellers")
    client.post(command_url(currencies["JPY"], "deposit"), {"deposit-amount": "1250"})
    assert es.read_stream(currencies["JPY"])[-1].data["amount_cents"] == 1250
    response = client.post(command_url(currencies["KWD"], "withdraw"), {"withdraw-amount": "0.5"})
    assert es.read_stream(currencies["KWD"])[-1].data["amount_cents"] == 500
    assert "the balance is 1,234.067 KWD" in messages_of(response)[-1]


@pytest.mark.parametrize(
    ("currency", "typed", "error"),
    [
        (
            "EUR",
            "1.234",
            "1.234 has too many decimals for EUR: EUR amounts have at most 2 decimals.",
        ),
        ("JPY", "5.5", "5.5 has too many decimals for JPY: JPY amounts have no decimals."),
        ("EUR", "twelve", "“twelve” is not an amount"),
        ("EUR", "0", "The amount must be more than zero; 0 is not."),
        ("EUR", "-3", "The amount must be more than zero; -3 is not."),
        ("EUR", "90071992547409.92", "The amount must be at most 90,071,992,547,409.91 EUR"),
        ("EUR", "", "This field is required."),
    ],
)
def test_an_amount_the_currency_cannot_hold_is_a_form_error_and_nothing_is_written(
    client, currencies, currency, typed, error
):
    staff(client, "tina", "tellers")
    account_id = currencies[currency]
    before = Event.objects.count()
    response = client.post(
        command_url(account_id, "deposit"),
        {"deposit-amount": typed, "deposit-description": "typo"},
    )
    assert response.status_code == 200  # the audit page again, the form with its error
    page = response.content.decode()
    form = re.search(r'<form[^>]*id="command-deposit".*?</form>', page, re.S).group(0)
    errors = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', form, re.S)
    assert errors and error in errors.group(1).replace("&#x27;", "'").replace("&quot;", '"')
    assert f'value="{typed}"' in form or not typed  # what was typed is kept for correcting
    assert f"Deposit was not done: Deposit amount ({currency}): " in page
    # The page is shown at the command's URL: its other forms and links go to the audit page.
    assert f'<form method="get" action="{audit_url(account_id)}"' in page
    assert Event.objects.count() == before


def test_the_command_forms_are_fieldsets_with_legends_and_labels_in_the_currency(
    client, currencies
):
    staff(client, "tina", "tellers")
    page = client.get(audit_url(currencies["JPY"])).content.decode()
    forms = re.findall(r'<form[^>]*class="command-form" id="command-(\w+)".*?</form>', page, re.S)
    assert forms == ["deposit", "withdraw", "freeze"]
    bodies = re.findall(r'<form[^>]*class="command-form" id="command-.*?</form>', page, re.S)
    legends = [re.search(r"<fieldset>\s*<legend>(.*?)</legend>", body).group(1) for body in bodies]
    assert legends == ["Deposit money", "Withdraw money", "Freeze the account"]
    # Every field has a name of its own, not only within its fieldset.
    assert page.count('<label for="id_deposit-amount">Deposit amount (JPY):</label>') == 1
    assert page.count('<label for="id_withdraw-amount">Withdrawal amount (JPY):</label>') == 1
    labels = re.findall(r'<label for="id_[a-z]+-\w+">(.*?)</label>', page)
    assert len(labels) == len(set(labels)) == 5, labels
    assert 'placeholder="1250"' in page and 'inputmode="numeric"' in page


def test_commands_are_offered_by_status_and_balance(client):
    staff(client, "tina", "tellers")
    rich = svc.open_account(holder_name="Rich", initial_balance_cents=1300, actor=SYSTEM).id
    empty = svc.open_account(holder_name="Empty", actor=SYSTEM).id
    frozen = svc.open_account(holder_name="Frozen", actor=SYSTEM).id
    svc.freeze(account_id=frozen, reason="r", actor=SYSTEM)
    frozen_rich = svc.open_account(
        holder_name="Frozen rich", initial_balance_cents=5, actor=SYSTEM
    ).id
    svc.freeze(account_id=frozen_rich, reason="r", actor=SYSTEM)
    closed = svc.open_account(holder_name="Closed", actor=SYSTEM).id
    svc.close(account_id=closed, reason="r", actor=SYSTEM)

    def offered(account_id):
        page = client.get(audit_url(account_id)).content.decode()
        notes = re.search(r'id="commands-not-offered">(.*?)</ul>', page, re.S)
        return re.findall(r'id="command-(\w+)"', page), notes.group(1) if notes else ""

    forms, notes = offered(rich)
    assert forms == ["deposit", "withdraw", "freeze"]
    assert "Closing is not offered" in notes and "13.00 EUR" in notes
    assert offered(empty) == (["deposit", "withdraw", "freeze", "close"], "")
    forms, notes = offered(frozen)
    assert forms == ["unfreeze", "close"] and "Deposits and withdrawals are not offered" in notes
    forms, notes = offered(frozen_rich)
    assert forms == ["unfreeze"] and "0.05 EUR" in notes
    forms, notes = offered(closed)
    assert forms == [] and "This account is closed: no command can change it." in notes


def test_a_command_the_status_does_not_offer_is_refused_when_posted_anyway(client, account):
    staff(client, "tina", "tellers")
    before = Event.objects.count()
    response = client.post(
        command_url(account, "close"),
        {"close-reason": "bye", "confirm": "yes", "expected_version": "3"},
    )
    assert response.status_code == 302
    assert messages_of(response) == [
        COMMAND_NOT_OFFERED.format(label="Close", why=WHY_NOT_ZERO.format(balance="13.00 EUR"))
    ]
    response = client.get(command_url(account, "close"))
    assert response.status_code == 302 and Event.objects.count() == before
    assert (
        client.post(command_url(account, "unfreeze"), {"unfreeze-reason": "x"}).status_code == 302
    )
    assert Event.objects.count() == before and svc.get_account(account).status == "active"


def test_freezing_asks_for_confirmation_and_runs_only_after_confirm(
    client, account, django_assert_max_num_queries
):
    teller = staff(client, "tina", "tellers")
    before = Event.objects.count()
    with django_assert_max_num_queries(15):
        response = client.post(command_url(account, "freeze"), {"freeze-reason": "card stolen"})
    assert response.status_code == 200 and Event.objects.count() == before
    page = response.content.decode()
    assert "You are about to <strong>freeze</strong> the account of" in page
    assert "Ada Lovelace" in page and "Nothing has been changed yet" in page
    assert 'id="confirm-reason">“card stolen”<' in page
    assert 'id="confirm-balance">13.00 EUR<' in page and "no money can move" in page
    assert "AccountFrozen</code> event will be recorded as version 4" in page
    assert f'href="{audit_url(account)}" class="button cancel-link"' in page
    form = re.search(r'<form[^>]*id="confirm-form".*?</form>', page, re.S).group(0)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    del fields["csrfmiddlewaretoken"]
    assert fields == {
        "confirm": "yes",
        "expected_version": "3",
        "freeze-reason": "card stolen",
    }
    assert svc.get_account(account).status == "active"

    response = client.post(command_url(account, "freeze"), fields)
    assert response.status_code == 302 and response["Location"] == audit_url(account)
    assert messages_of(response) == [
        "Freeze done: the balance is 13.00 EUR, the status frozen, version 4."
    ]
    event = es.read_stream(account)[-1]
    assert event.event_type == "AccountFrozen" and event.data["reason"] == "card stolen"
    assert event.metadata["actor"]["username"] == teller.username


def test_closing_from_the_confirmation_page_reached_by_get(client):
    staff(client, "tina", "tellers")
    account_id = svc.open_account(holder_name="Leaving", actor=SYSTEM).id
    response = client.get(command_url(account_id, "close"))
    assert response.status_code == 200 and es.stream_version(account_id) == 1
    page = " ".join(response.content.decode().split())
    assert "Closing is final" in page and 'name="close-reason"' in page
    assert "the reason you give below" in page
    response = client.post(
        command_url(account_id, "close"), {"confirm": "yes", "expected_version": "1"}
    )
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert es.stream_version(account_id) == 1
    response = client.post(
        command_url(account_id, "close"),
        {"confirm": "yes", "expected_version": "1", "close-reason": "moved abroad"},
    )
    assert response.status_code == 302 and svc.get_account(account_id).status == "closed"
    page = client.get(audit_url(account_id)).content.decode()
    assert "This account is closed" in page and 'id="command-' not in page


def test_a_stale_confirmation_is_refused_and_changes_nothing(client, account):
    staff(client, "tina", "tellers")
    svc.deposit(account_id=account, amount_cents=1, actor=SYSTEM)  # after the page was shown
    response = client.post(
        command_url(account, "freeze"),
        {"freeze-reason": "x", "confirm": "yes", "expected_version": "3"},
    )
    assert messages_of(response) == [COMMAND_STALE.format(label="Freeze", actual=4, expected=3)]
    assert svc.get_account(account).status == "active" and es.stream_version(account) == 4


def test_unknown_commands_and_gets_of_direct_commands_are_not_run(client, account):
    staff(client, "tina", "tellers")
    assert client.post(command_url(account, "explode"), {}).status_code == 403
    assert client.get(command_url(account, "deposit")).status_code == 405
    assert es.stream_version(account) == 3


def test_refusals_after_a_command_are_worded_in_currency_units(client, account):
    staff(client, "tina", "tellers")
    response = client.post(command_url(account, "withdraw"), {"withdraw-amount": "20"})
    assert messages_of(response) == [
        "Withdraw refused: 20.00 EUR exceeds the balance of 13.00 EUR. Nothing was changed."
    ]
    assert es.stream_version(account) == 3


def test_the_csv_has_numeric_amounts_in_units_that_sum_to_the_balance(client, account):
    svc.deposit(account_id=account, amount_cents=1752, description="+1 trick", actor=SYSTEM)
    svc.withdraw(account_id=account, amount_cents=1752, description="@cmd", actor=SYSTEM)
    svc.freeze(account_id=account, reason="-minus", actor=SYSTEM)
    staff(client, "aud", "auditors")
    response = client.get(f"/admin/projections/accountbalance/{account}/audit/export.csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "version",
        "event_type",
        "amount",
        "currency",
        "balance_after",
        "description_or_reason",
        "actor",
        "occurred_at",
        "recorded_at",
        "event_id",
        "correlation_id",
        "trace_id",
        "hash",
        "reverses_version",
        "reversed_by_version",
    ]
    amounts = [Decimal(r["amount"]) for r in rows if r["amount"]]
    assert amounts == [
        Decimal("10.00"),
        Decimal("5.00"),
        Decimal("-2.00"),
        Decimal("17.52"),
        Decimal("-17.52"),
    ]
    assert sum(amounts) == Decimal(rows[-1]["balance_after"]) == Decimal("13.00")
    assert float(rows[-1]["balance_after"]) == 13.0  # what a spreadsheet reads
    assert ",-17.52," in text and "'-17.52" not in text  # negative numbers are not quoted
    assert [r["description_or_reason"] for r in rows[2:]] == [
        '\'=HYPERLINK("x")',
        "'+1 trick",
        "'@cmd",
        "'-minus",
    ]
    assert rows[-1]["amount"] == "" and rows[-1]["event_type"] == "AccountFrozen"
    stored = es.read_stream(account)
    assert [r["hash"] for r in rows] == [e.hash for e in stored]
    assert [r["event_id"] for r in rows] == [str(e.event_id) for e in stored]
    assert rows[1]["correlation_id"] == stored[1].metadata["correlation_id"]
    assert rows[0]["recorded_at"] == stored[0].recorded_at.isoformat()
    assert {r["currency"] for r in rows} == {"EUR"} and {int(r["version"]) for r in rows} == set(
        range(1, 7)
    )


def test_the_csv_of_a_yen_account_has_whole_amounts(client, currencies):
    svc.withdraw(account_id=currencies["JPY"], amount_cents=567, actor=SYSTEM)
    staff(client, "aud", "auditors")
    response = client.get(
        f"/admin/projections/accountbalance/{currencies['JPY']}/audit/export.csv"
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["amount"], r["balance_after"]) for r in rows] == [
        ("1234567", "1234567"),
        ("-567", "1234000"),
    ]


def test_the_account_list_shows_chain_status_and_last_activity_in_bounded_queries(
    client, account, django_assert_max_num_queries
):
    other = svc.open_account(holder_name="Bob Broken", actor=SYSTEM).id
    svc.deposit(account_id=other, amount_cents=100, actor=SYSTEM)
    svc.deposit(account_id=other, amount_cents=100, actor=SYSTEM)
    runner.catch_up()
    staff(client, "aud", "auditors")

    def chain_cells():
        page = client.get(LIST_URL).content.decode()
        return page, dict(
            re.findall(
                r'<th class="field-holder_name"><a[^>]*>([^<]+)</a></th>.*?<td class="field-chain">(.*?)</td>',
                page,
                re.S,
            )
        )

    _, cells = chain_cells()
    assert "not verified yet" in cells["Ada Lovelace"]
    call_command("verify_events", "--full", verbosity=0)
    svc.deposit(account_id=account, amount_cents=1, actor=SYSTEM)
    runner.catch_up()
    page, cells = chain_cells()
    assert (
        ">intact to version 3<" in cells["Ada Lovelace"] and "(1 newer)" in cells["Ada Lovelace"]
    )
    assert cells["Bob Broken"] == '<span class="chain-ok">intact</span>'
    assert re.search(
        r'<td class="field-last_activity"><time datetime="[^"]+" title="[^"]+">', page
    )
    change_the_deposit(other)
    with pytest.raises(CommandError):
        call_command("verify_events", "--full", verbosity=0)
    _, cells = chain_cells()
    assert "BROKEN at version 2" in cells["Bob Broken"] and "chain-broken" in cells["Bob Broken"]

    for n in range(30):
        svc.open_account(holder_name=f"Filler {n:02}", actor=SYSTEM)
    runner.catch_up()
    with CaptureQueriesContext(connection) as queries:
        assert client.get(LIST_URL).status_code == 200
    sql = [q["sql"] for q in queries.captured_queries if "stream_verifications" in q["sql"]]
    # One query for the page's statuses (eventstore's recorded_statuses), whatever its length.
    assert len(sql) == 1 and "read_account_balances" not in sql[0]
    with django_assert_max_num_queries(len(queries.captured_queries)):
        client.get(LIST_URL, {"status__exact": "active"})


def test_long_ids_are_shortened_with_the_full_value_in_a_title_and_a_copy_button(client, account):
    staff(client, "aud", "auditors")
    listing = client.get(LIST_URL).content.decode()
    full = str(account)
    assert (
        f'<a href="{audit_url(account)}"><code class="short-id-value" title="{full}">'
        f"{full[:8]}…</code></a>"
    ) in listing
    assert f'<button type="button" class="copy-id" data-copy="{full}"' in listing
    # The copy buttons' script is a static file (no inline script: CSP), and it is served.
    assert 'src="/static/bank/ledger.js" defer' in listing
    assert "<script>" not in listing.split("</head>")[0].split("ledger.js")[1]
    from django.contrib.staticfiles import finders

    with open(finders.find("bank/ledger.js"), encoding="utf-8") as script:
        assert "navigator.clipboard" in script.read()
    page = client.get(audit_url(account)).content.decode()
    trace = es.read_stream(account)[-1].metadata.get("trace_id", "")
    if trace:
        assert f'title="{trace}">{trace[:8]}…</code>' in page
    assert f'data-copy="{full}"' in page


def test_the_back_office_is_called_ledgerline_and_slash_leads_to_it(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/", follow=True).redirect_chain[-1][0].startswith("/admin/login/")
    staff(client, "aud", "auditors")
    page = client.get("/admin/").content.decode()
    assert '<div id="site-name"><a href="/admin/">Ledgerline</a></div>' in page
    assert "<title>Ledgerline back office | Ledgerline</title>" in page
    assert client.get("/healthz").status_code in (200, 503)


def test_a_teller_audit_page_with_its_forms_takes_a_bounded_number_of_queries(
    client, account, django_assert_max_num_queries
):
    staff(client, "tina", "tellers")
    for n in range(60):
        svc.deposit(account_id=account, amount_cents=n + 1, actor=SYSTEM)
    # On SQLite the store's statements go through Django's cursor and are counted; a load
    # is two of them (the snapshot, the events from its version: issue 15's spans).
    with django_assert_max_num_queries(21):
        response = client.get(audit_url(account))
    assert 'id="command-deposit"' in response.content.decode()
    with django_assert_max_num_queries(21):
        client.post(command_url(account, "deposit"), {"deposit-amount": "1.5"})
