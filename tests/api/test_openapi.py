"""The OpenAPI document says what the server does (issue 19): headers, problems, names, links."""

from __future__ import annotations

import io
import json
import os
import re

import jsonschema
import pytest
from django.core.management import call_command

from bank.api.problems import PROBLEM_CODES
from bank.domain import EVENT_TYPES
from bank.domain.approval import APPROVAL_EVENT_TYPES
from bank.domain.approval import KINDS as APPROVAL_KINDS
from projections.models import TransactionHistory

pytestmark = pytest.mark.django_db

STATUSES = ["active", "frozen", "closed"]
COMMANDS = ["deposit", "withdraw", "freeze", "unfreeze", "close"]


@pytest.fixture(scope="module")
def doc():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    return json.loads(out.getvalue())


def operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def operation(doc, operation_id):
    (found,) = [o for _, _, o in operations(doc) if o["operationId"] == operation_id]
    return found


def resolve(doc, schema):
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_document_validates_without_a_warning():
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)


def test_components_have_readable_names_and_one_enum_each(doc):
    names = set(doc["components"]["schemas"])
    assert {
        "Account",
        "AccountPage",
        "AccountStatus",
        "Currency",
        "Problem",
        "ProblemCode",
        "OpenAccountRequest",
        "DepositRequest",
        "WithdrawRequest",
        "FreezeRequest",
        "UnfreezeRequest",
        "CloseRequest",
        "TransferRequest",
        "Transfer",
        "Event",
        "EventPage",
        "Transaction",
        "TransactionPage",
    } <= names
    assert not [n for n in names if n.startswith("_") or re.search(r"Output|Input|Enum$", n)]
    enums = [n for n, s in doc["components"]["schemas"].items() if s.get("enum") == STATUSES]
    assert enums == ["AccountStatus"]
    text = json.dumps(doc)
    assert text.count('"enum": ["active", "frozen", "closed"]') == 1
    assert "EUR" in doc["components"]["schemas"]["Currency"]["enum"]
    assert doc["components"]["schemas"]["Account"]["properties"]["status"] == {
        "$ref": "#/components/schemas/AccountStatus"
    }


def test_every_operation_has_a_summary_and_a_declared_tag(doc):
    declared = [t["name"] for t in doc["tags"]]
    assert declared == ["accounts", "commands", "transfers", "approvals", "history"]
    assert all(t["description"] for t in doc["tags"])
    for path, method, op in operations(doc):
        assert op.get("summary"), (path, method)
        assert op["tags"] and set(op["tags"]) <= set(declared), (path, method)
    approvals = {
        o["operationId"] for p, _, o in operations(doc) if p.startswith("/api/approvals/")
    }
    assert approvals == {
        "approvals_list",
        "approvals_retrieve",
        "approvals_approve",
        "approvals_reject",
    }
    for operation_id in approvals:
        assert operation(doc, operation_id)["tags"] == ["approvals"]
    # A reversal is a command on the account (it may wait for approval like the others).
    assert operation(doc, "accounts_reverse")["tags"] == ["commands"]


def test_every_answer_documents_the_caching_headers_and_the_problems(doc):
    for path, method, op in operations(doc):
        responses = op["responses"]
        for status in ("406", "500", "default"):
            assert status in responses, (path, method, status)
        assert ("415" in responses) == (method == "post"), (path, method)
        for status, response in responses.items():
            headers = response["headers"]
            assert headers["Cache-Control"]["schema"]["enum"] == ["no-store"]
            assert headers["Cache-Control"]["required"] and headers["Vary"]["required"]
            if status == "401":
                assert headers["WWW-Authenticate"]["required"]
            if status in ("429", "503"):
                assert headers["Retry-After"]["schema"]["type"] == "integer"
            if not status.startswith(("2", "3")):
                assert set(response["content"]) == {"application/problem+json"}
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}


def test_account_answers_document_etag_location_and_replays(doc):
    opened = operation(doc, "accounts_open")["responses"]["201"]["headers"]
    assert {"ETag", "Location", "Idempotency-Replayed"} <= set(opened)
    read = operation(doc, "accounts_retrieve")["responses"]
    assert read["200"]["headers"]["ETag"]["required"]
    assert read["304"]["headers"]["ETag"]["required"] and "content" not in read["304"]
    assert "412" in read
    for name in COMMANDS:
        ok = operation(doc, f"accounts_{name}")["responses"]["200"]["headers"]
        assert {"ETag", "Idempotency-Replayed"} <= set(ok)
    transfer = operation(doc, "transfers_create")["responses"]["200"]["headers"]
    assert "Idempotency-Replayed" in transfer and "ETag" not in transfer


