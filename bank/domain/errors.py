"""Domain errors: each has a stable ``code`` (part of the public contract) and a message
that says what happened with which values."""

from __future__ import annotations

INVALID_AMOUNT = "invalid_amount"
INSUFFICIENT_FUNDS = "insufficient_funds"
ACCOUNT_NOT_ACTIVE = "account_not_active"
INVALID_STATE_TRANSITION = "invalid_state_transition"
BALANCE_NOT_ZERO = "balance_not_zero"
INVALID_TRANSFER = "invalid_transfer"
INVALID_INPUT = "invalid_input"
NOT_REVERSIBLE = "not_reversible"
ALREADY_REVERSED = "already_reversed"
SELF_APPROVAL = "self_approval"
APPROVAL_NOT_PENDING = "approval_not_pending"
APPROVAL_EXPIRED = "approval_expired"
ERASURE_NOT_ALLOWED = "erasure_not_allowed"

INVALID_AMOUNT_MESSAGE = "amount {amount!r} is not a whole number of cents from 1 to {maximum}"
BALANCE_BOUND_MESSAGE = (
    "a {operation} of {amount} cents would take the balance of {balance} cents past the "
    "maximum of {maximum} cents"
)
INSUFFICIENT_FUNDS_MESSAGE = (
    "{operation} of {requested} cents exceeds the balance of {available} cents"
)
NOT_ACTIVE_MESSAGE = "account {account_id} is {status}: no money can move on it"
TRANSITION_MESSAGE = "cannot {action} an account that is {status}"
BALANCE_NOT_ZERO_MESSAGE = (
    "account {account_id} still holds {balance} cents: withdraw or transfer them before closing"
)
SAME_ACCOUNT_MESSAGE = "a transfer needs two different accounts"
CURRENCY_MISMATCH_MESSAGE = "cannot transfer {source} to an account in {target}"
NOT_REVERSIBLE_MESSAGE = (
    "version {version} ({event_type}) is not a posting that can be reversed: only deposits, "
    "withdrawals and transfers are; a reversal is corrected by a new command instead"
)
ALREADY_REVERSED_MESSAGE = "version {version} was reversed already, by version {by}"


class DomainError(Exception):
    """Base of every business-rule refusal."""

    code = "domain_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidAmount(DomainError):
    code = INVALID_AMOUNT


class InsufficientFunds(DomainError):
    code = INSUFFICIENT_FUNDS

    def __init__(self, *, operation: str, available: int, requested: int) -> None:
        super().__init__(
            INSUFFICIENT_FUNDS_MESSAGE.format(
                operation=operation, available=available, requested=requested
            ),
            available_cents=available,
            requested_cents=requested,
        )
        self.available = available
        self.requested = requested


class AccountNotActive(DomainError):
    code = ACCOUNT_NOT_ACTIVE


class InvalidStateTransition(DomainError):
    code = INVALID_STATE_TRANSITION


class BalanceNotZero(DomainError):
    code = BALANCE_NOT_ZERO


class InvalidTransfer(DomainError):
    code = INVALID_TRANSFER


class InvalidInput(DomainError):
    """A field of a command is malformed (holder name, currency, description, reason)."""

    code = INVALID_INPUT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class NotReversible(DomainError):
    """The event is not a posting (an opening, a status change) or is itself a reversal."""

    code = NOT_REVERSIBLE


class AlreadyReversed(DomainError):
    """A posting is reversed at most once."""

    code = ALREADY_REVERSED


class SelfApproval(DomainError):
    """The person who asked for a command cannot be the one who approves it."""

    code = SELF_APPROVAL


class ApprovalNotPending(DomainError):
    """The request was decided already (approved, rejected or expired)."""

    code = APPROVAL_NOT_PENDING


class ApprovalExpired(DomainError):
    """The request is past its time to live: ask again."""

    code = APPROVAL_EXPIRED


class ErasureNotAllowed(DomainError):
    """Personal data is erased only from a closed account (its retention duties are the
    bank's to judge before asking), and once."""

    code = ERASURE_NOT_ALLOWED
