"""Property-based API testing from the OpenAPI document: no 5xx, answers match the schema.

A bounded number of examples per operation keeps it fast; ``make fuzz`` runs a larger budget.
Our documented refusals (404 unknown account, 409, 412, 422 business rules) and 304 (a
read whose If-None-Match matches) count as expected answers for valid data; every other
check stays on. The read models are caught up before each read of them (the follower's
work), so that a ``min_position`` the store handed out is reached, never a 503.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bank.domain.approval import KINDS as APPROVAL_KINDS
from bank.services import Actor, approvals
from bank.services import accounts as svc
from projections import runner
from tests.support import ensure_roles

CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # 304: If-None-Match with the account's ETag (or *) on a read.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "304", "404", "409", "412", "422"]
            }
        }
    }
)
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
# The operations answered from a read model (min_position, X-Projection-Position).
READ_MODELS = {"/api/accounts/", "/api/accounts/{account_id}/transactions/"}


def _load_schema():
    from config.wsgi import application

    # Loading only asks for /api/schema/, which touches no database.
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=CONFIG)


schema = _load_schema()


@pytest.fixture(autouse=True)
def _requests_keep_the_connection(keep_test_connection_open):
    """Schemathesis calls the WSGI app in the test's thread (see the fixture)."""


@pytest.fixture
def teller_token(db):
    ensure_roles()
    # A teller who is an approver too: approve and reject answer what an approver gets
    # (404 for an unknown request), not 403 for the role, which no valid data could avoid.
    user = User.objects.create_user("fuzz-teller")
    user.groups.add(Group.objects.get(name="tellers"), Group.objects.get(name="approvers"))
    # The maker-checker rule is off here (tests/conftest.py), deliberately: every command
    # runs, so the generated requests reach the rules and answers behind it. With the rule
    # on, withdrawals, transfers, freeze and close would all end at a 202.
    assert not any(approvals.policy().may_apply(kind) for kind in APPROVAL_KINDS)
    # An account to hit now and then (most generated ids are unknown: 404).
    svc.open_account(holder_name="Fuzz", initial_balance_cents=10_000, actor=Actor.system("t"))
    return Token.objects.create(user=user).key


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_conforms_to_its_schema_and_never_answers_5xx(case, teller_token):
    headers = {"Authorization": f"Token {teller_token}"}
    query = case.query or {}
    retrieve = case.method == "GET" and case.operation.path == "/api/accounts/{account_id}/"
    if retrieve and "as_of" in query and "as_of_version" in query:
        # The two are exclusive, which OpenAPI parameters cannot say: a documented 400.
        response = case.call_and_validate(
            headers=headers, excluded_checks=[positive_data_acceptance]
        )
        assert response.status_code != 200
        return
    if case.method == "GET" and case.operation.path in READ_MODELS:
        runner.catch_up()  # the follower's work, done before the read model is read
        if "min_position" in query or "X-Min-Position" in (case.headers or {}):
            # A position beyond the store's head, or the query and the header disagreeing:
            # documented 400s that OpenAPI parameters cannot say (the head moves, and two
            # parameters cannot be tied to each other).
            response = case.call_and_validate(
                headers=headers, excluded_checks=[positive_data_acceptance]
            )
            assert response.status_code in (200, 400, 404), response.text
            return
    case.call_and_validate(headers=headers)
