"""DRF's tokens are read after ``Token`` and after ``Bearer``; anything else is a 401 (issue 19).

A client generated from the OpenAPI document sends ``Authorization: Bearer <key>`` by default
(openapi-python-client's ``AuthenticatedClient``); DRF's own form is ``Token <key>``. Both
name the same token and the same user; the 401 challenge stays ``WWW-Authenticate: Token``.
"""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.support import ensure_roles

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def _key(name, group="tellers", **extra):
    ensure_roles()
    user = User.objects.create_user(name, password="pw-" + name, **extra)
    user.groups.add(Group.objects.get(name=group))
    return Token.objects.create(user=user).key


def _as(authorization):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


def assert_unauthenticated(response):
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("word", ["Token", "Bearer", "token", "BEARER"])
def test_the_key_is_read_after_token_and_after_bearer(word):
    key = _key("teller")
    client = _as(f"{word} {key}")
    opened = client.post("/api/accounts/", {"holder_name": "Ada"}, format="json")
    assert opened.status_code == 201, opened.content
    account = opened.json()["id"]
    assert client.get(f"/api/accounts/{account}/").status_code == 200
    assert client.get("/api/accounts/").status_code == 200
    # The command ran as the token's user, recorded as a token's, whichever word was sent.
    (event,) = client.get(f"/api/accounts/{account}/events/").json()["results"]
    actor = event["metadata"]["actor"]
    assert (actor["username"], actor["auth"]) == ("teller", "token")


def test_both_words_name_the_same_user_and_role():
    key = _key("auditor", group="auditors")
    for word in ("Token", "Bearer"):
        client = _as(f"{word} {key}")
        assert client.get("/api/accounts/").status_code == 200
        refused = client.post("/api/accounts/", {"holder_name": "X"}, format="json")
        assert refused.status_code == 403, (word, refused.content)
        assert refused.json()["code"] == "permission_denied"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",  # no key
        "Bearer not-a-key",
        "Bearer {key} extra",
        "Basic {basic}",
        "Digest username=teller",
        "ApiKey {key}",
        "JWT {key}",
        "Tokens {key}",
        "{key}",  # the key alone, no word
    ],
)
def test_other_schemes_and_bad_bearers_are_401(authorization):
    key = _key("teller")
    basic = base64.b64encode(b"teller:pw-teller").decode()
    client = _as(authorization.format(key=key, basic=basic))
    assert_unauthenticated(client.get("/api/accounts/"))
    assert_unauthenticated(client.post("/api/accounts/", {"holder_name": "X"}, format="json"))


def test_an_inactive_users_bearer_is_401():
    key = _key("gone", is_active=False)
    assert_unauthenticated(_as(f"Bearer {key}").get("/api/accounts/"))


def test_the_challenge_stays_token_without_credentials():
    assert_unauthenticated(APIClient().get("/api/accounts/"))
