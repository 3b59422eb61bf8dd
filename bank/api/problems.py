"""Every API error as ``application/problem+json`` (RFC 9457) with a stable ``code``.

This is the one place that maps errors to HTTP: DRF's exceptions, the domain's rules,
the services' and the event store's errors. Nothing a client sends can produce a 500; a
real bug does, still as problem+json, with only a trace reference in it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

import eventstore as es
from bank.domain import DomainError
from bank.domain import errors as domain_errors
from bank.services import errors as service_errors
from bank.services.errors import (
    AccountDidNotExistYet,
    AccountNotFound,
    ApprovalNotFound,
    ConcurrencyConflict,
    DuplicateRequest,
    PostingNotFound,
    UnreadableStream,
    VersionMismatch,
    VersionNotFound,
)

from .caching import no_store
from .conditional import (
    INVALID_PRECONDITION_HEADER,
    PRECONDITION_NOT_SUPPORTED,
    InvalidPreconditionHeader,
    PreconditionFailed,
    PreconditionNotSupported,
)
from .consistency import (
    MIN_POSITION_BEYOND_HEAD,
    PROJECTION_LAGGING,
    MinPositionBeyondHead,
    ProjectionLagging,
)

log = logging.getLogger("bank.api")

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Stable codes for the transport-level errors (the domain's come from its errors).
INVALID_INPUT = "invalid_input"
MALFORMED_REQUEST = "malformed_request"
NOT_AUTHENTICATED = "not_authenticated"
PERMISSION_DENIED = "permission_denied"
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
NOT_ACCEPTABLE = "not_acceptable"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
THROTTLED = "throttled"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
REQUEST_TOO_LARGE = "request_too_large"
DATABASE_UNAVAILABLE = "database_unavailable"
INTERNAL_ERROR = "internal_error"
UNKNOWN_ERROR = "error"  # a DRF exception this module does not know yet

# Every code a problem may carry, for the OpenAPI document (clients must still accept a
# code they do not know: new ones are added, none is ever renamed).
PROBLEM_CODES = (
    INVALID_INPUT,
    MALFORMED_REQUEST,
    REQUEST_TOO_LARGE,
    INVALID_PRECONDITION_HEADER,
    PRECONDITION_NOT_SUPPORTED,
    MIN_POSITION_BEYOND_HEAD,
    NOT_AUTHENTICATED,
    PERMISSION_DENIED,
    NOT_FOUND,
    service_errors.ACCOUNT_NOT_FOUND,
    service_errors.VERSION_NOT_FOUND,
    service_errors.ACCOUNT_DID_NOT_EXIST_YET,
    METHOD_NOT_ALLOWED,
    NOT_ACCEPTABLE,
    service_errors.CONCURRENCY_CONFLICT,
    service_errors.VERSION_MISMATCH,
    service_errors.UNREADABLE_STREAM,
    UNSUPPORTED_MEDIA_TYPE,
    domain_errors.INSUFFICIENT_FUNDS,
    domain_errors.ACCOUNT_NOT_ACTIVE,
    domain_errors.INVALID_AMOUNT,
    domain_errors.INVALID_STATE_TRANSITION,
    domain_errors.BALANCE_NOT_ZERO,
    domain_errors.INVALID_TRANSFER,
    IDEMPOTENCY_KEY_REUSED,
    # Maker-checker and reversals (issue 21).
    service_errors.POSTING_NOT_FOUND,
    service_errors.APPROVAL_NOT_FOUND,
    service_errors.DUPLICATE_REQUEST,
    domain_errors.NOT_REVERSIBLE,
    domain_errors.ALREADY_REVERSED,
    domain_errors.SELF_APPROVAL,
    domain_errors.APPROVAL_NOT_PENDING,
    domain_errors.APPROVAL_EXPIRED,
    THROTTLED,
    INTERNAL_ERROR,
    DATABASE_UNAVAILABLE,
    PROJECTION_LAGGING,
    UNKNOWN_ERROR,
)

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    415: "Unsupported media type",
    422: "Business rule refused the command",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


# Titles of codes whose status's title would say something else (a reused key is a 422,
# but no business rule refused anything).
CODE_TITLES = {
    domain_errors.SELF_APPROVAL: "The requester cannot decide their own request",
    domain_errors.APPROVAL_NOT_PENDING: "The approval request was decided already",
    domain_errors.APPROVAL_EXPIRED: "The approval request expired",
    domain_errors.ALREADY_REVERSED: "The posting was reversed already",
    service_errors.DUPLICATE_REQUEST: "The same command waits for approval already",
    IDEMPOTENCY_KEY_REUSED: "Idempotency-Key already used for another request",
    MIN_POSITION_BEYOND_HEAD: "min_position is beyond the event store's head",
    PROJECTION_LAGGING: "The read model has not reached min_position yet",
}


class IdempotencyKeyReused(Exception):
    code = IDEMPOTENCY_KEY_REUSED

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was first used with another request; use a new key "
            "for a new request"
        )


def problem(
    status_code: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = {
        **extra,  # first, so that no detail can shadow the standard members
        "type": f"urn:ledgerline:problem:{code}",
        "title": CODE_TITLES.get(code) or TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    response = Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _drf(exc: exceptions.APIException, response_headers: dict[str, str]) -> Response:
    code = {
        exceptions.NotAuthenticated: NOT_AUTHENTICATED,
        exceptions.AuthenticationFailed: NOT_AUTHENTICATED,
        exceptions.PermissionDenied: PERMISSION_DENIED,
        exceptions.NotFound: NOT_FOUND,
        exceptions.MethodNotAllowed: METHOD_NOT_ALLOWED,
        exceptions.NotAcceptable: NOT_ACCEPTABLE,
        exceptions.UnsupportedMediaType: UNSUPPORTED_MEDIA_TYPE,
        exceptions.Throttled: THROTTLED,
        exceptions.ParseError: MALFORMED_REQUEST,
    }.get(type(exc), INVALID_INPUT if exc.status_code == 400 else UNKNOWN_ERROR)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return problem(
            400,
            INVALID_INPUT,
            "the request is not valid: see errors",
            errors=_plain(detail),
            headers=response_headers,
        )
    return problem(exc.status_code, code, str(exc.detail), headers=response_headers)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception handler: map every error to problem+json."""
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.APIException):
        # DRF has set auth_header (401) or turned a missing challenge into 403 already.
        auth_header = getattr(exc, "auth_header", None)  # NotAuthenticated's challenge
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled's seconds
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
        if exc.status_code == 403 and not isinstance(exc, exceptions.PermissionDenied):
            exc = exceptions.PermissionDenied(str(exc.detail))
        return _drf(exc, headers)
    if isinstance(exc, InvalidPreconditionHeader):
        return problem(400, exc.code, str(exc), errors={exc.header: [exc.reason]})
    if isinstance(exc, PreconditionNotSupported):
        return problem(400, exc.code, str(exc))
    if isinstance(exc, MinPositionBeyondHead):
        return problem(
            400,
            exc.code,
            str(exc),
            errors={exc.source: [str(exc)]},
            min_position=exc.wanted,
            head_position=exc.head,
        )
    if isinstance(exc, ProjectionLagging):
        return problem(
            503,
            exc.code,
            str(exc),
            headers={"Retry-After": str(exc.retry_after)},
            projection=exc.projection,
            projection_position=exc.reached,
            min_position=exc.wanted,
        )
    if isinstance(exc, PreconditionFailed):
        expected: dict[str, Any] = (
            {} if exc.expected is None else {"expected_version": exc.expected}
        )
        return problem(412, exc.code, str(exc), current_version=exc.current, **expected)
    if isinstance(exc, AccountNotFound | AccountDidNotExistYet | VersionNotFound):
        return problem(404, exc.code, str(exc))
    if isinstance(exc, PostingNotFound):
        return problem(404, exc.code, str(exc), event_id=str(exc.event_id))
    if isinstance(exc, ApprovalNotFound):
        return problem(404, exc.code, str(exc))
    if isinstance(exc, Http404):
        return problem(404, NOT_FOUND, "no such resource")
    if isinstance(exc, DjangoPermissionDenied):
        return problem(403, PERMISSION_DENIED, "you may not do this")
    if isinstance(exc, VersionMismatch):
        return problem(
            412, exc.code, str(exc), expected_version=exc.expected, current_version=exc.actual
        )
    if isinstance(exc, ConcurrencyConflict | es.ConcurrencyError):
        return problem(409, "concurrency_conflict", str(exc))
    if isinstance(exc, UnreadableStream):
        # Not a bug to quote a reference for: the data needs a newer release. Named, logged.
        log.error("%s", exc)
        return problem(
            500, exc.code, str(exc), event_type=exc.event_type, event_version=exc.version
        )
    if isinstance(exc, IdempotencyKeyReused):
        return problem(422, exc.code, str(exc))
    if isinstance(exc, DuplicateRequest):
        # The request to approve or reject instead of asking twice.
        return problem(409, exc.code, str(exc), approval_id=str(exc.pending_id))
    if isinstance(exc, domain_errors.SelfApproval):
        # Who may decide, not a rule about the money: no retry by this user can succeed.
        return problem(403, exc.code, exc.message)
    if isinstance(exc, domain_errors.ApprovalNotPending):
        # Its "status" detail would be shadowed by the problem's own (the HTTP status).
        return problem(409, exc.code, exc.message, approval_status=exc.details.get("status"))
    if isinstance(exc, domain_errors.ApprovalExpired | domain_errors.AlreadyReversed):
        # Decided (or done) already: the request's or the posting's state, not a rule.
        return problem(409, exc.code, exc.message, **_plain_details(exc.details))
    if isinstance(exc, DomainError):
        return problem(422, exc.code, exc.message, **_plain_details(exc.details))
    if isinstance(exc, es.InvalidEventError):
        return problem(400, INVALID_INPUT, str(exc))
    if isinstance(exc, RequestDataTooBig):
        return problem(400, REQUEST_TOO_LARGE, "the request body is too large")
    if isinstance(exc, es.StoreUnavailableError | OperationalError | InterfaceError):
        log.warning("database unavailable: %s", exc)
        return problem(
            503,
            DATABASE_UNAVAILABLE,
            "the database is not answering; retry shortly",
            headers={"Retry-After": "2"},
        )
    if isinstance(exc, DatabaseError):
        log.exception("database error")
    return server_error_problem(exc)


