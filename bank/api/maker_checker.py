"""Maker-checker in the API: the approval request as answers show it, and the 202 a command
gives instead of running when it needs a second person's approval (issue 21).

The command views (``views``) and the approval endpoints (``approvals``) share these.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response

from bank import selectors
from bank.models import ApprovalRequest
from bank.services import approvals

from .conditional import Preconditions
from .fields import ApprovalKindField, ApprovalStatusField
from .schema import IDEMPOTENCY_REPLAYED as _IDEMPOTENCY_REPLAYED


@extend_schema_serializer(component_name="Approval")
class ApprovalOutput(serializers.Serializer):
    """A maker-checker request: the exact command, who asked and why, and its decision."""

    id = serializers.UUIDField()
    kind = ApprovalKindField()
    status = ApprovalStatusField()
    account = serializers.UUIDField(help_text="the account the command is about")
    counterparty = serializers.UUIDField(
        allow_null=True,
        help_text="the other account of a transfer, or of a transfer's reversal (null otherwise)",
    )
    amount_cents = serializers.IntegerField(
        allow_null=True,
        help_text="what a withdrawal, transfer or reversal moves (null for freeze and close)",
    )
    command = serializers.DictField(
        help_text="the command's arguments, exactly as it runs on approval (a transfer's "
        "transfer_id included)"
    )
    reason = serializers.CharField(
        help_text="why the requester asks: the reason of a freeze, close or reversal, the "
        "description of a withdrawal or transfer"
    )
    requested_by = serializers.CharField(help_text="the requester's username")
    requested_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="a pending request expires then")
    decided_by = serializers.CharField(
        allow_null=True,
        help_text="who approved or rejected it (system: expired); null while pending",
    )
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_reason = serializers.CharField(
        help_text="the approver's note, or the reason of the rejection (empty otherwise)"
    )
    position = serializers.IntegerField(
        help_text="the global position of the request's latest event (its approval: of "
        "the command's events and the approval, appended together)"
    )


def approval_location(approval_id: object) -> str:
    return f"/api/approvals/{approval_id}/"


def approval_response(row: ApprovalRequest, status: int = 200) -> Response:
    """A request as the API shows it; 202 (with its Location) when a command became one."""
    response = Response(
        ApprovalOutput(
            {
                "id": row.id,
                "kind": row.kind,
                "status": row.status,
                "account": row.account_id,
                "counterparty": row.counterparty_id,
                "amount_cents": row.amount_cents,
                "command": row.command,
                "reason": row.reason,
                "requested_by": row.requested_by,
                "requested_at": row.requested_at,
                "expires_at": row.expires_at,
                "decided_by": row.decided_by or None,
                "decided_at": row.decided_at,
                "decision_reason": row.decision_reason,
                "position": row.position,
            }
        ).data,
        status=status,
    )
    if status == 202:
        response["Location"] = approval_location(row.id)
    return response


def with_approval_location(response: Response) -> Response:
    """A 202 replayed for an Idempotency-Key is stored without headers: its Location again."""
    if response.status_code == 202 and "Location" not in response:
        response["Location"] = approval_location(response.data["id"])
    return response


@dataclass(frozen=True, slots=True)
class ApprovalAsk:
    """A command as a maker-checker request would hold it.

    Attributes:
        kind: one of ``bank.domain.approval.KINDS``.
        account_id: the account it is about (If-Match is checked against it).
        command: its arguments, ids as strings.
        reason: why the requester asks (shown to the approver).
        amount_cents: what it moves, asked only when a threshold could apply.
    """

    kind: str
    account_id: uuid.UUID
    command: dict[str, Any]
    reason: str
    amount_cents: Callable[[], int | None] = lambda: None


def ask_approval_if_needed(
    ask: ApprovalAsk, preconditions: Preconditions, metadata: dict[str, Any]
) -> Response | None:
    """202 with a new request if the rule says this command needs a second person; else None
    (the command runs now). Superusers follow the rule too.

    If-Match / If-None-Match are evaluated against the account's version now, when the
    request is made (412 if they do not hold); the approved command later runs against the
    account as it is then, which the approver sees.

    Raises:
        PreconditionFailed: the conditions do not hold now (412).
        DuplicateRequest: the same command waits already (409).
        DomainError, AccountNotFound, PostingNotFound: it could not run now.
    """
    # First without the amount: working it out can cost reads (a reversal's posting).
    if not approvals.policy().may_apply(ask.kind):
        return None
    if not approvals.needs_approval(ask.kind, ask.account_id, amount_cents=ask.amount_cents()):
        return None
    if preconditions.if_match is not None or preconditions.if_none_match is not None:
        current = selectors.account_version(ask.account_id)
        if current:  # no account: the request answers 404, conditions aside (RFC 9110 13.2.1)
            preconditions.check(ask.account_id, current)
    row = approvals.request(
        ask.kind,
        command=ask.command,
        actor=metadata["actor"],
        reason=ask.reason,
        correlation_id=metadata["correlation_id"],
    )
    return approval_response(row, status=202)


APPROVAL_LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="the approval request to poll: /api/approvals/{id}/",
    required=True,
    response=[202],
)
IDEMPOTENCY_REPLAYED = OpenApiParameter(
    _IDEMPOTENCY_REPLAYED.name,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=_IDEMPOTENCY_REPLAYED.description,
    enum=["true"],
    response=[200, 201, 202],
)
APPROVAL_ACCEPTED = OpenApiResponse(
    ApprovalOutput,
    description="the command needs a second person's approval (APPROVAL_THRESHOLD_CENTS, "
    "APPROVAL_THRESHOLDS, APPROVAL_ALWAYS; superusers too): nothing ran; the answer is the "
    "pending request, Location says where to poll it. An approver runs it with POST "
    "/api/approvals/{id}/approve/. If-Match is checked now, against the account's version "
    "when the request is made",
)
MAKER_CHECKER_PROBLEMS = {
    409: "concurrent writers kept winning (concurrency_conflict): retry; or the same command "
    "waits for approval already (duplicate_request, with approval_id: the pending request)",
}
