"""Every URL in the URL conf, walked as anonymous, a user without a role, an auditor, a
teller, an approver, a data protection officer and a superuser: each answers as the role
allows (``staff_expectation``), never with a 5xx, and auditors never cause an event. Admin
forms are CSRF-protected."""

from __future__ import annotations

import importlib
import re

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

import eventstore as es
from bank.models import AccessLogEntry, ApprovalRequest
from bank.services import Actor, approvals
from bank.services import accounts as svc
from eventstore.models import Event
from projections import runner
from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")
CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def _routes(patterns=None, prefix=""):
    """Every route of the URL conf as a string with its converters (``<uuid:account_id>``)."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            yield prefix + route


def _concrete(route: str, values: dict[str, str], objects: dict[str, str]) -> str | None:
    if route.startswith("^") or "(?P" in route:
        return None  # regex routes (admin's catch-all) are reached through the others
    model = route.split("<", 1)[0]
    values = {**values, "object_id": objects.get(model, values["object_id"])}
    return "/" + CONVERTER.sub(
        lambda m: values.get(m.group(2), values[m.group(1) or "str"]), route
    )


@pytest.fixture
def world():
    ensure_roles()
    # The auditors' view of the access log (migration 0003), after a flush emptied the groups.
    importlib.import_module("bank.migrations.0003_access_log").grant_auditors(apps, None)
    # The approvers (issue 21) and the data protection officers (issue 20).
    importlib.import_module("bank.migrations.0005_approvers_role").create_role(apps, None)
    importlib.import_module("bank.migrations.0007_data_protection_role").create_role(apps, None)
    account = svc.open_account(holder_name="Walker", initial_balance_cents=500, actor=SYSTEM)
    other = svc.open_account(holder_name="Other", initial_balance_cents=500, actor=SYSTEM)
    runner.catch_up()
    call_command("verify_events", "--full", verbosity=0)  # a healthy store: /healthz is 200
    users = {}
    for name, group in ROLES.items():
        user = User.objects.create_user(
            name, password="pw", is_staff=group is not None, is_superuser=name == "root"
        )
        if group and group != "superuser":
            user.groups.add(Group.objects.get(name=group))
        users[name] = user
    first_event = es.read_stream(account.id)[0]
    # A request in the approval queue (its own stream: the account's stays at version 1),
    # so that its decision page is asked for a request that exists.
    waiting = approvals.request(
        "freeze",
        command={"account_id": str(other.id), "reason": "card stolen"},
        actor=Actor.from_user(users["tom"], auth="admin"),
        reason="card stolen",
    )
    values = {
        "account_id": str(account.id),
        "object_id": str(account.id),
        "uuid": str(account.id),
        "int": str(first_event.position),
        "str": "x",
        "path": str(account.id),
        "app_label": "bank",
        "content_type_id": "1",
        "uidb64": "MQ",
        "token": "set-password",
        "slug": "x",
        "approval_id": str(waiting.id),
        # A reversal's version: the account's deposit-less opening (not a posting: the
        # page refuses it with a message, never a 5xx).
        "version": "1",
    }
    # Each admin page of one object is asked for an object that exists.
    objects = {
        "admin/auth/group/": str(Group.objects.get(name="auditors").pk),
        "admin/auth/user/": str(users["tom"].pk),
        "admin/authtoken/tokenproxy/": str(Token.objects.create(user=users["nobody"]).user_id),
        "admin/eventstore/event/": str(first_event.position),
        "admin/projections/accountbalance/": str(account.id),
        "admin/bank/approvalrequest/": str(waiting.id),
    }
    # A successful and a failed login, so that django-axes' admin pages have an object each.
    Client().post("/admin/login/", {"username": "tom", "password": "pw"})
    Client().post("/admin/login/", {"username": "tom", "password": "wrong"})
    objects["admin/axes/accessattempt/"] = str(AccessAttempt.objects.get().pk)
    objects["admin/axes/accesslog/"] = str(AccessLog.objects.get().pk)
    objects["admin/axes/accessfailurelog/"] = str(AccessFailureLog.objects.get().pk)
    entry = AccessLogEntry.objects.create(
        at=timezone.now(), username="audrey", account_id=account.id, action="audit_view"
    )
    objects["admin/bank/accesslogentry/"] = str(entry.pk)
    urls = sorted(
        {url for route in _routes() if (url := _concrete(route, values, objects)) is not None}
    )
    assert len(urls) > 30, urls  # the admin's and the API's
    return account, other, users, urls


def _clients(users):
    anonymous = Client()
    clients = {"anonymous": (anonymous, anonymous)}
    for name, user in users.items():
        admin = Client()
        admin.force_login(user)
        token, _ = Token.objects.get_or_create(user=user)
        api = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
        clients[name] = (admin, api)
    return clients


PUBLIC = ("/healthz", "/api/schema/", "/api/docs/", "/admin/login/")
# The roles walked: a user name and its group (None: no role and not staff).
ROLES = {
    "nobody": None,
    "audrey": "auditors",
    "tom": "tellers",
    "ann": "approvers",
    "dana": "data_protection",
    "root": "superuser",
}
# What each staff role may see beyond the accounts, their events and their audit pages.
QUEUE_VIEWERS = ("audrey", "tom", "ann", "root")  # bank.view_approvalrequest
SNAPSHOT_VIEWERS = ("audrey", "tom", "ann", "root")  # data_protection sees accounts only
ACCOUNT = "/admin/projections/accountbalance/"


def staff_expectation(url: str, role: str) -> tuple[int, ...]:
    """The final answers (after the admin's own redirects) a staff role may get for a GET."""
    superuser = role == "root"
    if re.match(r"/admin/(auth|authtoken|axes)/", url):
        # Staff roles manage no users; the superuser does (an add page django-axes' admin
        # refuses, a delete page of an object: answered, never changed by a GET).
        return (200, 403, 404) if superuser else (403,)
    if url == "/admin/autocomplete/":
        return (403,)  # no autocomplete field is configured
    if url.startswith("/admin/bank/accesslogentry/"):
        # The access log is the auditors' (and superusers'): not the tellers'.
        if "/add/" in url or url.endswith("/delete/"):
            return (403, 404)
        return (200, 404) if role in ("audrey", "root") else (403,)
    if "/add/" in url or url.endswith("/delete/"):
        return (403, 404)  # the store is read-only
    if url.startswith("/admin/bank/approvalrequest/"):
        # The queue and its decision pages (GET shows them; deciding is a POST).
        return (200,) if role in QUEUE_VIEWERS else (403,)
    if re.match(rf"{ACCOUNT}[0-9a-f-]+/reverse/\d+/$", url):
        # A reversal's confirmation is a teller's (here: version 1 is not a posting, so the
        # answer is the audit page with a message saying why).
        return (200,) if role in ("tom", "root") else (403,)
    if re.match(rf"{ACCOUNT}[0-9a-f-]+/erase/$", url):
        # Erasure is the data protection officers' (here: the account is open, so the answer
        # is the audit page with the refusal).
        return (200,) if role in ("dana", "root") else (403,)
    if "/command/" in url or re.search(
        r"/(deposit|withdraw|freeze|unfreeze|close|transfers|reversals|approve|reject)/$", url
    ):
        return (403, 405)  # commands are POSTs
    if re.match(r"/admin/eventstore/snapshot/[^/]+/", url):
        # No snapshot exists: Django's admin sends to its index before it asks for the
        # permission (which data_protection lacks).
        return (200, 404) if role in SNAPSHOT_VIEWERS else (200, 403)
    if url.startswith("/admin/eventstore/snapshot/") or url.startswith(
        ("/admin/projections/checkpoint/", "/admin/projections/deadletter/")
    ):
        return (200, 404) if role in SNAPSHOT_VIEWERS else (403,)
    return (200, 404)


def test_every_url_answers_each_role_as_it_may_and_never_with_a_5xx(world):
    account, _, users, urls = world
    clients = _clients(users)
    for url in urls:
        is_api, is_admin = url.startswith("/api/"), url.startswith("/admin/")
        for role, (admin_client, api_client) in clients.items():
            client = api_client if is_api else admin_client
            response = client.get(url)
            where = f"GET {url} as {role}: {response.status_code}"
            assert response.status_code < 500, where
            if url.startswith(PUBLIC) or url == "/admin/logout/":
                continue
            if role == "anonymous":
                if is_api:
                    assert response.status_code == 401, where
                    assert response["Content-Type"] == "application/problem+json", where
                elif is_admin:
                    assert response.status_code == 302, where
                    assert response["Location"].startswith("/admin/login/"), where
            elif role == "nobody":  # authenticated, no role, not staff
                if is_api and re.search(
                    r"/(deposit|withdraw|freeze|unfreeze|close|transfers|reversals|approve|reject)/$",
                    url,
                ):
                    assert response.status_code == 405, where  # no GET there, for any role
                elif is_api:
                    assert response.status_code == 403, where
                elif is_admin:
                    assert response.status_code == 302, where
                    assert response["Location"].startswith("/admin/login/"), where
            else:  # staff: follow the admin's own redirects (object/ -> object/change/)
                final = client.get(url, follow=True).status_code
                where = f"GET {url} as {role}: {response.status_code}, finally {final}"
                assert final in staff_expectation(url, role), where
    # Reading never writes.
    assert es.stream_version(account.id) == 1


def test_an_auditor_can_never_cause_an_event(world):
    account, other, users, urls = world
    admin_client, api_client = _clients(users)["audrey"]
    before = Event.objects.count()
    bodies = {
        "amount_cents": 10,
        "reason": "no",
        "holder_name": "Mallory",
        "from_account": str(account.id),
        "to_account": str(other.id),
        "currency": "EUR",
    }
    for url in urls:
        if url == "/admin/logout/":
            continue  # would end the auditor's session, not change anything
        for method in ("post", "put", "patch", "delete"):
            if url.startswith("/api/"):
                response = getattr(api_client, method)(
                    url, bodies, content_type="application/json"
                )
            else:
                response = getattr(admin_client, method)(url, bodies)
            assert response.status_code < 500, f"{method.upper()} {url}: {response.status_code}"
            if url.startswith("/api/"):
                assert response.status_code in (403, 404, 405), f"{method.upper()} {url}"
    # The admin's command forms, by name, as the audit page posts them.
    for form in ("deposit", "withdraw", "freeze", "unfreeze", "close"):
        response = admin_client.post(
            f"/admin/projections/accountbalance/{account.id}/command/{form}/",
            {f"{form}-amount_cents": "10", f"{form}-reason": "x"},
        )
        assert response.status_code == 403, form
    assert Event.objects.count() == before


def test_admin_forms_are_csrf_protected(world):
    account, _, users, _ = world
    teller = Client(enforce_csrf_checks=True)
    teller.force_login(users["tom"])
    audit = f"/admin/projections/accountbalance/{account.id}/audit/"
    freeze = f"/admin/projections/accountbalance/{account.id}/command/freeze/"
    before = Event.objects.count()
    response = teller.post(freeze, {"freeze-reason": "no token"})
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert Event.objects.count() == before
    # With the token from the page, the same form works: the check is what refused it.
    page = teller.get(audit)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
    response = teller.post(
        freeze,
        {
            "freeze-reason": "with token",
            "csrfmiddlewaretoken": token.decode(),
            "confirm": "yes",  # the confirmation page's answer (a freeze is confirmed first)
            "expected_version": "1",
        },
    )
    assert response.status_code == 302
    assert Event.objects.count() == before + 1


def test_the_queues_bulk_decisions_and_the_erasure_answer_each_role_as_it_may(world):
    """The POSTs behind the new admin pages: a bulk decision (its confirmation page) is the
    approvers' (and the superuser's); an erasure is the data protection officers'; a
    reversal the tellers'. Refused or not, nothing is written by these requests."""
    account, other, users, _ = world
    clients = _clients(users)
    waiting = ApprovalRequest.objects.get()
    before = Event.objects.count()
    queue = "/admin/bank/approvalrequest/"
    erase = f"/admin/projections/accountbalance/{account.id}/erase/"
    reverse = f"/admin/projections/accountbalance/{account.id}/reverse/1/"
    expected = {
        # role: (bulk confirmation, erase, reverse)
        "anonymous": (302, 302, 302),
        "nobody": (302, 302, 302),
        "audrey": (200, 403, 403),
        "tom": (200, 403, 302),
        "ann": (200, 403, 403),
        "dana": (403, 302, 403),
        "root": (200, 302, 302),
    }
    for role, (admin_client, _) in clients.items():
        bulk = admin_client.post(
            queue,
            {"action": "reject_selected", "_selected_action": [str(waiting.id)], "index": "0"},
        )
        erased = admin_client.post(erase, {"confirm": "yes", "erase-reason": "asked"})
        reversed_ = admin_client.post(reverse, {"confirm": "yes", "reverse-reason": "x"})
        answers = (bulk.status_code, erased.status_code, reversed_.status_code)
        assert answers == expected[role], f"{role}: {answers}"
        if role in ("ann", "root"):  # the confirmation page, nothing decided yet
            assert b'id="bulk-confirm"' in bulk.content, role
        elif role in ("audrey", "tom"):  # the queue, the action not offered to them
            assert b'id="bulk-confirm"' not in bulk.content, role
        if role in ("dana", "root"):  # refused with a message: the account is open
            assert erased["Location"] == f"/admin/projections/accountbalance/{account.id}/audit/"
    waiting.refresh_from_db()
    assert waiting.status == "pending"
    assert Event.objects.count() == before
