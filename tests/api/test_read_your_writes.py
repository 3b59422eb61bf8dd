"""Read your writes (issue 18): X-Event-Position, min_position / X-Min-Position, 503 lagging.

Commands answer the global position of their last event; the read-model endpoints wait,
bounded, for their projection to reach a position given back to them, and say how far it
had got. The follower is a real ``run_projections`` process where one has to be running.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

import eventstore as es
from bank.api import consistency
from bank.api.consistency import (
    BEYOND_HEAD_MESSAGE,
    MAX_POSITION,
    MIN_POSITION_BEYOND_HEAD,
    NOT_A_POSITION,
    POSITION_PATTERN,
    PROJECTION_LAGGING,
    SEVERAL_POSITIONS,
)
from bank.api.problems import PROBLEM_CODES
from projections import runner
from projections.models import Checkpoint
from tests.api.test_api import assert_problem, post
from tests.support import ROOT, database_url, manage_env, start_manage

pytestmark = pytest.mark.django_db

LIST, HEADER, QUERY = "/api/accounts/", "X-Min-Position", "min_position"


def position_of(response):
    return int(response["X-Event-Position"])


def checkpoint(name):
    return Checkpoint.objects.filter(name=name).values_list("position", flat=True).first() or 0


def read_list(client, holder, position=None, *, header=False):
    """The account list filtered to one holder, waiting for ``position`` when given."""
    query = {"search": holder}
    headers = {}
    if position is not None:
        if header:
            headers[HEADER] = str(position)
        else:
            query[QUERY] = position
    return client.get(LIST, query, headers=headers)


def transactions(client, account_id, position=None, *, header=False, **query):
    headers = {}
    if position is not None:
        if header:
            headers[HEADER] = str(position)
        else:
            query[QUERY] = position
    return client.get(f"/api/accounts/{account_id}/transactions/", query, headers=headers)


# --- commands answer where their events are ---------------------------------------------


def test_every_command_answer_carries_the_position_of_its_last_event(teller, open_account):
    opened = teller.post(LIST, {"holder_name": "Pos", "initial_balance_cents": 500}, format="json")
    assert opened.status_code == 201
    assert position_of(opened) == es.head_position()
    account = opened.json()
    other = open_account(0, holder="Other")
    path = f"/api/accounts/{account['id']}"
    for command, body in (
        ("deposit", {"amount_cents": 5}),
        ("withdraw", {"amount_cents": 5}),
        ("freeze", {"reason": "check"}),
        ("unfreeze", {"reason": "checked"}),
    ):
        answer = post(teller, f"{path}/{command}/", body)
        assert answer.status_code == 200, answer.content
        # Each one the event at the account's new version, and the newest in the store.
        (event,) = es.read_stream(
            uuid.UUID(account["id"]),
            after_version=answer.json()["version"] - 1,
            up_to_version=answer.json()["version"],
        )
        assert position_of(answer) == event.position == es.head_position()
    moved = post(
        teller,
        "/api/transfers/",
        {"from_account": account["id"], "to_account": other["id"], "amount_cents": 500},
    )
    assert moved.status_code == 200, moved.content
    assert position_of(moved) == es.head_position()
    closed = post(teller, f"{path}/close/", {"reason": "done"})
    assert closed.status_code == 200, closed.content
    assert position_of(closed) == es.head_position()
    # The contract's account, unchanged: the position is in the header only.
    assert set(closed.json()) == {"id", "holder_name", "currency", "balance_cents", "status"} | {
        "version"
    }


def test_a_refused_command_carries_no_event_position_and_writes_nothing(teller, open_account):
    account = open_account(10)
    head = es.head_position()
    refused = post(teller, f"/api/accounts/{account['id']}/withdraw/", {"amount_cents": 11})
    assert_problem(refused, 422, "insufficient_funds")
    assert "X-Event-Position" not in refused
    assert "event_position" not in refused.json()
    assert es.head_position() == head


def test_an_idempotent_replay_carries_the_first_answers_event_position(teller, open_account):
    key = {"Idempotency-Key": "ryw-open"}
    first = teller.post(LIST, {"holder_name": "Replay"}, format="json", headers=key)
    again = teller.post(LIST, {"holder_name": "Replay"}, format="json", headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotency-Replayed"] == "true"
    assert position_of(again) == position_of(first)
    account, other = first.json(), open_account(100, holder="Payer")
    deposit = f"/api/accounts/{account['id']}/deposit/"
    key = {"Idempotency-Key": "ryw-deposit"}
    first = post(teller, deposit, {"amount_cents": 7}, **key)
    post(teller, deposit, {"amount_cents": 1})  # a later write: the replay keeps its own
    again = post(teller, deposit, {"amount_cents": 7}, **key)
    assert again["Idempotency-Replayed"] == "true"
    assert position_of(again) == position_of(first) < es.head_position()
    key = {"Idempotency-Key": "ryw-transfer"}
    body = {"from_account": other["id"], "to_account": account["id"], "amount_cents": 3}
    first = post(teller, "/api/transfers/", body, **key)
    post(teller, deposit, {"amount_cents": 1})
    again = post(teller, "/api/transfers/", body, **key)
    assert again["Idempotency-Replayed"] == "true"
    assert position_of(again) == position_of(first) == es.head_position() - 1


# --- read models say how far they got -------------------------------------------------


def test_read_model_answers_carry_their_projections_position(teller, open_account):
    account = open_account(10)
    runner.catch_up()
    post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 5})
    runner.catch_up(["balances"])  # transactions stays one command behind
    listed = teller.get(LIST)
    assert int(listed["X-Projection-Position"]) == checkpoint("balances") == es.head_position()
    history = transactions(teller, account["id"])
    assert int(history["X-Projection-Position"]) == checkpoint("transactions")
    assert checkpoint("transactions") < es.head_position()
    assert [row["version"] for row in history.json()["results"]] == [1]


def test_without_min_position_a_read_model_may_be_stale_and_says_so(teller, open_account):
    """The bug: a deposit read back from the list showed the old balance, unannounced."""
    account = open_account(10, holder="Stale")
    runner.catch_up()
    deposited = post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 5})
    stale = read_list(teller, "Stale")
    assert stale.status_code == 200
    assert stale.json()["results"][0]["balance_cents"] == 10
    assert int(stale["X-Projection-Position"]) < position_of(deposited)


def test_min_position_already_reached_answers_at_once(teller, open_account):
    account = open_account(10, holder="Reached")
    runner.catch_up()
    position = es.head_position()
    for header in (False, True):
        listed = read_list(teller, "Reached", position, header=header)
        assert listed.status_code == 200 and int(listed["X-Projection-Position"]) >= position
        history = transactions(teller, account["id"], position, header=header)
        assert history.status_code == 200 and int(history["X-Projection-Position"]) >= position
    for zero in (read_list(teller, "Reached", 0), transactions(teller, account["id"], 0)):
        assert zero.status_code == 200
    # The same value in both forms is one position.
    both = teller.get(LIST, {QUERY: position}, headers={HEADER: f" {position} "})
    assert both.status_code == 200


@override_settings(READ_YOUR_WRITES_TIMEOUT_MS=100)
@pytest.mark.parametrize("header", [False, True], ids=["query", "header"])
def test_a_projection_behind_min_position_is_a_503_projection_lagging_after_the_timeout(
    teller, open_account, header
):
    account = open_account(10, holder="Lagging")
    runner.catch_up()
    reached = es.head_position()
    deposited = post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 5})
    wanted = position_of(deposited)
    for projection, read in (
        ("balances", lambda: read_list(teller, "Lagging", wanted, header=header)),
        ("transactions", lambda: transactions(teller, account["id"], wanted, header=header)),
    ):
        started = time.monotonic()
        lagging = read()
        assert time.monotonic() - started >= 0.1  # it waited the timeout out
        body = assert_problem(lagging, 503, PROJECTION_LAGGING)
        assert int(lagging["Retry-After"]) >= 1
        assert lagging["Cache-Control"] == "no-store"
        assert "Authorization" in lagging["Vary"]
        assert "X-Projection-Position" not in lagging
        assert (body["projection"], body["projection_position"], body["min_position"]) == (
            projection,
            reached,
            wanted,
        )
        assert body["title"] and str(wanted) in body["detail"]


@override_settings(READ_YOUR_WRITES_TIMEOUT_MS=0)
def test_a_zero_timeout_never_waits(teller, open_account):
    open_account(10, holder="Now")
    assert_problem(read_list(teller, "Now", es.head_position()), 503, PROJECTION_LAGGING)


# --- validation -------------------------------------------------------------------------


BAD_POSITIONS = ["-1", "x", "1.0", "+1", "1e3", "", " 1", "0x10", "01", "1" * 20]


@pytest.mark.parametrize("value", BAD_POSITIONS)
def test_a_malformed_min_position_is_a_400_naming_it(teller, open_account, value):
    account = open_account(10)
    for response in (
        teller.get(LIST, {QUERY: value}),
        transactions(teller, account["id"], **{QUERY: value}),
    ):
        body = assert_problem(response, 400, "invalid_input")
        assert body["errors"] == {QUERY: [NOT_A_POSITION]}


@pytest.mark.parametrize("value", ["-1", "x", "1.0", "", "1 2", "\v1", "1" * 20])
def test_a_malformed_x_min_position_is_a_400_naming_it(teller, open_account, value):
    account = open_account(10)
    for response in (
        teller.get(LIST, headers={HEADER: value}),
        transactions(teller, account["id"], value, header=True),
    ):
        body = assert_problem(response, 400, "invalid_input")
        assert body["errors"] == {HEADER: [NOT_A_POSITION]}


@pytest.mark.parametrize(
    "value", ["0", "7", " 7\t", "9" * 19, "1" * 20, "07", "-7", "7 ", "\t", "7,8", "٣", "x"]
)
def test_the_documented_header_pattern_accepts_exactly_what_the_server_accepts(teller, value):
    accepted = re.search(POSITION_PATTERN, value) is not None
    response = teller.get(LIST, headers={HEADER: value})
    malformed = response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert accepted != malformed, response.content


def test_query_and_header_that_disagree_are_a_400(teller, open_account):
    open_account(10)
    runner.catch_up()
    body = assert_problem(
        teller.get(LIST, {QUERY: 1}, headers={HEADER: "0"}), 400, "invalid_input"
    )
    assert set(body["errors"]) == {QUERY, HEADER}
    body = assert_problem(teller.get(f"{LIST}?{QUERY}=1&{QUERY}=0"), 400, "invalid_input")
    assert body["errors"] == {QUERY: [SEVERAL_POSITIONS]}
    assert teller.get(f"{LIST}?{QUERY}=1&{QUERY}=1").status_code == 200


def test_a_malformed_min_position_on_an_unknown_account_is_a_400_not_a_404(teller):
    response = transactions(teller, uuid.uuid4(), **{QUERY: "x"})
    assert_problem(response, 400, "invalid_input")
    assert_problem(transactions(teller, uuid.uuid4(), 0), 404, "account_not_found")


@pytest.mark.parametrize("header", [False, True], ids=["query", "header"])
def test_min_position_beyond_the_head_is_a_400_at_once(teller, open_account, header):
    account = open_account(10)
    head = es.head_position()
    for response in (
        read_list(teller, "Ada", head + 1, header=header),
        transactions(teller, account["id"], MAX_POSITION, header=header),
        read_list(teller, "Ada", "9" * 19, header=header),  # above any bigint: no position
    ):
        body = assert_problem(response, 400, MIN_POSITION_BEYOND_HEAD)
        assert body["head_position"] == head
        assert body["errors"] == {(HEADER if header else QUERY): [body["detail"]]}
        assert body["detail"] == BEYOND_HEAD_MESSAGE.format(wanted=body["min_position"], head=head)


@pytest.mark.parametrize(("value", "accepted"), [("-1", False), ("0", True), ("250", True)])
def test_the_timeout_setting_is_read_from_the_environment_and_checked(value, accepted):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.settings as s; print(s.READ_YOUR_WRITES_TIMEOUT_MS)",
        ],
        env={**manage_env("sqlite:///unused.sqlite3"), "READ_YOUR_WRITES_TIMEOUT_MS": value},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if accepted:
        assert (result.returncode, result.stdout.strip()) == (0, value), result.stderr
    else:
        assert result.returncode != 0 and "READ_YOUR_WRITES_TIMEOUT_MS must be" in result.stderr


def test_the_timeout_defaults_to_two_seconds():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.settings as s; print(s.READ_YOUR_WRITES_TIMEOUT_MS)",
        ],
        env={
            k: v
            for k, v in manage_env("sqlite:///unused.sqlite3").items()
            if k != "READ_YOUR_WRITES_TIMEOUT_MS"
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "2000"), result.stderr


def test_the_codes_are_documented_problem_codes():
    assert {PROJECTION_LAGGING, MIN_POSITION_BEYOND_HEAD} <= set(PROBLEM_CODES)
    assert consistency.BALANCES == "balances" and consistency.TRANSACTIONS == "transactions"
    assert consistency.BALANCES in runner.PROJECTIONS
    assert consistency.TRANSACTIONS in runner.PROJECTIONS


# --- the OpenAPI document says all of it ------------------------------------------------


@pytest.fixture(scope="module")
def doc():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    return json.loads(out.getvalue())


def _operation(doc, operation_id):
    (found,) = [
        o
        for item in doc["paths"].values()
        for o in item.values()
        if o["operationId"] == operation_id
    ]
    return found


COMMAND_OPERATIONS = {
    "accounts_open": "201",
    "accounts_deposit": "200",
    "accounts_withdraw": "200",
    "accounts_freeze": "200",
    "accounts_unfreeze": "200",
    "accounts_close": "200",
    "transfers_create": "200",
}


def test_the_document_gives_every_command_answer_its_event_position(doc):
    for operation_id, status in COMMAND_OPERATIONS.items():
        header = _operation(doc, operation_id)["responses"][status]["headers"]["X-Event-Position"]
        assert header["required"] and header["schema"]["type"] == "integer", operation_id
        assert "min_position" in header["description"]
    account = doc["components"]["schemas"]["Account"]["properties"]
    assert set(account) == {"id", "holder_name", "currency", "balance_cents", "status", "version"}


@pytest.mark.parametrize("operation_id", ["accounts_list", "accounts_transactions"])
def test_the_document_describes_min_position_on_the_read_models(doc, operation_id):
    op = _operation(doc, operation_id)
    parameters = {(p["in"], p["name"]): p for p in op["parameters"]}
    query = parameters["query", QUERY]
    assert query["schema"] == {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": MAX_POSITION,
    }
    assert "READ_YOUR_WRITES_TIMEOUT_MS" in query["description"]
    assert parameters["header", HEADER]["schema"] == {
        "type": "string",
        "pattern": POSITION_PATTERN,
    }
    assert not parameters["header", HEADER].get("required")
    ok = op["responses"]["200"]["headers"]["X-Projection-Position"]
    assert ok["required"] and ok["schema"]["type"] == "integer"
    lagging = op["responses"]["503"]
    assert PROJECTION_LAGGING in lagging["description"]
    assert lagging["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert lagging["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert MIN_POSITION_BEYOND_HEAD in op["responses"]["400"]["description"]


def test_the_document_lists_the_new_codes_and_their_members(doc):
    assert {PROJECTION_LAGGING, MIN_POSITION_BEYOND_HEAD} <= set(
        doc["components"]["schemas"]["ProblemCode"]["enum"]
    )
    members = doc["components"]["schemas"]["Problem"]["properties"]
    for name, kind in (
        ("min_position", "integer"),
        ("projection", "string"),
        ("projection_position", "integer"),
        ("head_position", "integer"),
    ):
        assert members[name]["type"] == kind
    assert "event_position" not in members  # no problem is about a write that happened


def test_only_the_read_models_take_min_position(doc):
    for item in doc["paths"].values():
        for op in item.values():
            names = {p["name"] for p in op.get("parameters", [])}
            takes = op["operationId"] in ("accounts_list", "accounts_transactions")
            assert ({QUERY, HEADER} <= names) == takes, op["operationId"]
            assert not ({QUERY, HEADER} & names) or takes, op["operationId"]


# --- with a real follower ---------------------------------------------------------------


def _database():
    """The URL of the test database, for a ``manage.py`` process."""
    if connection.vendor == "postgresql":
        return database_url()
    return f"sqlite:///{connection.settings_dict['NAME']}"


def _follower():
    return start_manage(manage_env(_database()), "run_projections", "--poll-interval", "0.05")


def _stop(follower):
    follower.send_signal(signal.SIGTERM)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, out + err
    assert "stopped cleanly" in out


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("header", [False, True], ids=["query", "header"])
def test_min_position_against_a_stopped_and_then_restarted_follower(teller, header):
    opened = teller.post(
        LIST, {"holder_name": "Restart", "initial_balance_cents": 100}, format="json"
    )
    account = opened.json()
    runner.catch_up()  # a follower ran once, then stopped
    deposited = post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 23})
    wanted = position_of(deposited)

    with override_settings(READ_YOUR_WRITES_TIMEOUT_MS=300):
        started = time.monotonic()
        lagging = read_list(teller, "Restart", wanted, header=header)
        assert time.monotonic() - started >= 0.3
        body = assert_problem(lagging, 503, PROJECTION_LAGGING)
        assert int(lagging["Retry-After"]) >= 1
        assert body["projection_position"] == position_of(opened) < wanted
        lagging = transactions(teller, account["id"], wanted, header=header)
        assert_problem(lagging, 503, PROJECTION_LAGGING)

    follower = _follower()
    try:
        # Long enough for the process to start on a slow machine: the wait is the sync.
        with override_settings(READ_YOUR_WRITES_TIMEOUT_MS=120_000):
            listed = read_list(teller, "Restart", wanted, header=header)
            history = transactions(teller, account["id"], wanted, header=header)
    finally:
        _stop(follower)
    assert listed.status_code == 200, listed.content
    assert int(listed["X-Projection-Position"]) >= wanted
    (row,) = listed.json()["results"]
    assert (
        (row["balance_cents"], row["version"])
        == (123, 2)
        == (
            deposited.json()["balance_cents"],
            deposited.json()["version"],
        )
    )
    assert history.status_code == 200, history.content
    assert int(history["X-Projection-Position"]) >= wanted
    assert history.json()["results"][-1]["balance_after_cents"] == 123


@pytest.mark.django_db(transaction=True)
def test_twenty_deposits_read_back_through_min_position_are_never_stale(teller):
    opened = teller.post(LIST, {"holder_name": "Twenty"}, format="json")
    account = opened.json()
    follower = _follower()
    try:
        with override_settings(READ_YOUR_WRITES_TIMEOUT_MS=120_000):
            for i in range(1, 21):
                deposited = post(
                    teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": i}
                )
                assert deposited.status_code == 200, deposited.content
                wanted, state = position_of(deposited), deposited.json()
                header = i % 2 == 0  # both forms
                listed = read_list(teller, "Twenty", wanted, header=header)
                assert listed.status_code == 200, listed.content
                assert int(listed["X-Projection-Position"]) >= wanted
                (row,) = listed.json()["results"]
                assert (row["balance_cents"], row["version"]) == (
                    state["balance_cents"],
                    state["version"],
                ), f"deposit {i} read back stale"
                history = transactions(teller, account["id"], wanted, header=header, page_size=100)
                assert history.status_code == 200, history.content
                assert int(history["X-Projection-Position"]) >= wanted
                rows = history.json()["results"]
                assert rows[-1]["balance_after_cents"] == state["balance_cents"]
                assert len(rows) == state["version"] - 1  # deposits only (opened with 0)
    finally:
        _stop(follower)


def test_retry_after_is_whole_seconds_from_the_pace_seen_during_the_wait():
    # The checkpoint did not move: come back after as long as this request waited.
    assert consistency.retry_after(5, 5, 9, 2.0) == 2
    assert consistency.retry_after(5, 5, 9, 0.1) == 1
    assert consistency.retry_after(5, 5, 9, 0.0) == 1
    # It moved 10 positions in 2 s and 30 are left: 6 s; never below 1, never above 60.
    assert consistency.retry_after(0, 10, 40, 2.0) == 6
    assert consistency.retry_after(0, 10, 11, 2.0) == 1
    assert consistency.retry_after(0, 1, 10**9, 2.0) == 60
    assert consistency.retry_after(5, 5, 9, 2.004) == 2  # the default timeout, just over
    assert consistency.retry_after(5, 5, 9, 600.0) == 60


def test_a_replay_whose_position_cannot_be_read_still_answers_200(
    teller, open_account, monkeypatch
):
    """A replayed answer reads its position back; a database error then must not turn a
    write that happened into a 503 (the client would retry it elsewhere)."""
    from django.db import OperationalError

    account = open_account(10)
    deposit, key = f"/api/accounts/{account['id']}/deposit/", {"Idempotency-Key": "ryw-lost"}
    first = post(teller, deposit, {"amount_cents": 5}, **key)
    assert first.status_code == 200 and "X-Event-Position" in first

    def unavailable(*accounts):
        raise OperationalError("connection lost after the commit")

    monkeypatch.setattr(consistency, "event_position", unavailable)
    assert "X-Event-Position" in post(teller, deposit, {"amount_cents": 1})  # not read back
    answer = post(teller, deposit, {"amount_cents": 5}, **key)
    assert answer.status_code == 200 and answer["Idempotency-Replayed"] == "true"
    assert answer.json()["balance_cents"] == 15
    assert "X-Event-Position" not in answer


def test_a_write_parked_as_a_dead_letter_is_503_at_once_not_a_stale_200(teller, open_account):
    """The follower moves its checkpoint past an event it parks: a checkpoint at the
    position is then no proof that the write is in the read model."""
    from projections.follower import Parking

    account = open_account(10)
    runner.catch_up()
    wanted = position_of(
        post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 5})
    )
    (deposit,) = es.read_stream(uuid.UUID(account["id"]), after_version=1, up_to_version=2)
    assert deposit.position == wanted
    parking = Parking("balances", attempts=1)  # as the follower leaves it: parked, passed
    parking.park(parking.failed(deposit, "ValueError: cannot apply"))
    Checkpoint.objects.filter(name="balances").update(position=es.head_position())
    started = time.monotonic()
    with override_settings(READ_YOUR_WRITES_TIMEOUT_MS=30_000):
        answer = read_list(teller, account["holder_name"], wanted)
    assert time.monotonic() - started < 20  # answered at once, not after the timeout
    assert_problem(answer, 503, "projection_lagging")
    body = answer.json()
    assert f"parked the event at position {wanted}" in body["detail"]
    assert "--retry-parked" in body["detail"]
    assert body["projection"] == "balances" and body["min_position"] == wanted
    assert answer["Retry-After"] == "60"
    # Before the parked event, and without min_position, the read model answers.
    assert read_list(teller, account["holder_name"], wanted - 1).status_code == 200
    assert read_list(teller, account["holder_name"]).status_code == 200
    runner.retry_parked(["balances"])  # the fix: the write shows
    shown = read_list(teller, account["holder_name"], wanted)
    assert shown.status_code == 200 and shown.json()["results"][0]["balance_cents"] == 15
