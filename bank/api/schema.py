"""The OpenAPI document: say in it what the server does, headers and problems included.

- Read your writes: ``X-Event-Position`` on command answers, ``min_position`` /
  ``X-Min-Position`` on the read-model operations with ``X-Projection-Position`` on their
  answers, and their 400 and 503 problems (``READ_MODEL_PROBLEMS``).
- ``ApiSchema`` (the views' schema class) adds what every answer has: the caching headers,
  ``WWW-Authenticate`` on 401, ``Retry-After`` on 429 and 503, and OpenAPI links from an
  account answer to the account's reads and commands (its ``id`` to their path, its
  ``ETag`` to their ``If-Match``), from a transfer to its two accounts and to a transfer
  back, from a page of accounts to its first account and to a transfer between its
  first two (the links Schemathesis' stateful test follows), and from a command's 202 (a
  maker-checker request) to the request (``approvals_retrieve``).
- ``problems(...)`` lists an operation's problem answers, with 406, 500 and ``default``.
- ``Problem`` documents the problem details with their known codes and typed extras.
- Text fields that may be blank are one string schema whose pattern admits "" (not a
  ``oneOf`` whose two branches would both match "", which no validator accepts).
- Token authentication is described as the header it is: ``Authorization: Token <key>``
  (``tokenAuth``), or the same key as ``Authorization: Bearer <key>`` (``bearerAuth``, an
  ``http`` ``bearer`` scheme: what a generated client sends by default).
- Open lists of values (``ProblemCode``, ``TransactionKind``, ``EventType``,
  ``ApprovalKind`` in answers) are ``anyOf: [enum, string]``: a value newer than a
  generated client does not break it.
- Each request body has a description of its own (``REQUEST_BODIES``), never one inherited
  from a base serializer.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from .authentication import BearerTokenAuthentication
from .caching import CACHE_CONTROL, VARY
from .conditional import CONDITION_PATTERN, IF_MATCH, IF_NONE_MATCH
from .consistency import (
    EVENT_POSITION,
    MAX_POSITION,
    MIN_POSITION_HEADER,
    MIN_POSITION_QUERY,
    POSITION_PATTERN,
    PROJECTION_POSITION,
)
from .fields import (
    ACCOUNT_EVENT_TYPES,
    APPROVAL_KINDS,
    TRANSACTION_KINDS,
    AccountStatusField,
    ApprovalKindField,
    ApprovalStatusField,
    EventTypeField,
    TransactionKindField,
)
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .problems import PROBLEM_CODES, PROBLEM_CONTENT_TYPE

# Top-level tags, in the order the docs show them (SPECTACULAR_SETTINGS["TAGS"]).
ACCOUNTS, COMMANDS, TRANSFERS = "accounts", "commands", "transfers"
APPROVALS, HISTORY = "approvals", "history"
TAGS = [
    {"name": ACCOUNTS, "description": "Open accounts, list them, read one now or in the past."},
    {
        "name": COMMANDS,
        "description": "Change one account: each answers its new state and ETag; "
        "If-Match pins the version, Idempotency-Key makes a retry safe.",
    },
    {"name": TRANSFERS, "description": "Move money between two accounts, atomically."},
    {
        "name": APPROVALS,
        "description": "Maker-checker: the requests that commands over the approval rule "
        "became (202), read by every role, approved or rejected by an approver who did not "
        "ask. A reversal is a command (tagged commands).",
    },
    {
        "name": HISTORY,
        "description": "An account's events (personal fields decrypted for the caller, "
        "[erased] after an erasure) and its transaction history.",
    },
]


# --- problems -------------------------------------------------------------------------


class ProblemCodeField(serializers.CharField):
    """The problem's ``code``: one of ``ProblemCode``, or a newer one (see the extension)."""


def open_enum(
    auto_schema: Any, name: str, values: Any, description: str, field_description: str
) -> dict[str, Any]:
    """``anyOf: [<name>, string]``: the known values as a component, and room for new ones.

    Values are added over time (never renamed); a closed enum would make a generated client
    fail to read an answer holding a value newer than the client.
    """
    component = ResolvedComponent(
        name=name,
        type=ResolvedComponent.SCHEMA,
        object=name,
        schema={"type": "string", "enum": list(values), "description": description},
    )
    auto_schema.registry.register_on_missing(component)
    return {"anyOf": [component.ref, {"type": "string"}], "description": field_description}


