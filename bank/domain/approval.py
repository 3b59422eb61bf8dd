"""Maker-checker: a command that needs a second person's approval, as an aggregate.

An approval request has a stream of its own (``APPROVAL_STREAM_TYPE``): requested, then
approved, rejected or expired, once. It holds the exact command (its kind and arguments),
who asked and why, and until when it may be approved. The rules: only a pending request is
decided; the requester never decides their own request; a request past its time to live
can only expire. Executing the approved command is the services' job (one multi-stream
append with the approval), not this module's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from . import errors
from .events import AccountEvent
from .text import REASON_MAX, clean_text

APPROVAL_STREAM_TYPE = "bank.approval"

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
EXPIRED = "expired"
STATUSES = (PENDING, APPROVED, REJECTED, EXPIRED)

# The commands that can wait for an approval.
KINDS = ("withdraw", "transfer", "freeze", "close", "reversal")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequested(AccountEvent):
    """A command waits for a second person.

    ``command`` holds the command's arguments exactly as it will run (ids as strings);
    ``requested_by`` and ``decided_by`` are actors (``{"id", "username", "auth"}``).
    """

    event_type: ClassVar[str] = "ApprovalRequested"
    kind: str
    account_id: uuid.UUID
    command: dict[str, Any]
    requested_by: dict[str, Any]
    reason: str
    expires_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalGranted(AccountEvent):
    event_type: ClassVar[str] = "ApprovalGranted"
    decided_by: dict[str, Any]
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRejected(AccountEvent):
    event_type: ClassVar[str] = "ApprovalRejected"
    decided_by: dict[str, Any]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalExpired(AccountEvent):
    event_type: ClassVar[str] = "ApprovalExpired"
    expires_at: str


APPROVAL_EVENT_TYPES: dict[str, type[AccountEvent]] = {
    cls.event_type: cls
    for cls in (ApprovalRequested, ApprovalGranted, ApprovalRejected, ApprovalExpired)
}


def approval_event_from_data(event_type: str, data: dict[str, Any]) -> AccountEvent:
    """Rebuild an approval event from its stored type name and payload.

    Raises:
        KeyError: the type is not an approval event.
    """
    return APPROVAL_EVENT_TYPES[event_type].from_data(data)


class Approval:
    """A maker-checker request: what is asked, by whom, and what became of it."""

    __slots__ = (
        "id",
        "version",
        "kind",
        "account_id",
        "command",
        "requested_by",
        "reason",
        "expires_at",
        "status",
        "decided_by",
        "decision_reason",
        "_pending",
    )

    def __init__(self, approval_id: uuid.UUID) -> None:
        self.id = approval_id
        self.version = 0
        self.kind = ""
        self.account_id: uuid.UUID | None = None
        self.command: dict[str, Any] = {}
        self.requested_by: dict[str, Any] = {}
        self.reason = ""
        self.expires_at: datetime | None = None
        self.status = ""
        self.decided_by: dict[str, Any] | None = None
        self.decision_reason = ""
        self._pending: list[AccountEvent] = []

    @classmethod
    def from_events(cls, approval_id: uuid.UUID, events: Iterable[AccountEvent]) -> Approval:
        approval = cls(approval_id)
        for event in events:
            approval._apply(event)
            approval.version += 1
        return approval

    def _apply(self, event: AccountEvent) -> None:
        match event:
            case ApprovalRequested():
                self.kind = event.kind
                self.account_id = event.account_id
                self.command = dict(event.command)
                self.requested_by = dict(event.requested_by)
                self.reason = event.reason
                self.expires_at = datetime.fromisoformat(event.expires_at)
                self.status = PENDING
            case ApprovalGranted():
                self.status = APPROVED
                self.decided_by = dict(event.decided_by)
                self.decision_reason = event.note
            case ApprovalRejected():
                self.status = REJECTED
                self.decided_by = dict(event.decided_by)
                self.decision_reason = event.reason
            case ApprovalExpired():
                self.status = EXPIRED
            case _:
                raise TypeError(f"an approval cannot apply {type(event).__name__}")

    def _record(self, event: AccountEvent) -> None:
        self._apply(event)
        self.version += 1
        self._pending.append(event)

    def collect_events(self) -> list[AccountEvent]:
        """Return and forget the events recorded since the last call."""
        pending, self._pending = self._pending, []
        return pending

    # --- commands ----------------------------------------------------------------------

    @classmethod
    def request(
        cls,
        approval_id: uuid.UUID,
        *,
        kind: str,
        account_id: uuid.UUID,
        command: dict[str, Any],
        requested_by: dict[str, Any],
        reason: str,
        expires_at: datetime,
    ) -> Approval:
        """Ask for a command to be approved.

        Raises:
            InvalidInput: an unknown kind, a malformed reason, or an expiry without a
                time zone.
        """
        if kind not in KINDS:
            raise errors.InvalidInput("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        if expires_at.tzinfo is None:
            raise errors.InvalidInput("expires_at", "must carry a time zone")
        text = clean_text("reason", reason, maximum=REASON_MAX, required=False)
        approval = cls(approval_id)
        approval._record(
            ApprovalRequested(
                kind=kind,
                account_id=account_id,
                command=command,
                requested_by=requested_by,
                reason=text,
                expires_at=expires_at.isoformat(),
            )
        )
        return approval

    def is_due_to_expire(self, now: datetime) -> bool:
        """Pending, and past its time to live."""
        return self.status == PENDING and self.expires_at is not None and now >= self.expires_at

    def check_decision(self, decider: dict[str, Any], now: datetime, action: str) -> None:
        """Raise what deciding (``action``: "approved" or "rejected") would raise now.

        Raises:
            ApprovalNotPending, ApprovalExpired, SelfApproval.
        """
        if self.status != PENDING:
            raise errors.ApprovalNotPending(
                f"approval {self.id} is {self.status}: it cannot be {action} any more",
                status=self.status,
            )
        if self.is_due_to_expire(now):
            raise errors.ApprovalExpired(
                f"approval {self.id} expired at {self.expires_at.isoformat() if self.expires_at else '?'}"
                ": ask again",
                expires_at=self.expires_at.isoformat() if self.expires_at else None,
            )
        requester = self.requested_by.get("id")
        if requester is not None and requester == decider.get("id"):
            raise errors.SelfApproval(
                f"{decider.get('username')} asked for this command and cannot also "
                f"{'approve' if action == 'approved' else 'reject'} it: another approver must",
            )

    def approve(self, *, decided_by: dict[str, Any], now: datetime, note: str = "") -> None:
        """Approve (the services execute the command in the same append).

        Raises:
            ApprovalNotPending, ApprovalExpired, SelfApproval, InvalidInput.
        """
        text = clean_text("note", note, maximum=REASON_MAX, required=False)
        self.check_decision(decided_by, now, "approved")
        self._record(ApprovalGranted(decided_by=decided_by, note=text))

    def reject(self, *, decided_by: dict[str, Any], now: datetime, reason: str) -> None:
        """Reject, with a reason.

        Raises:
            ApprovalNotPending, ApprovalExpired, SelfApproval, InvalidInput.
        """
        text = clean_text("reason", reason, maximum=REASON_MAX, required=True)
        self.check_decision(decided_by, now, "rejected")
        self._record(ApprovalRejected(decided_by=decided_by, reason=text))

    def expire(self, *, now: datetime) -> None:
        """Record that a pending request passed its time to live.

        Raises:
            ApprovalNotPending: it is not pending, or not due yet.
        """
        if not self.is_due_to_expire(now):
            raise errors.ApprovalNotPending(
                f"approval {self.id} is {self.status} and not due to expire", status=self.status
            )
        assert self.expires_at is not None
        self._record(ApprovalExpired(expires_at=self.expires_at.isoformat()))
