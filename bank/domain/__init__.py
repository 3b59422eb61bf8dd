"""The pure domain model of accounts: no Django, no database, no telemetry."""

from __future__ import annotations

from .account import (
    ACTIVE,
    CLOSED,
    FROZEN,
    STREAM_TYPE,
    Account,
    AccountSnapshot,
    balance_change,
    status_after,
)
from .errors import (
    AccountNotActive,
    BalanceNotZero,
    DomainError,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    InvalidStateTransition,
    InvalidTransfer,
)
from .events import (
    EVENT_TYPES,
    AccountClosed,
    AccountEvent,
    AccountFrozen,
    AccountOpened,
    AccountUnfrozen,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferReceived,
    TransferSent,
    event_from_data,
)
from .money import CURRENCIES, MAX_CENTS

__all__ = [
    "ACTIVE",
    "CLOSED",
    "CURRENCIES",
    "EVENT_TYPES",
    "FROZEN",
    "MAX_CENTS",
    "STREAM_TYPE",
    "Account",
    "AccountClosed",
    "AccountFrozen",
    "AccountOpened",
    "AccountUnfrozen",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "TransferReceived",
    "TransferSent",
    "AccountEvent",
    "AccountNotActive",
    "AccountSnapshot",
    "BalanceNotZero",
    "DomainError",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidInput",
    "InvalidStateTransition",
    "InvalidTransfer",
    "balance_change",
    "event_from_data",
    "status_after",
]