class ProblemCodeFieldExtension(OpenApiSerializerFieldExtension):
    """The problem's ``code``: ``anyOf: [ProblemCode, string]``."""

    target_class = ProblemCodeField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return open_enum(
            auto_schema,
            "ProblemCode",
            PROBLEM_CODES,
            "the problem codes this version answers",
            "stable machine-readable error code (new codes may be added)",
        )


class TransactionKindFieldExtension(OpenApiSerializerFieldExtension):
    """A transaction's ``kind``: ``anyOf: [TransactionKind, string]``."""

    target_class = TransactionKindField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return open_enum(
            auto_schema,
            "TransactionKind",
            TRANSACTION_KINDS,
            "the kinds of money movement this version records",
            "the kind of money movement: opening (the opening balance), deposit, withdrawal, "
            "transfer_in, transfer_out, reversal (undoes an earlier posting); new kinds may "
            "be added",
        )


class EventTypeFieldExtension(OpenApiSerializerFieldExtension):
    """An account event's ``event_type``: ``anyOf: [EventType, string]``."""

    target_class = EventTypeField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        return open_enum(
            auto_schema,
            "EventType",
            ACCOUNT_EVENT_TYPES,
            "the account event types this version records",
            "the event's type, which says what data holds; new types may be added",
        )


class ApprovalKindFieldExtension(OpenApiSerializerFieldExtension):
    """A request's ``kind``: ``anyOf: [ApprovalKind, string]`` in answers; as a filter, the
    kinds this version knows (another is a 400, so the document does not invite it)."""

    target_class = ApprovalKindField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        schema = open_enum(
            auto_schema,
            "ApprovalKind",
            APPROVAL_KINDS,
            "the commands that may wait for a second person's approval in this version",
            "the command waiting for approval (new kinds may be added)",
        )
        if direction == "request":
            return schema["anyOf"][0]
        return schema


class ProblemSerializer(serializers.Serializer):
    """An error as the API answers it: RFC 9457 problem details, ``application/problem+json``.

    The members after ``code`` are present only on the problems that name them.
    """

    type = serializers.CharField(help_text="urn:ledgerline:problem:<code>")
    title = serializers.CharField()
    status = serializers.IntegerField(help_text="the HTTP status code")
    detail = serializers.CharField(help_text="what happened, with the values involved")
    code = ProblemCodeField()
    # The members' names are the problem document's (RFC 9457 extensions), not fields of ours.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="per field or header, what is wrong with it (invalid_input, "
        "invalid_precondition_header, min_position_beyond_head)",
    )
    available_cents = serializers.IntegerField(required=False, help_text="insufficient_funds")
    requested_cents = serializers.IntegerField(required=False, help_text="insufficient_funds")
    balance_cents = serializers.IntegerField(required=False, help_text="balance_not_zero")
    amount = serializers.IntegerField(
        required=False, allow_null=True, help_text="invalid_amount: the amount refused"
    )
    account_status = AccountStatusField(
        required=False, help_text="account_not_active, invalid_state_transition"
    )
    field = serializers.CharField(
        required=False, help_text="invalid_input from a business rule: the field refused"
    )
    expected_version = serializers.IntegerField(
        required=False, help_text="version_mismatch: the version If-Match named, when one"
    )
    current_version = serializers.IntegerField(
        required=False, help_text="version_mismatch: the account's version"
    )
    reference = serializers.CharField(
        required=False, help_text="internal_error: quote it to support"
    )
    min_position = serializers.IntegerField(
        required=False,
        help_text="projection_lagging, min_position_beyond_head: the position asked for",
    )
    projection = serializers.CharField(
        required=False, help_text="projection_lagging: the projection that is behind"
    )
    projection_position = serializers.IntegerField(
        required=False, help_text="projection_lagging: the position it had reached"
    )
    head_position = serializers.IntegerField(
        required=False, help_text="min_position_beyond_head: the event store's head"
    )
    approval_id = serializers.UUIDField(
        required=False,
        help_text="duplicate_request: the request that waits already (approve or reject it, "
        "or poll GET /api/approvals/{id}/, instead of asking again)",
    )
    approval_status = ApprovalStatusField(
        required=False,
        help_text="approval_not_pending: what the request became (approved, rejected, expired)",
    )
    expires_at = serializers.DateTimeField(
        required=False, help_text="approval_expired: when the request expired"
    )
    event_id = serializers.UUIDField(
        required=False, help_text="posting_not_found: the event id asked for"
    )
    version = serializers.IntegerField(
        required=False,
        help_text="already_reversed, not_reversible: the posting's version in the account's "
        "stream",
    )
    reversed_by_version = serializers.IntegerField(
        required=False,
        help_text="already_reversed: the version of the PostingReversed that undid it",
    )
    event_type = EventTypeField(
        required=False,
        help_text="not_reversible: the type of the event named (not a posting); "
        "unreadable_stream: the type this release cannot read",
    )
    event_version = serializers.IntegerField(
        required=False, help_text="unreadable_stream: the version of the unreadable event"
    )


