"""The admin through Django's test client: pages, roles, read-only store, commands, CSV,
integrity (the audit page's section and banner, the index panel)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import eventstore as es
from bank.admin import COMMAND_WITHHELD, COMMANDS
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
    assert "Ada Lovelace" in page and "1300 cents EUR" in page
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
    assert 'id="past-balance">1500 cents' in page
    page = client.get(audit_url(account), {"as_of": "2026-03-01T10:30"}).content.decode()
    assert 'id="past-version">2<' in page and 'id="past-balance">1500 cents' in page
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
        {"freeze-reason": "suspicious"},
        follow=True,
    )
    assert "Freeze done" in response.content.decode()
    event = es.read_stream(account)[-1]
    assert event.event_type == "AccountFrozen" and event.data["reason"] == "suspicious"
    assert event.metadata["actor"] == {"id": teller.pk, "username": "tina", "auth": "admin"}
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/deposit/",
        {"deposit-amount_cents": "5", "deposit-description": ""},
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
        {"withdraw-amount_cents": "999999", "withdraw-description": "x"},
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
        {"deposit-amount_cents": "5"},
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
    assert rows[0][:6] == [
        "version",
        "position",
        "event_id",
        "event_type",
        "amount_cents",
        "balance_after_cents",
    ]
    assert [r[3] for r in rows[1:]] == ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]
    assert [r[5] for r in rows[1:]] == ["1000", "1500", "1300"]
    assert rows[3][6] == '\'=HYPERLINK("x")'
    assert rows[3][4] == "'-200"


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
    assert len(inputs) == 2 * 3 + 3 * 2  # money forms: 2 fields + submit; reason forms: 1 + 1
    assert all(re.search(r"\sdisabled[\s>]", tag) for tag in inputs), inputs
    assert 'id="commands-withheld"' in page and "the account&#x27;s record is broken" in page


def test_a_command_posted_for_a_broken_account_is_refused_and_changes_nothing(client, account):
    staff(client, "tina", "tellers")
    change_the_deposit(account)
    before, events = svc.get_account(account), Event.objects.count()
    response = client.post(
        f"/admin/projections/accountbalance/{account}/command/deposit/",
        {"deposit-amount_cents": "5", "deposit-description": "sneaky"},
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
    links = re.findall(r'href="\?page=(\d+)"', page)
    assert {"1", "2", "17", "23", "40", "41"} <= set(links) and len(links) < 15
    assert '<span class="this-page">20</span>' in page and "…" in page
