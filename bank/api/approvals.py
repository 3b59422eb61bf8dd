"""Maker-checker requests and reversals over HTTP (issue 21).

- ``GET /api/approvals/`` and ``GET /api/approvals/{id}/``: the queue, for every role that
  reads accounts (tellers, auditors, approvers).
- ``POST /api/approvals/{id}/approve/`` and ``/reject/``: approvers only
  (``bank.decide_approval``), never on their own request (403 ``self_approval``).
- ``POST /api/accounts/{id}/reversals/``: undo one posting (both sides of a transfer), once;
  above the threshold it waits for an approval like any other command (202).
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from bank import selectors
from bank.domain.text import REASON_MAX
from bank.services import approvals, reversals
from bank.services.errors import AccountNotFound, PostingNotFound

from . import consistency
from .conditional import Preconditions
from .fields import (
    ApprovalKindField,
    ApprovalStatusField,
    StrictSerializer,
    StrictUUIDField,
    TextField,
)
from .idempotency import read_key, run_idempotent
from .maker_checker import (
    APPROVAL_ACCEPTED,
    APPROVAL_LOCATION,
    IDEMPOTENCY_REPLAYED,
    ApprovalAsk,
    ApprovalOutput,
    approval_response,
    ask_approval_if_needed,
    with_approval_location,
)
from .pagination import PageQuery, page_of
from .permissions import DecideApprovalPermission
from .schema import (
    APPROVALS,
    COMMANDS,
    EVENT_POSITION_HEADER,
    IDEMPOTENCY_KEY,
    IF_MATCH_COMMAND,
    IF_NONE_MATCH_COMMAND,
    X_CORRELATION_ID,
    problems,
)
from .views import (
    PAGE_PAST_THE_END,
    AccountOutput,
    ApiView,
    actor_of,
    metadata_of,
    page_schema,
    with_event_position,
)

APPROVAL_PROBLEMS = {
    403: "the role may not decide requests (permission_denied: approvers only), or the "
    "approver asked for this command (self_approval: another approver must decide)",
    404: "no such approval request (approval_not_found)",
    409: "the request was decided already (approval_not_pending, with approval_status) or "
    "expired (approval_expired: it is recorded as expired; ask again)",
}


def decided_response(row: Any) -> Response:
    """An approval or rejection: the request, and where its decision landed."""
    response = approval_response(row)
    response[consistency.EVENT_POSITION] = str(row.position)
    return response


# --- the queue ---------------------------------------------------------------------------


class ApprovalCollectionApi(ApiView):
    """The maker-checker requests, oldest first, filtered."""

    class ListQuery(PageQuery):
        status = ApprovalStatusField(required=False)
        account = serializers.UUIDField(
            required=False, help_text="requests about this account (either side of a transfer)"
        )
        requested_by = TextField(
            required=False, max_length=150, help_text="the requester's username, exactly"
        )
        kind = ApprovalKindField(required=False)

    @extend_schema(
        operation_id="approvals_list",
        summary="List approval requests",
        description="The maker-checker requests, oldest first: ?status=pending is what "
        "waits for an approver. A request past its time to live is recorded as expired "
        "before it is shown, never listed as pending." + PAGE_PAST_THE_END,
        tags=[APPROVALS],
        parameters=[ListQuery],
        responses={
            200: page_schema(ApprovalOutput, "ApprovalPage"),
            **problems(400, 401, 403, 429, 503),
        },
    )
    def get(self, request: Request) -> Response:
        query = self.ListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        rows = approvals.queue(
            status=wanted.get("status"),
            account_id=wanted.get("account"),
            requested_by=wanted.get("requested_by"),
            kind=wanted.get("kind"),
        )
        return Response(
            page_of(
                request,
                wanted,
                count=rows.count(),
                rows=lambda offset, limit: [
                    approval_response(row).data for row in rows[offset : offset + limit]
                ],
            )
        )


class ApprovalDetailApi(ApiView):
    """One request: poll it after a 202 (the command's Location)."""

    @extend_schema(
        operation_id="approvals_retrieve",
        summary="Read an approval request",
        description="The request and what became of it: pending, approved (the command ran: "
        "position is where), rejected (decision_reason says why) or expired.",
        tags=[APPROVALS],
        responses={
            200: ApprovalOutput,
            **problems(401, 403, 404, 429, 503, texts={404: APPROVAL_PROBLEMS[404]}),
        },
    )
    def get(self, request: Request, approval_id: uuid.UUID) -> Response:
        return approval_response(approvals.get(approval_id))


# --- decisions ---------------------------------------------------------------------------

# A decision takes no X-Correlation-ID: the command's events are correlated with the
# request that asked for them (causation_id), not with the approver's call.
DECISION_PARAMETERS = [EVENT_POSITION_HEADER]
NO_PRECONDITION = (
    "a request has no version to compare (send none): a decision is made once, and a "
    "second one is 409 approval_not_pending"
)


class ApprovalApproveApi(ApiView):
    """Approve a pending request: its command runs now, with the approval, atomically."""

    permission_classes = [DecideApprovalPermission]

    @extend_schema_serializer(component_name="Approve")
    class InputSerializer(StrictSerializer):
        """An approval, with an optional note for the record."""

        note = TextField(max_length=REASON_MAX, allow_blank=True, default="")

    @extend_schema(
        operation_id="approvals_approve",
        summary="Approve a request (runs its command)",
        description="An approver (bank.decide_approval) who did not ask for it approves a "
        "pending request: its exact command runs now and the approval is recorded with it "
        "(one append: both or neither; the command's events name the approval). The "
        "answer is the request, approved, and X-Event-Position. If the command breaks a "
        "rule now (insufficient_funds, account_not_active, ...: 422) nothing is recorded "
        "and the request stays pending. A retried approval is 409 approval_not_pending "
        "(GET the request to see who decided).",
        tags=[APPROVALS],
        request=InputSerializer,
        parameters=DECISION_PARAMETERS,
        responses={
            200: ApprovalOutput,
            **problems(400, 401, 403, 404, 409, 415, 422, 429, 503, texts=APPROVAL_PROBLEMS),
        },
    )
    def post(self, request: Request, approval_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        Preconditions.refused(request, NO_PRECONDITION)
        row = approvals.approve(
            approval_id, actor=actor_of(request), note=data.validated_data["note"]
        )
        return decided_response(row)


class ApprovalRejectApi(ApiView):
    """Reject a pending request, with a reason: its command never runs."""

    permission_classes = [DecideApprovalPermission]

    @extend_schema_serializer(component_name="Reject")
    class InputSerializer(StrictSerializer):
        """A rejection: why the command must not run (required, shown to the requester)."""

        reason = TextField(max_length=REASON_MAX)

    @extend_schema(
        operation_id="approvals_reject",
        summary="Reject a request",
        description="An approver (bank.decide_approval) who did not ask for it rejects a "
        "pending request, saying why; nothing runs. The answer is the request, rejected.",
        tags=[APPROVALS],
        request=InputSerializer,
        parameters=DECISION_PARAMETERS,
        responses={
            200: ApprovalOutput,
            **problems(400, 401, 403, 404, 409, 415, 422, 429, 503, texts=APPROVAL_PROBLEMS),
        },
    )
    def post(self, request: Request, approval_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        Preconditions.refused(request, NO_PRECONDITION)
        row = approvals.reject(
            approval_id, actor=actor_of(request), reason=data.validated_data["reason"]
        )
        return decided_response(row)


# --- reversals ---------------------------------------------------------------------------


class AccountReversalApi(ApiView):
    """Reverse one posting of the account (both sides of a transfer), once."""

    @extend_schema_serializer(component_name="Reversal")
    class InputSerializer(StrictSerializer):
        """The posting to undo (an event id of this account: a deposit, a withdrawal or
        either side of a transfer) and why."""

        event_id = StrictUUIDField(help_text="the posting's event_id (see the account's events)")
        reason = TextField(max_length=REASON_MAX)

    @extend_schema_serializer(component_name="Reversal")
    class OutputSerializer(serializers.Serializer):
        reversed_event_id = serializers.UUIDField(help_text="the posting undone")
        accounts = AccountOutput(
            many=True,
            help_text="the accounts after it: this account, then a transfer's other side",
        )

    @extend_schema(
        operation_id="accounts_reverse",
        summary="Reverse a posting",
        description="Undoes a deposit, a withdrawal or a transfer of this account with a "
        "linked PostingReversed (same amount, opposite effect); a transfer is reversed on "
        "both accounts at once, whichever side is named. A posting is reversed once "
        "(409 already_reversed); a reversal, an opening or a status change cannot be "
        "(422 not_reversible: post a new command instead). Both accounts must be active, "
        "and undoing money that came in needs it still there: nothing goes below zero "
        "(422 insufficient_funds). From the approval threshold on (the posting's amount), "
        "it waits for a second person's approval (202). If-Match pins this account's "
        "version (checked when the request is made, for a 202).",
        tags=[COMMANDS],
        request=InputSerializer,
        parameters=[
            IF_MATCH_COMMAND,
            IF_NONE_MATCH_COMMAND,
            IDEMPOTENCY_KEY,
            X_CORRELATION_ID,
            IDEMPOTENCY_REPLAYED,
            EVENT_POSITION_HEADER,
            APPROVAL_LOCATION,
        ],
        responses={
            200: OutputSerializer,
            202: APPROVAL_ACCEPTED,
            **problems(
                400,
                401,
                403,
                404,
                409,
                412,
                415,
                422,
                429,
                503,
                texts={
                    404: "no such account (account_not_found), or no event of that id in "
                    "its stream (posting_not_found)",
                    409: "the posting was reversed already (already_reversed, with "
                    "reversed_by_version), the same reversal waits for approval already "
                    "(duplicate_request, with approval_id), or concurrent writers kept "
                    "winning (concurrency_conflict)",
                    422: "the event is not a posting that can be reversed (not_reversible), "
                    "or a business rule refused it (insufficient_funds, account_not_active, "
                    "invalid_amount, invalid_input), or the Idempotency-Key was used for "
                    "another request (idempotency_key_reused)",
                },
            ),
        },
    )
    def post(self, request: Request, account_id: uuid.UUID) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event_id, reason = data.validated_data["event_id"], data.validated_data["reason"]
        preconditions = Preconditions.of(request)
        key = read_key(request)
        metadata = metadata_of(request, key)

        def reverse() -> Response:
            asked = ask_approval_if_needed(
                ApprovalAsk(
                    "reversal",
                    account_id,
                    {"account_id": str(account_id), "event_id": str(event_id), "reason": reason},
                    reason,
                    # Read only when a threshold could apply; PostingNotFound is a 404.
                    amount_cents=lambda: reversals.plan(account_id, event_id, reason).amount_cents,
                ),
                preconditions,
                metadata,
            )
            if asked is not None:
                return asked
            result = preconditions.run(
                account_id,
                lambda expected: reversals.reverse_posting(
                    account_id=account_id,
                    event_id=event_id,
                    reason=reason,
                    expected_version=expected,
                    **metadata,
                ),
            )
            response = Response(
                self.OutputSerializer(
                    {"reversed_event_id": event_id, "accounts": result.accounts}
                ).data
            )
            response[consistency.EVENT_POSITION] = str(result.position)
            return response

        try:
            response = run_idempotent(request, key, reverse)
        except PostingNotFound as exc:
            # An account with no events has no postings either: say which is missing.
            if not selectors.account_version(account_id):
                raise AccountNotFound(account_id) from exc
            raise
        # A replayed answer has no header of its own: they are read back then.
        return with_approval_location(with_event_position(response, "accounts"))