_PROBLEM_TEXT = {
    400: "invalid input (invalid_input, with errors per field), a malformed body "
    "(malformed_request, request_too_large), a malformed If-Match / If-None-Match "
    "(invalid_precondition_header) or one the operation does not take "
    "(precondition_not_supported)",
    401: "not authenticated (not_authenticated; WWW-Authenticate: Token)",
    403: "the role may not do this (permission_denied)",
    404: "no such account (account_not_found), version (version_not_found) or time "
    "(account_did_not_exist_yet)",
    406: "the Accept header excludes JSON (not_acceptable)",
    409: "concurrent writers kept winning (concurrency_conflict): retry",
    412: "If-Match / If-None-Match does not hold for the account's version (version_mismatch)",
    415: "the body is not application/json (unsupported_media_type)",
    422: "a business rule refused the command (insufficient_funds, account_not_active, "
    "invalid_amount, invalid_state_transition, balance_not_zero, invalid_transfer, "
    "invalid_input) or the Idempotency-Key was used for another request "
    "(idempotency_key_reused)",
    429: "throttled (throttled; Retry-After)",
    500: "a bug (internal_error): only a reference to quote",
    503: "the database is unavailable (database_unavailable; Retry-After)",
}


# What the read-model operations (min_position) answer besides, for ``problems(texts=...)``.
READ_MODEL_PROBLEMS = {
    400: _PROBLEM_TEXT[400] + ", a malformed min_position / X-Min-Position or the two "
    "disagreeing (invalid_input), or a min_position beyond the event store's head "
    "(min_position_beyond_head: not a position this server answered)",
    503: "the projection did not reach min_position within READ_YOUR_WRITES_TIMEOUT_MS "
    "(projection_lagging; Retry-After) or " + _PROBLEM_TEXT[503],
}


def problems(
    *statuses: int, texts: dict[int, str] | None = None
) -> dict[tuple[int | str, str], OpenApiResponse]:
    """The problem answers of an operation, for ``extend_schema(responses=...)``.

    Every operation may also answer 406 and 500, and any other problem (``default``).
    ``texts`` describes some of them in the operation's own words.
    """
    text = {**_PROBLEM_TEXT, **(texts or {})}
    answers: dict[tuple[int | str, str], OpenApiResponse] = {
        (s, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=text[s])
        for s in sorted({*statuses, 406, 500})
    }
    answers["default", PROBLEM_CONTENT_TYPE] = OpenApiResponse(
        ProblemSerializer, description="any other problem"
    )
    return answers


# --- request and response headers ----------------------------------------------------

