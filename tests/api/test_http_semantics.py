"""HTTP as client authors meet it (issue 19): caching, conditional requests, pagination."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import OperationalError
from django.http import HttpResponse
from django.test import RequestFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from bank.api import conditional, problems
from bank.api.caching import no_store
from bank.services import accounts as svc
from eventstore.models import Event
from projections import runner

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    return body


def post(client, path, body, **headers):
    return client.post(path, body, format="json", headers=headers)


def vary_of(response):
    return [v.strip().lower() for v in response.get("Vary", "").split(",") if v.strip()]


def assert_not_stored(response):
    assert response["Cache-Control"] == "no-store", (response.status_code, response.content)
    assert {"authorization", "cookie"} <= set(vary_of(response))
    assert len(vary_of(response)) == len(set(vary_of(response))), response["Vary"]


# --- 1. caching -----------------------------------------------------------------------


def test_every_answer_of_the_api_is_no_store_and_varies_on_the_credentials(
    teller, auditor, anonymous, open_account, monkeypatch
):
    account = open_account(100)
    a = f"/api/accounts/{account['id']}"
    other = open_account(0, holder="Bob")
    answers = {
        "list": teller.get("/api/accounts/"),
        "open": post(teller, "/api/accounts/", {"holder_name": "New"}),
        "read": teller.get(f"{a}/"),
        "read a past version": teller.get(f"{a}/", {"as_of_version": 1}),
        "not modified": teller.get(f"{a}/", headers={"If-None-Match": '"1"'}),
        "command": post(teller, f"{a}/deposit/", {"amount_cents": 5}),
        "replay": [
            post(teller, f"{a}/deposit/", {"amount_cents": 1}, **{"Idempotency-Key": "c"})
            for _ in range(2)
        ][1],
        "transfer": post(
            teller,
            "/api/transfers/",
            {"from_account": account["id"], "to_account": other["id"], "amount_cents": 1},
        ),
        "events": teller.get(f"{a}/events/"),
        "transactions": teller.get(f"{a}/transactions/"),
        "400": teller.get(f"{a}/", {"as_of_version": "x"}),
        "400 header": teller.get(f"{a}/", headers={"If-None-Match": "03"}),
        "401": anonymous.get(f"{a}/"),
        "403": post(auditor, f"{a}/deposit/", {"amount_cents": 1}),
        "404 account": teller.get(f"/api/accounts/{uuid.uuid4()}/"),
        "404 path": teller.get("/api/accounts/not-a-uuid/"),
        "405": teller.put(f"{a}/", {}, format="json"),
        "406": teller.get(f"{a}/", headers={"Accept": "text/html"}),
        "412": post(teller, f"{a}/deposit/", {"amount_cents": 1}, **{"If-Match": '"1"'}),
        "415": teller.generic("POST", f"{a}/deposit/", b"x", content_type="text/plain"),
        "422": post(teller, f"{a}/withdraw/", {"amount_cents": 10**9}),
    }
    from bank.services import repository

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(repository, "load_one", down)
        answers["503"] = teller.get(f"{a}/")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(repository, "load_one", broken)
        answers["500"] = teller.get(f"{a}/")

    expected = {
        "list": 200,
        "open": 201,
        "read": 200,
        "read a past version": 200,
        "not modified": 304,
        "command": 200,
        "replay": 200,
        "transfer": 200,
        "events": 200,
        "transactions": 200,
        "400": 400,
        "400 header": 400,
        "401": 401,
        "403": 403,
        "404 account": 404,
        "404 path": 404,
        "405": 405,
        "406": 406,
        "412": 412,
        "415": 415,
        "422": 422,
        "503": 503,
        "500": 500,
    }
    assert {name: r.status_code for name, r in answers.items()} == expected
    for response in answers.values():
        assert_not_stored(response)
    assert answers["replay"]["Idempotency-Replayed"] == "true"


def test_the_throttled_answer_is_no_store_too(teller, open_account, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import UserRateThrottle

    account = open_account()
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "1/minute"})
    cache.clear()
    teller.get(f"/api/accounts/{account['id']}/")
    response = teller.get(f"/api/accounts/{account['id']}/")
    assert_problem(response, 429, "throttled")
    assert_not_stored(response)


def test_django_level_problems_are_no_store():
    request = RequestFactory().get("/api/nothing/")
    for response in (problems.handler404(request), problems.handler500(request)):
        assert response["Content-Type"] == PROBLEM
        assert_not_stored(response)


def test_no_store_keeps_the_vary_values_other_layers_set():
    response = HttpResponse()
    response["Vary"] = "Accept-Encoding, Cookie"
    no_store(response)
    assert vary_of(response) == ["accept-encoding", "cookie", "authorization"]
    assert response["Cache-Control"] == "no-store"


def test_a_session_answer_varies_on_cookie_once(client, teller_user, open_account):
    account = open_account()
    client.force_login(teller_user)
    response = client.get(f"/api/accounts/{account['id']}/")
    assert response.status_code == 200
    assert_not_stored(response)


# --- 2. conditional requests ------------------------------------------------------------


def _account_at_version_2(teller, open_account):
    account = open_account(100)
    post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 50})
    return f"/api/accounts/{account['id']}/"


@pytest.mark.parametrize(
    "if_none_match",
    ['"2"', 'W/"2"', '"1", "2"', '"9",W/"2"', "*", ' "2" ', '"1", , "2"'],
)
def test_if_none_match_with_the_current_etag_is_304_with_the_etag_and_no_body(
    teller, open_account, if_none_match
):
    url = _account_at_version_2(teller, open_account)
    response = teller.get(url, headers={"If-None-Match": if_none_match})
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == '"2"'
    assert_not_stored(response)


@pytest.mark.parametrize("if_none_match", ['"1"', 'W/"1"', '"02"', '"1", "3"', '""'])
def test_if_none_match_with_another_etag_is_a_200_with_the_state(
    teller, open_account, if_none_match
):
    url = _account_at_version_2(teller, open_account)
    response = teller.get(url, headers={"If-None-Match": if_none_match})
    assert response.status_code == 200
    assert response.json()["version"] == 2 and response["ETag"] == '"2"'


def test_if_none_match_on_a_past_state_compares_with_that_states_etag(teller, open_account):
    url = _account_at_version_2(teller, open_account)
    past = teller.get(url, {"as_of_version": 1}, headers={"If-None-Match": '"1"'})
    assert past.status_code == 304 and past["ETag"] == '"1"' and past.content == b""
    newer = teller.get(url, {"as_of_version": 1}, headers={"If-None-Match": '"2"'})
    assert newer.status_code == 200 and newer["ETag"] == '"1"'
    assert newer.json()["balance_cents"] == 100
    by_time = teller.get(url, {"as_of": "9999-01-01T00:00:00Z"})
    assert by_time["ETag"] == '"2"'
    assert (
        teller.get(
            url, {"as_of": "9999-01-01T00:00:00Z"}, headers={"If-None-Match": '"2"'}
        ).status_code
        == 304
    )


def test_if_match_on_a_read_is_evaluated_strongly(teller, open_account):
    url = _account_at_version_2(teller, open_account)
    assert teller.get(url, headers={"If-Match": '"2"'}).status_code == 200
    assert teller.get(url, headers={"If-Match": "*"}).status_code == 200
    body = assert_problem(teller.get(url, headers={"If-Match": 'W/"2"'}), 412, "version_mismatch")
    assert body["current_version"] == 2 and "expected_version" not in body
    assert_problem(teller.get(url, headers={"If-Match": '"1"'}), 412, "version_mismatch")


def test_conditions_on_an_unknown_account_are_ignored_it_is_a_404(teller):
    missing = f"/api/accounts/{uuid.uuid4()}"
    for headers in ({"If-None-Match": "*"}, {"If-Match": "*"}, {"If-Match": '"1", "2"'}):
        assert_problem(teller.get(f"{missing}/", headers=headers), 404, "account_not_found")
        assert_problem(
            post(teller, f"{missing}/deposit/", {"amount_cents": 1}, **headers),
            404,
            "account_not_found",
        )


MALFORMED = [
    '"3',  # unbalanced
    "04",  # a number that is not a version as we write it, unquoted
    "abc",  # unquoted
    "W/3",  # weak, unquoted
    'w/"3"',  # the weak prefix is case-sensitive
    '*, "3"',  # * must stand alone
    '"3" "4"',  # no comma
    '"3",x',
    '"a b"',  # a space is not an etagc
    "",  # names nothing
    " , ",
]


@pytest.mark.parametrize("value", MALFORMED)
@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
def test_a_malformed_precondition_header_is_a_400_that_names_it_and_writes_nothing(
    teller, open_account, header, value
):
    account = open_account(100)
    url = f"/api/accounts/{account['id']}/"
    before = Event.objects.count()
    for response in (
        teller.get(url, headers={header: value}),
        post(teller, f"{url}deposit/", {"amount_cents": 1}, **{header: value}),
    ):
        body = assert_problem(response, 400, conditional.INVALID_PRECONDITION_HEADER)
        assert header in body["detail"] and list(body["errors"]) == [header]
    assert Event.objects.count() == before


def test_a_bare_version_is_read_as_its_etag_in_both_headers(teller, open_account):
    url = _account_at_version_2(teller, open_account)
    assert teller.get(url, headers={"If-None-Match": "2"}).status_code == 304
    assert teller.get(url, headers={"If-None-Match": "1"}).status_code == 200
    response = post(teller, f"{url}deposit/", {"amount_cents": 1}, **{"If-Match": "2"})
    assert response.status_code == 200
    for value in ("02", "2a", "-2"):
        assert_problem(
            teller.get(url, headers={"If-Match": value}), 400, "invalid_precondition_header"
        )


def test_the_parser_follows_the_grammar():
    parse = conditional.parse
    assert parse("If-Match", "*").any
    assert parse("If-Match", ' W/"a", "b" ,"c"').tags == (
        conditional.EntityTag("a", weak=True),
        conditional.EntityTag("b"),
        conditional.EntityTag("c"),
    )
    # obs-text (bytes 0x80-0xFF, as Django decodes them) is allowed inside a tag.
    assert parse("If-Match", '"caf\xe9"').tags == (conditional.EntityTag("caf\xe9"),)
    assert parse("If-Match", '""').tags == (conditional.EntityTag(""),)
    condition = parse("If-None-Match", 'W/"2"')
    assert condition.weak_match(2) and not condition.strong_match(2)
    assert parse("If-Match", '"2"').single_version() == 2
    assert parse("If-Match", '"02"').single_version() is None
    assert parse("If-Match", "7").single_version() == 7


@pytest.mark.parametrize(
    "if_match, status",
    [
        ('"2"', 200),
        ("2", 200),
        ("*", 200),
        ('"1", "2"', 200),
        ('"1", "3"', 412),
        ('W/"2"', 412),
        ('"02"', 412),
        ('"abc"', 412),
    ],
)
def test_if_match_on_a_command_runs_it_only_when_a_strong_tag_matches(
    teller, open_account, if_match, status
):
    url = _account_at_version_2(teller, open_account)
    before = Event.objects.count()
    response = post(teller, f"{url}withdraw/", {"amount_cents": 5}, **{"If-Match": if_match})
    assert response.status_code == status, response.content
    if status == 200:
        assert response["ETag"] == '"3"' and Event.objects.count() == before + 1
    else:
        body = assert_problem(response, 412, "version_mismatch")
        assert body["current_version"] == 2
        assert Event.objects.count() == before


@pytest.mark.parametrize(
    "if_none_match, status",
    [("*", 412), ('"2"', 412), ('W/"2"', 412), ('"1"', 200), ('"1", W/"3"', 200)],
)
def test_if_none_match_on_a_command_runs_it_only_when_no_tag_matches(
    teller, open_account, if_none_match, status
):
    url = _account_at_version_2(teller, open_account)
    before = Event.objects.count()
    response = post(
        teller, f"{url}deposit/", {"amount_cents": 5}, **{"If-None-Match": if_none_match}
    )
    assert response.status_code == status, response.content
    assert Event.objects.count() == before + (1 if status == 200 else 0)
    if status == 412:
        assert assert_problem(response, 412, "version_mismatch")["current_version"] == 2


def test_a_condition_is_evaluated_again_when_the_account_moved_before_the_write(
    teller, open_account, monkeypatch
):
    """The check and the append are not one step: the append is pinned to the checked version."""
    url = _account_at_version_2(teller, open_account)
    account_id = uuid.UUID(url.split("/")[3])
    stale = iter([1])  # the first look sees version 1, as if a deposit landed right after
    real = conditional.selectors.account_version
    monkeypatch.setattr(
        conditional.selectors, "account_version", lambda i: next(stale, None) or real(i)
    )
    response = post(teller, f"{url}deposit/", {"amount_cents": 5}, **{"If-Match": '"1", "2"'})
    assert response.status_code == 200 and response.json()["version"] == 3
    assert svc.get_account(account_id).balance_cents == 155

    stale = iter([3])
    before = Event.objects.count()
    response = post(teller, f"{url}deposit/", {"amount_cents": 5}, **{"If-Match": '"3", "9"'})
    assert response.status_code == 200  # at 3 when checked, and when written
    post(teller, f"{url}deposit/", {"amount_cents": 1})  # moves it to 5
    stale = iter([4])
    response = post(teller, f"{url}deposit/", {"amount_cents": 5}, **{"If-Match": '"4", "9"'})
    assert_problem(response, 412, "version_mismatch")
    assert Event.objects.count() == before + 2


def test_an_idempotent_retry_with_if_match_replays_the_first_answer(teller, open_account):
    url = _account_at_version_2(teller, open_account)
    headers = {"If-Match": '"2"', "Idempotency-Key": "once"}
    first = post(teller, f"{url}deposit/", {"amount_cents": 5}, **headers)
    again = post(teller, f"{url}deposit/", {"amount_cents": 5}, **headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again["ETag"] == '"3"'
    assert again["Idempotency-Replayed"] == "true"
    other = post(
        teller, f"{url}deposit/", {"amount_cents": 5}, **headers, **{"If-None-Match": '"1"'}
    )
    assert_problem(other, 422, "idempotency_key_reused")


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
def test_open_and_transfer_refuse_preconditions_and_write_nothing(teller, open_account, header):
    a, b = open_account(100), open_account(0, holder="Bob")
    before = Event.objects.count()
    for value in ("*", '"1"'):
        opened = post(teller, "/api/accounts/", {"holder_name": "X"}, **{header: value})
        body = assert_problem(opened, 400, conditional.PRECONDITION_NOT_SUPPORTED)
        assert header in body["detail"] and "Idempotency-Key" in body["detail"]
        moved = post(
            teller,
            "/api/transfers/",
            {"from_account": a["id"], "to_account": b["id"], "amount_cents": 1},
            **{header: value},
        )
        assert_problem(moved, 400, conditional.PRECONDITION_NOT_SUPPORTED)
    assert Event.objects.count() == before


# --- 3. pagination ----------------------------------------------------------------------


@pytest.fixture
def three_lists(teller, open_account):
    """An account with 5 events and 5 transactions, among 5 accounts."""
    account = open_account(100)
    for _ in range(4):
        post(teller, f"/api/accounts/{account['id']}/deposit/", {"amount_cents": 1})
    for i in range(4):
        open_account(0, holder=f"Other {i}")
    runner.catch_up()
    base = f"/api/accounts/{account['id']}"
    return {
        "accounts": "/api/accounts/",
        "events": f"{base}/events/",
        "transactions": f"{base}/transactions/",
    }


@pytest.mark.parametrize("name", ["accounts", "events", "transactions"])
def test_every_list_answers_a_page_past_the_end_alike(teller, three_lists, name):
    url = three_lists[name]
    last = teller.get(url, {"page": 3, "page_size": 2})
    assert last.status_code == 200
    assert (last.json()["count"], len(last.json()["results"]), last.json()["next"]) == (5, 1, None)
    past = teller.get(url, {"page": 9, "page_size": 2})
    assert past.status_code == 200
    body = past.json()
    assert body["count"] == 5 and body["results"] == [] and body["next"] is None
    assert body["previous"].endswith(f"{url}?page=3&page_size=2")
    assert_not_stored(past)
    huge = teller.get(url, {"page": 10**30})
    assert huge.status_code == 200 and huge.json()["results"] == []
    for bad in ({"page": 0}, {"page": "x"}, {"page_size": 0}, {"page_size": 101}):
        assert_problem(teller.get(url, bad), 400, "invalid_input")


@pytest.mark.parametrize("name", ["accounts", "events", "transactions"])
def test_every_list_links_its_pages_alike(teller, three_lists, name):
    url = three_lists[name]
    first = teller.get(url, {"page_size": 2}).json()
    assert first["previous"] is None and first["next"].endswith(f"{url}?page=2&page_size=2")
    middle = teller.get(url, {"page": 2, "page_size": 2}).json()
    assert middle["previous"].endswith("?page=1&page_size=2")
    assert middle["next"].endswith("?page=3&page_size=2")


def test_an_empty_list_past_its_end_links_back_to_page_one(teller):
    body = teller.get("/api/accounts/", {"page": 4, "status": "closed"}).json()
    assert (body["count"], body["results"], body["next"]) == (0, [], None)
    assert body["previous"].endswith("/api/accounts/?page=1&status=closed")


_HEADER_TEXT = st.text(
    alphabet=st.sampled_from(list(' \t,*"W/w0123ab\x7f\x80\xe9\x00')), max_size=12
)


@settings(max_examples=400, deadline=None)
@given(
    value=_HEADER_TEXT
    | st.lists(st.sampled_from(['"1"', 'W/"2"', '""', "*", " ", ",", "12"])).map("".join)
)
def test_the_documented_pattern_accepts_exactly_what_the_parser_accepts(value):
    """The OpenAPI document's pattern and the parser agree (schemathesis relies on it)."""
    try:
        conditional.parse("If-Match", value)
        parsed = True
    except conditional.InvalidPreconditionHeader:
        parsed = False
    assert (re.fullmatch(conditional.CONDITION_PATTERN, value) is not None) == parsed, value


def test_a_replayed_open_carries_its_location_and_etag(teller):
    first = post(teller, "/api/accounts/", {"holder_name": "Once"}, **{"Idempotency-Key": "o"})
    again = post(teller, "/api/accounts/", {"holder_name": "Once"}, **{"Idempotency-Key": "o"})
    assert first.status_code == again.status_code == 201
    assert again["Idempotency-Replayed"] == "true"
    assert again["Location"] == first["Location"] == f"/api/accounts/{first.json()['id']}/"
    assert again["ETag"] == first["ETag"] == '"1"'