def test_request_headers_are_documented_where_they_are_read(doc):
    def headers(operation_id):
        return {
            p["name"]
            for p in operation(doc, operation_id).get("parameters", [])
            if p["in"] == "header"
        }

    for name in COMMANDS:
        assert headers(f"accounts_{name}") == {
            "If-Match",
            "If-None-Match",
            "Idempotency-Key",
            "X-Correlation-ID",
        }
    assert headers("accounts_open") == {"Idempotency-Key", "X-Correlation-ID"}
    assert headers("transfers_create") == {"Idempotency-Key", "X-Correlation-ID"}
    assert headers("accounts_retrieve") == {"If-Match", "If-None-Match"}


def test_the_problem_lists_its_codes_and_types_its_extras(doc):
    problem = doc["components"]["schemas"]["Problem"]
    code = problem["properties"]["code"]
    assert code["anyOf"] == [
        {"$ref": "#/components/schemas/ProblemCode"},
        {"type": "string"},
    ]
    known = doc["components"]["schemas"]["ProblemCode"]["enum"]
    assert set(known) == set(PROBLEM_CODES)
    for needed in (
        "invalid_precondition_header",
        "precondition_not_supported",
        "version_mismatch",
        "insufficient_funds",
        "internal_error",
        "not_acceptable",
        "method_not_allowed",
    ):
        assert needed in known
    props = problem["properties"]
    assert props["available_cents"]["type"] == "integer"
    assert props["current_version"]["type"] == "integer"
    assert props["reference"]["type"] == "string"
    assert props["errors"]["additionalProperties"]["items"]["type"] == "string"
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}


@pytest.mark.parametrize(
    ("extra", "schema", "codes"),
    [
        ("approval_id", {"type": "string", "format": "uuid"}, ["duplicate_request"]),
        (
            "approval_status",
            {"allOf": [{"$ref": "#/components/schemas/ApprovalStatus"}]},
            ["approval_not_pending"],
        ),
        ("expires_at", {"type": "string", "format": "date-time"}, ["approval_expired"]),
        ("event_id", {"type": "string", "format": "uuid"}, ["posting_not_found"]),
        ("version", {"type": "integer"}, ["already_reversed", "not_reversible"]),
        ("reversed_by_version", {"type": "integer"}, ["already_reversed"]),
        (
            "event_type",
            {"anyOf": [{"$ref": "#/components/schemas/EventType"}, {"type": "string"}]},
            ["not_reversible", "unreadable_stream"],
        ),
        ("event_version", {"type": "integer"}, ["unreadable_stream"]),
    ],
)
def test_the_problem_types_the_extras_of_the_maker_checker_and_reversal_problems(
    doc, extra, schema, codes
):
    documented = doc["components"]["schemas"]["Problem"]["properties"][extra]
    assert {k: v for k, v in documented.items() if k != "description"} == schema
    for code in codes:
        assert code in PROBLEM_CODES and code in documented["description"], (extra, code)


def test_a_202_links_its_request_to_where_it_is_polled(doc):
    waiting = [op["operationId"] for _, _, op in operations(doc) if "202" in op["responses"]]
    assert set(waiting) == {
        "accounts_withdraw",
        "accounts_freeze",
        "accounts_close",
        "accounts_reverse",
        "transfers_create",
    }
    for operation_id in waiting:
        accepted = operation(doc, operation_id)["responses"]["202"]
        assert accepted["links"] == {
            "GetApproval": {
                "operationId": "approvals_retrieve",
                "parameters": {"approval_id": "$response.body#/id"},
                "description": accepted["links"]["GetApproval"]["description"],
            }
        }
        assert accepted["headers"]["Location"]["required"]
    (approval_id,) = [
        p for p in operation(doc, "approvals_retrieve")["parameters"] if p["in"] == "path"
    ]
    assert approval_id["name"] == "approval_id"


def test_the_approval_kind_filter_takes_only_known_kinds(doc):
    """Answers may hold a newer kind (open enum); a filter by an unknown kind is a 400."""
    (kind,) = [p for p in operation(doc, "approvals_list")["parameters"] if p["name"] == "kind"]
    assert kind["schema"] == {"$ref": "#/components/schemas/ApprovalKind"}


def test_links_lead_from_an_account_to_its_reads_and_commands(doc):
    ids = {o["operationId"] for _, _, o in operations(doc)}
    opened = operation(doc, "accounts_open")["responses"]["201"]["links"]
    assert opened["GetAccount"] == {
        "operationId": "accounts_retrieve",
        "parameters": {"account_id": "$response.body#/id"},
        "description": opened["GetAccount"]["description"],
    }
    for name in COMMANDS:
        link = opened[f"{name.capitalize()}Account"]
        assert link["operationId"] == f"accounts_{name}"
        assert link["parameters"] == {
            "account_id": "$response.body#/id",
            "If-Match": "$response.header.ETag",
        }
    for _, _, op in operations(doc):
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids
    deposited = operation(doc, "accounts_deposit")["responses"]["200"]["links"]
    assert "WithdrawAccount" in deposited
    moved = operation(doc, "transfers_create")["responses"]["200"]["links"]
    assert moved["GetAccountOfTarget"]["parameters"] == {
        "account_id": "$response.body#/to_account/id"
    }