X_CORRELATION_ID = OpenApiParameter(
    "X-Correlation-ID",
    OpenApiTypes.UUID,
    OpenApiParameter.HEADER,
    description="a UUID recorded as the events' correlation_id (a new one by default)",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="a retry with the same key, body and If-Match replays the first answer "
    "(Idempotency-Replayed: true) and appends nothing; the same key with another request "
    "is 422 idempotency_key_reused",
    pattern=r"^[ -~]{1,255}$",
)
IF_MATCH_COMMAND = OpenApiParameter(
    IF_MATCH,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='run only if the account is at this version: its ETag ("3"), a list '
    '("3", "4") or * (any version). Compared strongly (RFC 9110): W/"3" never matches. '
    "A bare version (3) is accepted too. Else 412 version_mismatch; malformed: 400 "
    "invalid_precondition_header",
    pattern=CONDITION_PATTERN,
)
IF_NONE_MATCH_COMMAND = OpenApiParameter(
    IF_NONE_MATCH,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='run only if the account is at none of these versions ("3", W/"3" or a '
    "list; weak comparison); * never holds for an existing account. Else 412",
    pattern=CONDITION_PATTERN,
)
IF_MATCH_READ = OpenApiParameter(
    IF_MATCH,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="answer only if the state's ETag matches (strong comparison), else 412",
    pattern=CONDITION_PATTERN,
)
IF_NONE_MATCH_READ = OpenApiParameter(
    IF_NONE_MATCH,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='the ETag(s) you hold ("3", W/"3", a list, or *): 304 with no body if one '
    "matches the state's ETag (weak comparison)",
    pattern=CONDITION_PATTERN,
)
ETAG = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description='the account\'s version as a strong entity tag ("3"): send it back in '
    "If-Match (commands) or If-None-Match (reads)",
    pattern=r'^"[0-9]+"$',
    required=True,
    response=[200, 201, 304],
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="the new account's path, /api/accounts/{id}/",
    required=True,
    response=[201],
)
IDEMPOTENCY_REPLAYED = OpenApiParameter(
    "Idempotency-Replayed",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="true when this is the stored answer to an earlier request with the same "
    "Idempotency-Key",
    enum=["true"],
    response=[200, 201],
)
EVENT_POSITION_HEADER = OpenApiParameter(
    EVENT_POSITION,
    {"type": "integer", "format": "int64", "minimum": 1},
    OpenApiParameter.HEADER,
    description="the global position of the command's last event (a transfer: of the "
    "later of its two): send it as min_position (or X-Min-Position) to a read-model "
    "operation to read your own write",
    required=True,
    response=[200, 201],
)
PROJECTION_POSITION_HEADER = OpenApiParameter(
    PROJECTION_POSITION,
    {"type": "integer", "format": "int64", "minimum": 0},
    OpenApiParameter.HEADER,
    description="the global position the read model had reached before the answer was "
    "read: the answer shows every event up to it (and may show later ones)",
    required=True,
    response=[200],
)
MIN_POSITION = OpenApiParameter(
    MIN_POSITION_QUERY,
    {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_POSITION},
    OpenApiParameter.QUERY,
    description="read your writes: a command's X-Event-Position. The answer waits (up to "
    "READ_YOUR_WRITES_TIMEOUT_MS, 2 s by default) until the read model has reached it, "
    "else 503 projection_lagging with Retry-After; beyond the event store's head: 400 "
    "min_position_beyond_head. Also accepted as the X-Min-Position header (if both are "
    "sent they must agree)",
)
MIN_POSITION_FIELD = OpenApiParameter(
    MIN_POSITION_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="the same as the min_position query parameter, as a header (a decimal "
    "number); a query parameter with another value is a 400",
    pattern=POSITION_PATTERN,
)
READ_MODEL_PARAMETERS = [MIN_POSITION, MIN_POSITION_FIELD, PROJECTION_POSITION_HEADER]

_CACHING_HEADERS = {
    "Cache-Control": {
        "schema": {"type": "string", "enum": [CACHE_CONTROL]},
        "required": True,
        "description": "no answer of this API may be stored by any cache (bank data)",
    },
    "Vary": {
        "schema": {"type": "string"},
        "required": True,
        "description": f"includes {', '.join(VARY)}",
    },
}
_CHALLENGE = {
    "WWW-Authenticate": {
        "schema": {"type": "string", "enum": ["Token"]},
        "required": True,
        "description": "send Authorization: Token <key> (or Bearer <key>)",
    }
}
_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 0},
        "required": True,
        "description": "seconds to wait before retrying",
    }
}

