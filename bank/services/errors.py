"""Errors raised by the services beyond the domain's business rules."""

from __future__ import annotations

import uuid

from bank.domain.errors import DomainError

ACCOUNT_NOT_FOUND = "account_not_found"
ACCOUNT_DID_NOT_EXIST_YET = "account_did_not_exist_yet"
VERSION_NOT_FOUND = "version_not_found"
VERSION_MISMATCH = "version_mismatch"
CONCURRENCY_CONFLICT = "concurrency_conflict"
UNREADABLE_STREAM = "unreadable_stream"
POSTING_NOT_FOUND = "posting_not_found"
APPROVAL_NOT_FOUND = "approval_not_found"
DUPLICATE_REQUEST = "duplicate_request"


class ServiceError(Exception):
    code = "service_error"


class AccountNotFound(ServiceError):
    code = ACCOUNT_NOT_FOUND

    def __init__(self, account_id: uuid.UUID) -> None:
        self.account_id = account_id
        super().__init__(f"account {account_id} does not exist")


class AccountDidNotExistYet(ServiceError):
    code = ACCOUNT_DID_NOT_EXIST_YET

    def __init__(self, account_id: uuid.UUID, at: object) -> None:
        self.account_id = account_id
        super().__init__(f"account {account_id} did not exist yet at {at}")


class VersionNotFound(ServiceError):
    code = VERSION_NOT_FOUND

    def __init__(self, account_id: uuid.UUID, asked: int, current: int) -> None:
        self.asked = asked
        self.current = current
        super().__init__(
            f"account {account_id} has versions 1 to {current}; version {asked} does not exist"
        )


class VersionMismatch(ServiceError):
    """The caller pinned a version (If-Match) and the account is at another."""

    code = VERSION_MISMATCH

    def __init__(self, account_id: uuid.UUID, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"account {account_id} is at version {actual}, not {expected}: reload and retry"
        )


class ConcurrencyConflict(ServiceError):
    """Concurrent writers kept winning; the command gave up after a few fresh attempts."""

    code = CONCURRENCY_CONFLICT

    def __init__(self, account_id: uuid.UUID, attempts: int) -> None:
        super().__init__(
            f"account {account_id} kept changing under {attempts} attempts: retry the command"
        )


class UnreadableStream(ServiceError):
    """An account's stream holds an event this code cannot read: a type it does not know
    (written by a newer release) or a payload that does not fit its type. The account is
    neither shown nor changed until a release that reads it is deployed."""

    code = UNREADABLE_STREAM

    def __init__(self, account_id: uuid.UUID, event_type: str, version: int, reason: str) -> None:
        self.account_id, self.event_type, self.version = account_id, event_type, version
        super().__init__(
            f"account {account_id} cannot be read: its event at version {version} is a "
            f"{event_type!r} that this release cannot read ({reason}); deploy the release "
            "that wrote it, or an upcaster"
        )


class PostingNotFound(ServiceError):
    """No event of that id in this account's stream."""

    code = POSTING_NOT_FOUND

    def __init__(self, account_id: uuid.UUID, event_id: object) -> None:
        self.account_id, self.event_id = account_id, event_id
        super().__init__(f"account {account_id} has no event {event_id}")


class ApprovalNotFound(ServiceError):
    code = APPROVAL_NOT_FOUND

    def __init__(self, approval_id: object) -> None:
        self.approval_id = approval_id
        super().__init__(f"approval request {approval_id} does not exist")


class DuplicateRequest(ServiceError):
    """The same command waits for an approval already."""

    code = DUPLICATE_REQUEST

    def __init__(self, pending_id: object) -> None:
        self.pending_id = pending_id
        super().__init__(
            f"the same command waits for approval already (request {pending_id}): approve or "
            "reject that one"
        )


__all__ = [
    "AccountDidNotExistYet",
    "AccountNotFound",
    "ApprovalNotFound",
    "ConcurrencyConflict",
    "DuplicateRequest",
    "DomainError",
    "PostingNotFound",
    "ServiceError",
    "UnreadableStream",
    "VersionMismatch",
    "VersionNotFound",
]
