"""The access log: every read of one account's data is recorded, append-only, and browsable
and exportable by auditors only."""

from __future__ import annotations

import csv
import importlib
import io
import uuid

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management.color import no_style
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from bank import access_log
from bank.models import AccessLogEntry, AccessLogError
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.support import ensure_roles as ensure_staff_roles

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")
BASE = "/admin/projections/accountbalance"
LOG = "/admin/bank/accesslogentry/"


def ensure_roles():
    """The staff groups, with the auditors' access-log permission (migration 0003), again
    after a transactional test's flush emptied them."""
    ensure_staff_roles()
    importlib.import_module("bank.migrations.0003_access_log").grant_auditors(apps, None)


def staff(name, group=None, **extra):
    ensure_roles()
    user = User.objects.create_user(name, password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client(**extra)
    client.force_login(user)
    return user, client


def api_client(user):
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture
def account():
    state = svc.open_account(holder_name="Ada Lovelace", initial_balance_cents=1000, actor=SYSTEM)
    svc.deposit(account_id=state.id, amount_cents=500, description="salary", actor=SYSTEM)
    runner.catch_up()
    return state.id


def logged(account_id):
    return [(e.username, e.action) for e in AccessLogEntry.objects.filter(account_id=account_id)][
        ::-1
    ]


def test_admin_pages_of_an_account_record_who_what_when_and_from_where(account):
    audrey, client = staff("audrey", "auditors")
    before = timezone.now()
    pages = {
        f"{BASE}/{account}/audit/": access_log.AUDIT_VIEW,
        f"{BASE}/{account}/audit/?as_of_version=1": access_log.TIME_TRAVEL,
        f"{BASE}/{account}/audit/export.csv": access_log.EXPORT_CSV,
        f"{BASE}/{account}/audit/compare/?a=1&b=2": access_log.COMPARE,
        f"{BASE}/{account}/audit/statement/": access_log.STATEMENT,
        f"{BASE}/{account}/audit/statement.csv?from=2000-01-01&to=2999-12-31": (
            access_log.STATEMENT_CSV
        ),
    }
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        if response.streaming:
            b"".join(response.streaming_content)
    assert logged(account) == [("audrey", action) for action in pages.values()]
    entry = AccessLogEntry.objects.filter(account_id=account).first()
    assert entry.user_id == audrey.pk and entry.address == "127.0.0.1"
    assert before <= entry.at <= timezone.now()


def test_the_correlation_and_actions_pages_record_each_account_they_show(account):
    other = svc.open_account(holder_name="Bob", initial_balance_cents=0, actor=SYSTEM).id
    transfer_id = uuid.uuid4()
    svc.transfer(
        from_account=account,
        to_account=other,
        amount_cents=1,
        actor=Actor("tina", 7, "admin"),
        correlation_id=transfer_id,
    )
    _, client = staff("audrey", "auditors")
    assert client.get(f"{BASE}/actions/?actor=tina").status_code == 200
    assert client.get(f"{BASE}/correlation/{transfer_id}/").status_code == 200
    for shown in (account, other):
        assert logged(shown) == [
            ("audrey", access_log.ACTOR_ACTIONS),
            ("audrey", access_log.CORRELATION),
        ]


def test_api_reads_of_an_account_are_recorded_and_a_missing_account_is_not(account):
    ensure_roles()
    user = User.objects.create_user("api-auditor")
    user.groups.add(Group.objects.get(name="auditors"))
    api = api_client(user)
    for path in ("", "events/", "transactions/"):
        assert api.get(f"/api/accounts/{account}/{path}").status_code == 200
    assert logged(account) == [
        ("api-auditor", access_log.API_ACCOUNT),
        ("api-auditor", access_log.API_EVENTS),
        ("api-auditor", access_log.API_TRANSACTIONS),
    ]
    missing = uuid.uuid4()
    assert api.get(f"/api/accounts/{missing}/").status_code == 404
    assert logged(missing) == []


def test_the_address_is_the_one_login_throttling_counts(account, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    _, client = staff(
        "audrey", "auditors", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9"
    )
    client.get(f"{BASE}/{account}/audit/")
    assert AccessLogEntry.objects.filter(account_id=account).get().address == "203.0.113.9"


def test_the_audit_page_shows_who_viewed_it_last_this_view_included(account):
    _, teller = staff("tom", "tellers")
    _, auditor = staff("audrey", "auditors")
    for _ in range(11):
        teller.get(f"{BASE}/{account}/audit/")
    page = auditor.get(f"{BASE}/{account}/audit/").content.decode()
    panel = page.split('id="viewed-by"')[1].split("</div>")[0]
    rows = panel.split('class="viewed-by-entry"')[1:]
    assert len(rows) == access_log_viewed_by_max() == 10
    assert "<td>audrey</td>" in rows[0] and all("<td>tom</td>" in r for r in rows[1:])
    assert "<code>audit_view</code>" in rows[0] and "<time datetime=" in rows[0]
    assert f'href="{LOG}?account_id={account}" id="viewed-by-all"' in page
    # Tellers see the panel, not the log itself.
    assert 'id="viewed-by-all"' not in teller.get(f"{BASE}/{account}/audit/").content.decode()


def access_log_viewed_by_max():
    from bank.selectors import VIEWED_BY_MAX

    return VIEWED_BY_MAX


def test_logging_costs_the_audit_page_one_insert_and_the_panel_one_select(account):
    _, client = staff("audrey", "auditors")
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"{BASE}/{account}/audit/").status_code == 200
    touching = [q["sql"] for q in queries.captured_queries if "bank_access_log" in q["sql"]]
    assert len(touching) == 2
    assert touching[0].startswith("INSERT") and touching[1].startswith("SELECT")


@pytest.fixture
def refusing_inserts():
    """The log's table refuses inserts (a full disk, a revoked grant) for one test."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION test_refuse_insert() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'log down' USING ERRCODE = 'restrict_violation'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_refuse_insert BEFORE INSERT ON bank_access_log "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse_insert()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_refuse_insert BEFORE INSERT ON bank_access_log "
                "BEGIN SELECT RAISE(ABORT, 'log down'); END"
            )
    # Dropped by the test's rollback (DDL is transactional on both vendors).


@pytest.mark.parametrize("kind", ["admin", "admin csv", "api"])
def test_a_view_that_cannot_be_logged_fails_and_shows_nothing(account, refusing_inserts, kind):
    user, client = staff("audrey", "auditors")
    if kind == "api":
        client = api_client(user)
        url = f"/api/accounts/{account}/"
    else:
        url = f"{BASE}/{account}/audit/" + ("export.csv" if kind == "admin csv" else "")
    client.raise_request_exception = False
    response = client.get(url)
    assert response.status_code == 500
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"Ada Lovelace" not in body and b"salary" not in body and b"1500" not in body


def test_a_superuser_view_is_logged_too_and_anonymous_reads_are_not(account):
    ensure_roles()
    root = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(root)
    client.get(f"{BASE}/{account}/audit/")
    Client().get(f"{BASE}/{account}/audit/")  # redirected to the login page: nothing shown
    assert logged(account) == [("root", access_log.AUDIT_VIEW)]


# --- immutability ---------------------------------------------------------------------------


@pytest.fixture
def entries(account):
    _, client = staff("audrey", "auditors")
    client.get(f"{BASE}/{account}/audit/")
    client.get(f"{BASE}/{account}/audit/?as_of_version=1")
    return account


ORM_ATTEMPTS = {
    "save existing": lambda: (
        setattr(e := AccessLogEntry.objects.first(), "action", "x"),
        e.save(),
    ),
    "save update_fields": lambda: AccessLogEntry.objects.first().save(update_fields=["action"]),
    "instance delete": lambda: AccessLogEntry.objects.first().delete(),
    "queryset update": lambda: AccessLogEntry.objects.all().update(action="x"),
    "queryset delete": lambda: AccessLogEntry.objects.all().delete(),
    "filtered delete": lambda: AccessLogEntry.objects.filter(action="audit_view").delete(),
    "bulk_update": lambda: AccessLogEntry.objects.bulk_update(
        list(AccessLogEntry.objects.all()), ["action"]
    ),
    "bulk_create upsert": lambda: AccessLogEntry.objects.bulk_create(
        [AccessLogEntry(id=AccessLogEntry.objects.first().id, action="x")],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["action"],
    ),
    "update_or_create": lambda: AccessLogEntry.objects.update_or_create(
        id=AccessLogEntry.objects.first().id, defaults={"action": "x"}
    ),
}


def _rows():
    return sorted(AccessLogEntry.objects.values_list("id", "action", "username", "account_id"))


@pytest.mark.parametrize("attempt", list(ORM_ATTEMPTS), ids=list(ORM_ATTEMPTS))
def test_the_orm_refuses_to_change_or_delete_an_entry(entries, attempt):
    before = _rows()
    with pytest.raises(AccessLogError, match="append-only"):
        ORM_ATTEMPTS[attempt]()
    assert _rows() == before and len(before) == 2


RAW_ATTEMPTS = {
    "update": "UPDATE bank_access_log SET action = 'x'",
    "update one row": "UPDATE bank_access_log SET username = 'x' WHERE id = (SELECT MIN(id) "
    "FROM bank_access_log)",
    "delete where": "DELETE FROM bank_access_log WHERE action = 'audit_view'",
    "delete all": "DELETE FROM bank_access_log",
}


@pytest.mark.parametrize("attempt", list(RAW_ATTEMPTS), ids=list(RAW_ATTEMPTS))
def test_the_database_refuses_raw_update_and_delete(entries, attempt):
    before = _rows()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(RAW_ATTEMPTS[attempt])
    assert _rows() == before


@pytest.mark.postgres
def test_postgres_refuses_truncate_and_a_trigger_skipping_session_role_does_not_help(entries):
    before = _rows()
    for setup in ("", "SET LOCAL session_replication_role = replica"):
        for sql in ("TRUNCATE bank_access_log", "DELETE FROM bank_access_log"):
            with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
                with connection.cursor() as cursor:
                    if setup:
                        cursor.execute(setup)
                    cursor.execute(sql)
    assert _rows() == before


def test_djangos_flush_cannot_purge_the_log(entries):
    """``manage.py flush`` empties every table Django manages; the log's triggers refuse
    it (the tests' own flushes run with them off, like the events')."""
    from django.db import DatabaseError

    before = _rows()
    tables = connection.introspection.django_table_names(only_existing=True)
    assert "bank_access_log" in tables
    statements = connection.ops.sql_flush(no_style(), ["bank_access_log"])
    # The statements themselves (the tests' conftest wraps execute_sql_flush in
    # triggers_disabled for their own flushes).
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    assert _rows() == before


# --- the log in the admin ---------------------------------------------------------------


def test_auditors_browse_the_log_filtered_by_user_account_and_date(entries):
    account = entries
    other = svc.open_account(holder_name="Other", actor=SYSTEM).id
    tom, teller = staff("tom", "tellers")
    teller.get(f"{BASE}/{other}/audit/")
    audrey, client = staff("auditor2", "auditors")
    page = client.get(LOG).content.decode()
    assert page.count('class="field-action"') == 3
    assert 'name="action"' not in page and "Delete" not in page  # no actions, no purge
    assert 'id="export-access-log"' in page
    by_user = client.get(LOG, {"user_id": tom.pk}).content.decode()
    assert by_user.count('class="field-action"') == 1 and str(other)[:8] in by_user
    by_account = client.get(LOG, {"account_id": str(account)}).content.decode()
    assert by_account.count('class="field-action"') == 2 and "time_travel" in by_account
    today = timezone.localdate()
    by_day = client.get(
        LOG, {"at__year": today.year, "at__month": today.month, "at__day": today.day}
    ).content.decode()
    assert by_day.count('class="field-action"') == 3
    long_ago = client.get(LOG, {"at__lt": "2000-01-01 00:00:00+00:00"}).content.decode()
    assert long_ago.count('class="field-action"') == 0
    searched = client.get(LOG, {"q": str(other)}).content.decode()
    assert searched.count('class="field-action"') == 1


def test_tellers_cannot_see_the_log_and_nobody_can_add_change_or_delete(entries):
    _, teller = staff("tom", "tellers")
    assert teller.get(LOG).status_code == 403
    assert teller.get(f"{LOG}export.csv").status_code == 403
    root = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(root)
    first = AccessLogEntry.objects.first()
    assert client.get(f"{LOG}add/").status_code == 403
    assert client.get(f"{LOG}{first.pk}/delete/").status_code == 403
    response = client.post(f"{LOG}{first.pk}/change/", {"action": "x"})
    assert response.status_code == 403
    assert AccessLogEntry.objects.get(pk=first.pk).action == first.action


def test_the_log_exports_as_csv_with_the_lists_filters_numbers_as_numbers(entries):
    account = entries
    ensure_roles()
    evil = User.objects.create_user("=HYPERLINK(1)", is_staff=True)
    evil.groups.add(Group.objects.get(name="tellers"))
    client = Client()
    client.force_login(evil)
    client.get(f"{BASE}/{account}/audit/")
    _, auditor = staff("audrey2", "auditors")
    response = auditor.get(f"{LOG}export.csv", {"account_id": str(account)})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(AccessLogAdmin_header())
    assert len(rows) == 4
    newest = rows[1]
    assert newest[3] == "'=HYPERLINK(1)" and newest[4] == str(account)
    assert newest[5] == "audit_view" and newest[6] == "127.0.0.1"
    assert newest[0].isdigit() and newest[2] == str(evil.pk)
    # Numbers are written bare (no quotes), so a spreadsheet reads them as numbers.
    assert text.splitlines()[1].startswith(f"{newest[0]},")
    other = auditor.get(f"{LOG}export.csv", {"account_id": str(uuid.uuid4())})
    assert len(list(csv.reader(io.StringIO(b"".join(other.streaming_content).decode())))) == 1


def AccessLogAdmin_header():  # noqa: N802
    from bank.admin import AccessLogAdmin

    return AccessLogAdmin.EXPORT_HEADER
