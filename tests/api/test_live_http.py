"""Real HTTP against a live server: concurrent clients on one account, concurrent retries."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
import uuid

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token

import eventstore as es
from bank.services import accounts as svc
from tests.support import ensure_roles, run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def token(transactional_db):
    ensure_roles()
    user = User.objects.create_user("live-teller")
    user.groups.add(Group.objects.get(name="tellers"))
    return Token.objects.create(user=user).key


def call(base, token, method, path, body=None, headers=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_ten_clients_depositing_and_withdrawing_on_one_account_lose_no_money(live_server, token):
    status, account = call(
        live_server.url,
        token,
        "POST",
        "/api/accounts/",
        {"holder_name": "Shared", "initial_balance_cents": 5_000},
    )
    assert status == 201
    path = f"/api/accounts/{account['id']}"

    def client(i, barrier):
        rng = random.Random(i)
        barrier.wait()
        moved = 0
        outcomes = []
        for _ in range(15):
            amount = rng.randint(1, 900)
            if rng.random() < 0.5:
                status, body = call(
                    live_server.url, token, "POST", f"{path}/deposit/", {"amount_cents": amount}
                )
                if status == 200:
                    moved += amount
            else:
                status, body = call(
                    live_server.url, token, "POST", f"{path}/withdraw/", {"amount_cents": amount}
                )
                if status == 200:
                    moved -= amount
            outcomes.append(status)
            assert status in (200, 409, 422), body
        return moved, outcomes

    results = run_threads(10, client)
    assert all(isinstance(r, tuple) for r in results), results
    net = sum(moved for moved, _ in results)
    status, state = call(live_server.url, token, "GET", f"{path}/")
    assert state["balance_cents"] == 5_000 + net
    replayed = svc.account_at(uuid.UUID(account["id"]), version=state["version"])
    assert replayed.balance_cents == state["balance_cents"]
    successes = sum(o.count(200) for _, o in results)
    assert state["version"] == 1 + successes
    balances = [
        svc.account_at(uuid.UUID(account["id"]), version=v).balance_cents
        for v in range(1, state["version"] + 1)
    ]
    assert min(balances) >= 0


def test_five_concurrent_retries_with_one_idempotency_key_make_one_event(live_server, token):
    status, account = call(
        live_server.url, token, "POST", "/api/accounts/", {"holder_name": "Retry"}
    )
    path = f"/api/accounts/{account['id']}/deposit/"

    def retry(i, barrier):
        barrier.wait()
        return call(
            live_server.url,
            token,
            "POST",
            path,
            {"amount_cents": 700},
            {"Idempotency-Key": "the-same-key"},
        )

    results = run_threads(5, retry)
    assert {status for status, _ in results} == {200}
    assert len({json.dumps(body, sort_keys=True) for _, body in results}) == 1
    events = es.read_stream(uuid.UUID(account["id"]))
    assert [e.event_type for e in events] == ["AccountOpened", "MoneyDeposited"]
    assert svc.get_account(uuid.UUID(account["id"])).balance_cents == 700
