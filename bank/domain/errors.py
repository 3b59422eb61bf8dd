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
