"""A client generated from the OpenAPI document talks to a live server (issue 19's scenario).

openapi-python-client turns ``/api/schema/`` into a typed package; the test drives it as a
client author would: open, read, revalidate, command with the ETag as If-Match, read the
problems as typed objects, page past the end, transfer.
"""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx  # noqa: F401  (the generated client's transport)
import openapi_python_client  # noqa: F401  (test dependencies: a missing one fails, never skips)
import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from tests.support import ensure_roles

pytestmark = pytest.mark.django_db(transaction=True)

PACKAGE = "ledgerline_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The client package, generated from the document the server serves."""
    directory = tmp_path_factory.mktemp("client")
    document = directory / "openapi.json"
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    document.write_text(out.getvalue())
    bin_dir = str(Path(sys.executable).parent)  # the generator formats with ruff from here
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(directory / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        cwd=directory,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(directory))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def client(generated, live_server):
    ensure_roles()
    user = User.objects.create_user("generated-teller")
    user.groups.add(Group.objects.get(name="tellers"))
    token = Token.objects.create(user=user).key
    # The generated client's defaults: Authorization: Bearer <key>, which the API takes.
    with generated.AuthenticatedClient(base_url=live_server.url, token=token) as authenticated:
        assert authenticated.prefix == "Bearer"
        yield authenticated


def api(name):
    group, operation = name.split(".")
    return importlib.import_module(f"{PACKAGE}.api.{group}.{operation}")


def models():
    return importlib.import_module(f"{PACKAGE}.models")


def test_a_generated_client_runs_the_scenario(generated, client, live_server):
    m = models()
    # Open, with a key that makes the retry safe: the replay is the same account.
    body = m.OpenAccountRequest(holder_name="Ada Lovelace", initial_balance_cents=100)
    opened = api("accounts.accounts_open").sync_detailed(
        client=client, body=body, idempotency_key="open-ada"
    )
    assert opened.status_code == 201
    account = opened.parsed
    assert isinstance(account, m.Account) and account.status == m.AccountStatus.ACTIVE
    assert account.currency == m.Currency.EUR
    assert opened.headers["ETag"] == '"1"' and opened.headers["Cache-Control"] == "no-store"
    assert opened.headers["Location"] == f"/api/accounts/{account.id}/"
    replay = api("accounts.accounts_open").sync_detailed(
        client=client, body=body, idempotency_key="open-ada"
    )
    assert replay.parsed.id == account.id
    assert replay.headers["Idempotency-Replayed"] == "true"

    # Read, then revalidate with the ETag: 304, nothing to parse.
    read = api("accounts.accounts_retrieve").sync_detailed(account_id=account.id, client=client)
    etag = read.headers["ETag"]
    assert read.parsed.version == 1 and etag == '"1"'
    again = api("accounts.accounts_retrieve").sync_detailed(
        account_id=account.id, client=client, if_none_match=etag
    )
    assert again.status_code == 304 and again.parsed is None and again.content == b""

    # A command pinned to the ETag, then the same ETag again: 412 as a typed Problem.
    deposit = api("commands.accounts_deposit")
    done = deposit.sync_detailed(
        account_id=account.id,
        client=client,
        body=m.DepositRequest(amount_cents=50, description=""),
        if_match=etag,
    )
    assert done.status_code == 200 and done.parsed.balance_cents == 150
    done_at = datetime.now(UTC)
    assert done.headers["ETag"] == '"2"'
    stale = deposit.sync_detailed(
        account_id=account.id, client=client, body=m.DepositRequest(amount_cents=1), if_match=etag
    ).parsed
    assert isinstance(stale, m.Problem)
    assert (stale.status, stale.code, stale.current_version) == (
        412,
        m.ProblemCode.VERSION_MISMATCH,
        2,
    )
    malformed = deposit.sync_detailed(
        account_id=account.id, client=client, body=m.DepositRequest(amount_cents=1), if_match='"2'
    ).parsed
    assert malformed.code == m.ProblemCode.INVALID_PRECONDITION_HEADER
    assert malformed.errors.additional_properties == {
        "If-Match": [malformed.errors["If-Match"][0]]
    }

    # A business rule's problem, with its typed members.
    refused = (
        api("commands.accounts_withdraw")
        .sync_detailed(
            account_id=account.id, client=client, body=m.WithdrawRequest(amount_cents=10**6)
        )
        .parsed
    )
    assert refused.code == m.ProblemCode.INSUFFICIENT_FUNDS
    assert (refused.available_cents, refused.requested_cents) == (150, 10**6)

    # Pages: a page past the end is a page, not an error.
    events = api("history.accounts_events").sync(
        account_id=account.id, client=client, page=9, page_size=2
    )
    assert isinstance(events, m.EventPage)
    assert (events.count, events.results, events.next_) == (2, [], None)
    first = api("history.accounts_events").sync(account_id=account.id, client=client)
    assert [e.event_type for e in first.results] == [
        m.EventType.ACCOUNTOPENED,
        m.EventType.MONEYDEPOSITED,
    ]
    assert all(isinstance(e.event_type, m.EventType) for e in first.results)
    assert m.TransactionKind("reversal") == "reversal"  # the kinds are an enum too
    listed = api("accounts.accounts_list").sync(client=client, search="")
    assert isinstance(listed, m.AccountPage)

    # A transfer answers both accounts.
    other = (
        api("accounts.accounts_open")
        .sync_detailed(client=client, body=m.OpenAccountRequest(holder_name="Bob"))
        .parsed
    )
    moved = api("transfers.transfers_create").sync(
        client=client,
        body=m.TransferRequest(
            from_account=account.id, to_account=other.id, amount_cents=25, description="rent"
        ),
    )
    assert isinstance(moved, m.Transfer)
    assert (moved.from_account.balance_cents, moved.to_account.balance_cents) == (125, 25)

    # Time travel: the account as it was at version 1, and at a time before the transfer.
    then = api("accounts.accounts_retrieve").sync(
        account_id=account.id, client=client, as_of_version=1
    )
    assert (then.version, then.balance_cents) == (1, 100)
    before_transfer = api("accounts.accounts_retrieve").sync(
        account_id=account.id, client=client, as_of=done_at
    )
    assert (before_transfer.version, before_transfer.balance_cents) == (2, 150)

    # Without the token: 401 as a Problem; a code newer than the client is kept as text.
    anonymous = generated.Client(base_url=live_server.url)
    denied = api("accounts.accounts_retrieve").sync(account_id=account.id, client=anonymous)
    assert denied.code == m.ProblemCode.NOT_AUTHENTICATED
    newer = m.Problem.from_dict(
        {"type": "t", "title": "t", "status": 400, "detail": "d", "code": "added_later"}
    )
    assert newer.code == "added_later"
    missing = api("accounts.accounts_retrieve").sync(account_id=uuid.uuid4(), client=client)
    assert missing.code == m.ProblemCode.ACCOUNT_NOT_FOUND
