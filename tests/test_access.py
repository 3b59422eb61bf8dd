"""Every URL in the URL conf, walked as anonymous, a user without a role, an auditor and a
teller: each answers as the role allows, never with a 5xx, and auditors never cause an event.
Admin forms are CSRF-protected."""

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
from bank.models import AccessLogEntry
from bank.services import Actor
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
    account = svc.open_account(holder_name="Walker", initial_balance_cents=500, actor=SYSTEM)
    other = svc.open_account(holder_name="Other", initial_balance_cents=500, actor=SYSTEM)
    runner.catch_up()
    call_command("verify_events", "--full", verbosity=0)  # a healthy store: /healthz is 200
    users = {}
    for name, group in (("nobody", None), ("audrey", "auditors"), ("tom", "tellers")):
        user = User.objects.create_user(name, password="pw", is_staff=group is not None)
        if group:
            user.groups.add(Group.objects.get(name=group))
        users[name] = user
    first_event = es.read_stream(account.id)[0]
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
    }
    # Each admin page of one object is asked for an object that exists.
    objects = {
        "admin/auth/group/": str(Group.objects.get(name="auditors").pk),
        "admin/auth/user/": str(users["tom"].pk),
        "admin/authtoken/tokenproxy/": str(Token.objects.create(user=users["nobody"]).user_id),
        "admin/eventstore/event/": str(first_event.position),
        "admin/projections/accountbalance/": str(account.id),
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
                    r"/(deposit|withdraw|freeze|unfreeze|close|transfers)/$", url
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
                if is_admin and re.match(r"/admin/(auth|authtoken|axes)/", url):
                    assert final == 403, where  # staff roles manage no users
                elif is_admin and url.startswith("/admin/bank/accesslogentry/"):
                    # The access log is the auditors' (and superusers'): not the tellers'.
                    if "/add/" in url or url.endswith("/delete/"):
                        assert final in (403, 404), where
                    else:
                        assert final in ((200, 404) if role == "audrey" else (403,)), where
                elif is_admin and ("/add/" in url or url.endswith("/delete/")):
                    assert final in (403, 404), where  # the store is read-only
                elif url == "/admin/autocomplete/":
                    assert final == 403, where  # no autocomplete field is configured
                elif "/command/" in url or re.search(
                    r"/(deposit|withdraw|freeze|unfreeze|close|transfers)/$", url
                ):
                    assert final in (403, 405), where  # commands are POSTs
                else:
                    assert final in (200, 404), where
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