def _plain_details(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, int | str | None)}


def server_error_problem(exc: BaseException | None) -> Response:
    reference = uuid.uuid4().hex
    log.error("unhandled error, reference %s", reference, exc_info=exc)
    return problem(
        500,
        INTERNAL_ERROR,
        f"an unexpected error occurred; quote reference {reference} to support",
        reference=reference,
    )


def _json_problem(status_code: int, code: str, detail: str) -> JsonResponse:
    response = JsonResponse(
        {
            "type": f"urn:ledgerline:problem:{code}",
            "title": TITLES.get(status_code, "Error"),
            "status": status_code,
            "detail": detail,
            "code": code,
        },
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    return no_store(response)


def handler404(request: Any, exception: Exception | None = None) -> Any:
    """Django's 404 handler: problem+json under /api/, the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return _json_problem(404, NOT_FOUND, f"no resource at {request.path}")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request: Any) -> Any:
    """Django's 500 handler: problem+json under /api/, the usual page elsewhere."""
    if request.path.startswith("/api/"):
        reference = uuid.uuid4().hex
        log.error("unhandled error, reference %s", reference)
        return _json_problem(
            500, INTERNAL_ERROR, f"an unexpected error occurred; quote reference {reference}"
        )
    from django.views.defaults import server_error

    return server_error(request)


__all__ = [
    "PROBLEM_CODES",
    "PROBLEM_CONTENT_TYPE",
    "exception_handler",
    "handler404",
    "handler500",
    "problem",
]