_ACCOUNT_REF = "#/components/schemas/Account"


def _account_links(account: str) -> dict[str, Any]:
    """Links from an answer holding an account (at ``account``, a JSON pointer) onwards."""
    ident = f"$response.body#{account}/id"
    links: dict[str, Any] = {
        "GetAccount": {
            "operationId": "accounts_retrieve",
            "parameters": {"account_id": ident},
            "description": "read the account again (send its ETag in If-None-Match)",
        },
        "GetAccountEvents": {
            "operationId": "accounts_events",
            "parameters": {"account_id": ident},
            "description": "the account's events",
        },
        "GetAccountTransactions": {
            "operationId": "accounts_transactions",
            "parameters": {"account_id": ident},
            "description": "the account's transaction history",
        },
    }
    for command in ("deposit", "withdraw", "freeze", "unfreeze", "close"):
        parameters = {"account_id": ident}
        if not account:  # the ETag is the answer's account's (not a transfer's two)
            parameters["If-Match"] = "$response.header.ETag"
        links[f"{command.capitalize()}Account"] = {
            "operationId": f"accounts_{command}",
            "parameters": parameters,
            "description": f"{command} on the account"
            + (", only if it has not changed since (its ETag as If-Match)" if not account else ""),
        }
    return links


class ApiSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus what every operation of ours has in common."""

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        for status, response in operation["responses"].items():
            headers = response.setdefault("headers", {})
            headers.update(_CACHING_HEADERS)
            if status == "401":
                headers.update(_CHALLENGE)
            if status in ("429", "503"):
                headers.update(_RETRY_AFTER)
            if status.startswith("2"):
                links = _links(response, status)
                if links:
                    response["links"] = links
        return operation


def _transfer_link(source: str, target: str, description: str) -> dict[str, Any]:
    """A link to a transfer between two accounts of an answer (their ids at two pointers)."""
    return {
        "operationId": "transfers_create",
        "requestBody": {
            "from_account": f"$response.body#{source}/id",
            "to_account": f"$response.body#{target}/id",
        },
        "description": description + " (amount_cents and description are yours to give)",
    }


_APPROVAL_REF = "#/components/schemas/Approval"


def _links(response: dict[str, Any], status: str) -> dict[str, Any]:
    refs = {media.get("schema", {}).get("$ref") for media in response.get("content", {}).values()}
    if status == "202" and _APPROVAL_REF in refs:
        # A command that became a request: where to poll it (its Location, as a link).
        return {
            "GetApproval": {
                "operationId": "approvals_retrieve",
                "parameters": {"approval_id": "$response.body#/id"},
                "description": "poll the request until an approver decides it (or it "
                "expires): the same path as the Location header",
            }
        }
    if _ACCOUNT_REF in refs:
        return _account_links("")
    if "#/components/schemas/Transfer" in refs:
        links = {
            f"{name}Of{side}": link
            for side, pointer in (("Source", "/from_account"), ("Target", "/to_account"))
            for name, link in _account_links(pointer).items()
            if name in ("GetAccount", "GetAccountTransactions")
        }
        links["TransferBack"] = _transfer_link(
            "/to_account", "/from_account", "move money back, from the target to the source"
        )
        return links
    if "#/components/schemas/AccountPage" in refs:
        return {
            "GetFirstAccount": {
                "operationId": "accounts_retrieve",
                "parameters": {"account_id": "$response.body#/results/0/id"},
                "description": "read the page's first account (when the page has one)",
            },
            "TransferBetweenFirstAccounts": _transfer_link(
                "/results/0",
                "/results/1",
                "move money from the page's first account to its second (when it has two)",
            ),
        }
    return {}


# --- fields and authentication -----------------------------------------------------------


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """DRF's token: the Authorization header with the word Token, a space and the key."""

    target_class = "rest_framework.authentication.TokenAuthentication"
    name = "tokenAuth"
    match_subclasses = True
    priority = 1  # over drf-spectacular's own, which says less

    def get_security_definition(self, auto_schema: Any) -> Any:
        # OpenAPI 3.0 has no way to give an apiKey a prefix, and an http scheme other than
        # basic or bearer is one that Swagger UI cannot send: so an apiKey whose value is
        # the whole header, with the prefix said in words. The same key is also accepted
        # as Bearer (bearerAuth), which is what generated clients send by default.
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Send `Authorization: Token <key>`: the word Token, one space, "
            "the key (`manage.py drf_create_token <user>`). In Swagger UI's Authorize, "
            "type `Token <key>` here, or the key alone under bearerAuth: the same key is "
            "accepted as `Authorization: Bearer <key>`.",
        }


class BearerTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """The same DRF token after the word Bearer: an ``http`` ``bearer`` scheme."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"
    priority = 2  # over tokenAuth's, which matches this subclass of DRF's class too

    def get_security_definition(self, auto_schema: Any) -> Any:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "DRF token",
            "description": "Send `Authorization: Bearer <key>` with the DRF token "
            "(`manage.py drf_create_token <user>`; an opaque key, not a JWT). A generated "
            "client's default: openapi-python-client's "
            "`AuthenticatedClient(base_url, token=key)` sends it as is.",
        }


# --- post-processing hooks (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) ---------------


SERVERS = [
    {
        "url": "/",
        "description": "the server that answers this document (paths are under its /api/)",
    }
]


def declare_tags(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The top-level declarations: the operations' tags, in order, and the server.

    The server is this document's own origin (a relative URL): the same document is served
    by every deployment, and a client or tool resolves paths against where it read it.
    """
    result["tags"] = TAGS
    result.setdefault("servers", SERVERS)
    return result


_BLANK = {"type": "string", "maxLength": 0}


def blank_text_is_one_schema(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A text that may be blank is one string schema, not ``oneOf`` with ``maxLength: 0``.

    drf-spectacular describes a blank-allowed field with a pattern as ``oneOf: [{pattern},
    {maxLength: 0}]``; our patterns admit "" already, so "" matched both branches and was
    invalid against ``oneOf`` (exactly one must match). Where the pattern admits "", the
    first branch alone says it all.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: walk(value) for key, value in node.items()}
        branches = node.get("oneOf")
        if (
            isinstance(branches, list)
            and len(branches) == 2
            and branches[1] == _BLANK
            and branches[0].get("type") == "string"
            and re.fullmatch(branches[0].get("pattern", ""), "")
        ):
            rest = {key: value for key, value in node.items() if key != "oneOf"}
            return {**branches[0], **rest}
        return node

    return walk(result)


def forbid_unknown_request_fields(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Request bodies refuse unknown fields (no mass assignment): additionalProperties false."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


# What each request body is, for a client author (the models' descriptions). A request body
# added later without one here has none: never StrictSerializer's, which says nothing of it.
REQUEST_BODIES = {
    "OpenAccountRequest": "A new account: the holder's name, the currency (EUR unless "
    "given) and the opening balance in minor units (0 unless given).",
    "DepositRequest": "Money in: amount_cents in minor units, and a description for the "
    "account's history (empty unless given).",
    "WithdrawRequest": "Money out: amount_cents in minor units, at most the balance (else 422 "
    "insufficient_funds), and a description for the account's history.",
    "FreezeRequest": "Why the account is frozen (recorded in its events); a frozen account "
    "takes no deposit, withdrawal or transfer until it is unfrozen.",
    "UnfreezeRequest": "Why the frozen account is unfrozen (recorded in its events).",
    "CloseRequest": "Why the account is closed, for good (recorded in its events); its "
    "balance must be 0 (else 422 balance_not_zero).",
    "TransferRequest": "Move amount_cents (minor units) from from_account to to_account: two "
    "active accounts of one currency; the description goes to both histories.",
}


def describe_request_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Each request body's own description (``REQUEST_BODIES``), unless it has one already."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, description in REQUEST_BODIES.items():
        if name in schemas and not schemas[name].get("description"):
            schemas[name]["description"] = description
    return result
