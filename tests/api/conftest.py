from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.support import ensure_roles


def _user(name, group=None, **extra):
    user = User.objects.create_user(name, password="pw-" + name, **extra)
    if group:
        ensure_roles()
        user.groups.add(Group.objects.get(name=group))
    return user


def _client(user):
    client = APIClient()
    if user is not None:
        token = Token.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def teller_user(db):
    return _user("teller", "tellers")


@pytest.fixture
def teller(teller_user):
    return _client(teller_user)


@pytest.fixture
def auditor(db):
    return _client(_user("auditor", "auditors"))


@pytest.fixture
def nobody(db):
    return _client(_user("nobody"))


@pytest.fixture
def superuser(db):
    return _client(_user("root", is_superuser=True, is_staff=True))


@pytest.fixture
def anonymous(db):
    return APIClient()


@pytest.fixture
def open_account(teller):
    def open_(balance=0, holder="Ada Lovelace", currency="EUR"):
        response = teller.post(
            "/api/accounts/",
            {"holder_name": holder, "initial_balance_cents": balance, "currency": currency},
            format="json",
        )
        assert response.status_code == 201, response.content
        return response.json()

    return open_


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """Throttle counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def keep_test_connection_open():
    """As Django's test client does: a request made in the test's thread (Schemathesis calls
    the WSGI application directly) must not close the test's database connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