@pytest.mark.parametrize("text", ["", "rent", "Zoë"])
def test_blank_text_validates_against_the_schema(doc, text):
    """The `oneOf` drf-spectacular made for blank text refused "" (both branches matched)."""
    for name in ("DepositRequest", "WithdrawRequest", "TransferRequest"):
        schema = doc["components"]["schemas"][name]["properties"]["description"]
        assert "oneOf" not in schema
        jsonschema.validate(text, schema)
    (search,) = [p for p in operation(doc, "accounts_list")["parameters"] if p["name"] == "search"]
    jsonschema.validate(text, search["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("a\x07", search["schema"])


def test_token_authentication_is_described_as_the_header_it_is(doc):
    schemes = doc["components"]["securitySchemes"]
    token = schemes["tokenAuth"]
    assert (token["type"], token["in"], token["name"]) == ("apiKey", "header", "Authorization")
    assert "Authorization: Token <key>" in token["description"]
    assert "Bearer <key>" in token["description"]
    # What a generated client sends by default (openapi-python-client, openapi-generator).
    bearer = schemes["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert "Authorization: Bearer <key>" in bearer["description"]
    for path, method, op in operations(doc):
        assert {"tokenAuth", "bearerAuth"} <= {n for s in op["security"] for n in s}, (
            path,
            method,
        )


STRICT_SERIALIZER_TEXT = (
    "A serializer for a JSON object body that refuses fields it does not know."
)


def test_each_request_model_has_its_own_description(doc):
    """No request model inherits StrictSerializer's docstring; the known ones say what they are."""
    requests = {
        name: schema.get("description", "")
        for name, schema in doc["components"]["schemas"].items()
        if name.endswith("Request")
    }
    described = [text for text in requests.values() if text]
    assert len(described) == len(set(described)), requests
    assert not [n for n, text in requests.items() if "refuses fields it does not know" in text]
    assert STRICT_SERIALIZER_TEXT not in json.dumps(doc)
    for name in (
        "OpenAccountRequest",
        "DepositRequest",
        "WithdrawRequest",
        "FreezeRequest",
        "UnfreezeRequest",
        "CloseRequest",
        "TransferRequest",
    ):
        assert requests[name], name


def test_the_document_names_its_licence(doc):
    assert doc["info"]["license"] == {"name": "Proprietary"}


@pytest.mark.parametrize(
    ("model", "field", "component", "values"),
    [
        (
            "Transaction",
            "kind",
            "TransactionKind",
            ["opening", "deposit", "withdrawal", "transfer_in", "transfer_out", "reversal"],
        ),
        ("Event", "event_type", "EventType", sorted(EVENT_TYPES)),
        ("Approval", "kind", "ApprovalKind", list(APPROVAL_KINDS)),
    ],
)
def test_kinds_event_types_and_approval_kinds_are_enums_open_to_newer_values(
    doc, model, field, component, values
):
    """Like ProblemCode: the known values, and any string (a newer server's value)."""
    schemas = doc["components"]["schemas"]
    schema = schemas[model]["properties"][field]
    assert schema["anyOf"] == [
        {"$ref": f"#/components/schemas/{component}"},
        {"type": "string"},
    ]
    assert schema["description"]
    assert schemas[component]["enum"] == values
    assert field in schemas[model]["required"]
    for value in [*values, "AddedLater"]:
        jsonschema.validate(value, {**schema, "components": doc["components"]})


def test_event_types_are_the_account_streams_only(doc):
    known = set(doc["components"]["schemas"]["EventType"]["enum"])
    assert "PostingReversed" in known
    assert not known & set(APPROVAL_EVENT_TYPES)


def test_every_kind_the_projection_writes_is_in_the_enum(doc):
    known = doc["components"]["schemas"]["TransactionKind"]["enum"]
    assert {kind for kind, _ in TransactionHistory.KINDS} <= set(known)


def test_pages_say_what_a_page_past_the_end_is(doc):
    for operation_id in ("accounts_list", "accounts_events", "accounts_transactions"):
        op = operation(doc, operation_id)
        assert "page past the end is a 200" in op["description"]
        assert "404" not in op["responses"] or operation_id != "accounts_list"
        page = resolve(doc, op["responses"]["200"]["content"]["application/json"]["schema"])
        assert set(page["properties"]) == {"count", "next", "previous", "results"}
