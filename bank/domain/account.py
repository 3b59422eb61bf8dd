"""The Account aggregate: rebuilt by applying its events; commands check rules and record."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import errors
from .events import (
    EVENT_TYPES,
    AccountClosed,
    AccountEvent,
    AccountFrozen,
    AccountOpened,
    AccountUnfrozen,
    MoneyDeposited,
    MoneyWithdrawn,
    PersonalDataErased,
    PostingReversed,
    TransferReceived,
    TransferSent,
)
from .money import MAX_CENTS, check_amount, check_currency
from .text import DESCRIPTION_MAX, HOLDER_NAME_MAX, REASON_MAX, clean_text

# The stream type of an account's events in the event store (part of the stored contract).
STREAM_TYPE = "bank.account"

# What an account shows as its holder's name once their personal data is erased.
ERASED_NAME = "[erased]"

ACTIVE = "active"
FROZEN = "frozen"
CLOSED = "closed"


# The postings a reversal can undo.
REVERSIBLE = (MoneyDeposited, MoneyWithdrawn, TransferSent, TransferReceived)


@dataclass(frozen=True, slots=True)
class Posting:
    """A stored event of an account, as a reversal names it."""

    event_id: uuid.UUID
    version: int
    event: AccountEvent


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What an account's state looks like frozen at a version (for the snapshot store)."""

    version: int
    state: dict[str, Any]


class Account:
    """An account: id, holder, currency, balance, status and the version of its history."""

    SNAPSHOT_SCHEMA_VERSION = 1

    __slots__ = (
        "id",
        "version",
        "holder_name",
        "currency",
        "balance_cents",
        "status",
        "reversed",
        "_pending",
    )

    def __init__(self, account_id: uuid.UUID) -> None:
        self.id = account_id
        self.version = 0
        self.holder_name = ""
        self.currency = ""
        self.balance_cents = 0
        self.status: str | None = None
        # Reversed postings: the original's version -> the reversal's version.
        self.reversed: dict[int, int] = {}
        self._pending: list[AccountEvent] = []

    # --- replay ------------------------------------------------------------------------

    @classmethod
    def from_events(
        cls,
        account_id: uuid.UUID,
        events: Iterable[AccountEvent],
        *,
        snapshot: AccountSnapshot | None = None,
    ) -> Account:
        """Rebuild an account from a snapshot (if any) and the events after it."""
        account = cls(account_id)
        if snapshot is not None:
            account._restore(snapshot)
        for event in events:
            account._apply(event)
            account.version += 1
        return account

    def _apply(self, event: AccountEvent) -> None:
        """The one place state changes: one transition per event type, no rules.

        How an event moves the balance and the status is ``balance_change`` and
        ``status_after``, which the read models use too.
        """
        if type(event) not in _KNOWN:
            raise TypeError(f"an account cannot apply {type(event).__name__}")
        if isinstance(event, AccountOpened):
            self.holder_name = event.holder_name
            self.currency = event.currency
        self.balance_cents += balance_change(event)
        if isinstance(event, PersonalDataErased):
            self.holder_name = ERASED_NAME
        if isinstance(event, PostingReversed):
            # Applied before the version moves on: the reversal is version + 1.
            self.reversed[event.reversed_version] = self.version + 1
        status = status_after(event)
        if status is not None:
            self.status = status

    def to_snapshot(self) -> AccountSnapshot:
        state: dict[str, Any] = {
            "holder_name": self.holder_name,
            "currency": self.currency,
            "balance_cents": self.balance_cents,
            "status": self.status,
        }
        if self.reversed:
            # Only when there is one: snapshots taken before reversals existed stay valid.
            state["reversed"] = [[v, by] for v, by in sorted(self.reversed.items())]
        return AccountSnapshot(self.version, state)

    def _restore(self, snapshot: AccountSnapshot) -> None:
        state = snapshot.state
        self.version = snapshot.version
        self.holder_name = state["holder_name"]
        self.currency = state["currency"]
        self.balance_cents = state["balance_cents"]
        self.status = state["status"]
        self.reversed = {int(v): int(by) for v, by in state.get("reversed", ())}

    # --- recording ---------------------------------------------------------------------

    def _record(self, event: AccountEvent) -> None:
        self._apply(event)
        self.version += 1
        self._pending.append(event)

    @property
    def pending_events(self) -> list[AccountEvent]:
        return list(self._pending)

    def collect_events(self) -> list[AccountEvent]:
        """Return and forget the events recorded since the last call."""
        pending, self._pending = self._pending, []
        return pending

    # --- commands ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        account_id: uuid.UUID,
        *,
        holder_name: str,
        currency: str,
        initial_balance_cents: int = 0,
    ) -> Account:
        """Open a new account.

        Raises:
            InvalidInput: the holder name or currency is malformed.
            InvalidAmount: the initial balance is negative, over the bound or not an int
                (bools included).
        """
        name = clean_text("holder_name", holder_name, maximum=HOLDER_NAME_MAX, required=True)
        if name == ERASED_NAME:
            raise errors.InvalidInput("holder_name", f"{ERASED_NAME} marks an erased name")
        check_currency(currency)
        # Zero is the one amount an opening may have, and only as an int: False == 0, but a
        # bool is refused like any other amount that is not a whole number of cents.
        if type(initial_balance_cents) is not int or initial_balance_cents != 0:
            check_amount(initial_balance_cents)
        account = cls(account_id)
        account._record(
            AccountOpened(
                holder_name=name, currency=currency, initial_balance_cents=initial_balance_cents
            )
        )
        return account

    def _require_active(self) -> None:
        if self.status != ACTIVE:
            raise errors.AccountNotActive(
                errors.NOT_ACTIVE_MESSAGE.format(account_id=self.id, status=self.status),
                account_status=self.status,
            )

    def _require_room(self, amount: int, operation: str) -> None:
        if self.balance_cents + amount > MAX_CENTS:
            raise errors.InvalidAmount(
                errors.BALANCE_BOUND_MESSAGE.format(
                    operation=operation,
                    amount=amount,
                    balance=self.balance_cents,
                    maximum=MAX_CENTS,
                ),
                amount=amount,
            )

    def _require_funds(self, amount: int, operation: str) -> None:
        if amount > self.balance_cents:
            raise errors.InsufficientFunds(
                operation=operation, available=self.balance_cents, requested=amount
            )

    def deposit(self, amount_cents: int, description: str = "") -> None:
        """Put money in.

        Raises:
            InvalidAmount: not 1 to 2^53-1 cents, or the balance would pass the bound.
            AccountNotActive: the account is frozen or closed.
        """
        check_amount(amount_cents)
        text = clean_text("description", description, maximum=DESCRIPTION_MAX, required=False)
        self._require_active()
        self._require_room(amount_cents, "deposit")
        self._record(MoneyDeposited(amount_cents=amount_cents, description=text))

    def withdraw(self, amount_cents: int, description: str = "") -> None:
        """Take money out.

        Raises:
            InvalidAmount: not 1 to 2^53-1 cents.
            AccountNotActive: the account is frozen or closed.
            InsufficientFunds: more than the balance.
        """
        check_amount(amount_cents)
        text = clean_text("description", description, maximum=DESCRIPTION_MAX, required=False)
        self._require_active()
        self._require_funds(amount_cents, "withdrawal")
        self._record(MoneyWithdrawn(amount_cents=amount_cents, description=text))

    def freeze(self, reason: str) -> None:
        """Stop all movements until unfrozen.

        Raises:
            InvalidStateTransition: the account is already frozen, or closed.
        """
        text = clean_text("reason", reason, maximum=REASON_MAX, required=True)
        if self.status != ACTIVE:
            raise errors.InvalidStateTransition(
                errors.TRANSITION_MESSAGE.format(action="freeze", status=self.status),
                account_status=self.status,
            )
        self._record(AccountFrozen(reason=text))

    def unfreeze(self, reason: str) -> None:
        """Allow movements again.

        Raises:
            InvalidStateTransition: the account is not frozen.
        """
        text = clean_text("reason", reason, maximum=REASON_MAX, required=True)
        if self.status != FROZEN:
            raise errors.InvalidStateTransition(
                errors.TRANSITION_MESSAGE.format(action="unfreeze", status=self.status),
                account_status=self.status,
            )
        self._record(AccountUnfrozen(reason=text))

    def close(self, reason: str) -> None:
        """Close the account for good (an active or frozen account with a zero balance).

        Raises:
            InvalidStateTransition: it is closed already.
            BalanceNotZero: money is still in it.
        """
        text = clean_text("reason", reason, maximum=REASON_MAX, required=True)
        if self.status == CLOSED:
            raise errors.InvalidStateTransition(
                errors.TRANSITION_MESSAGE.format(action="close", status=self.status),
                account_status=self.status,
            )
        if self.balance_cents != 0:
            raise errors.BalanceNotZero(
                errors.BALANCE_NOT_ZERO_MESSAGE.format(
                    account_id=self.id, balance=self.balance_cents
                ),
                balance_cents=self.balance_cents,
            )
        self._record(AccountClosed(reason=text))

    def send_transfer(
        self, *, transfer_id: uuid.UUID, to: Account, amount_cents: int, description: str = ""
    ) -> None:
        """Move money to another account: records TransferSent here, TransferReceived there.

        Both sides are checked before either records anything.

        Raises:
            InvalidTransfer: the same account, or different currencies.
            InvalidAmount, AccountNotActive, InsufficientFunds: as for withdraw and deposit.
        """
        check_amount(amount_cents)
        text = clean_text("description", description, maximum=DESCRIPTION_MAX, required=False)
        if to.id == self.id:
            raise errors.InvalidTransfer(errors.SAME_ACCOUNT_MESSAGE)
        if to.currency != self.currency:
            raise errors.InvalidTransfer(
                errors.CURRENCY_MISMATCH_MESSAGE.format(source=self.currency, target=to.currency)
            )
        self._require_active()
        to._require_active()
        self._require_funds(amount_cents, "transfer")
        to._require_room(amount_cents, "transfer")
        self._record(
            TransferSent(
                transfer_id=transfer_id,
                to_account=to.id,
                amount_cents=amount_cents,
                description=text,
            )
        )
        to._record(
            TransferReceived(
                transfer_id=transfer_id,
                from_account=self.id,
                amount_cents=amount_cents,
                description=text,
            )
        )

    def erase_personal_data(self, reason: str) -> None:
        """Record that the holder's personal data is erased (the services delete the key).

        Raises:
            ErasureNotAllowed: the account is not closed, or was erased already.
            InvalidInput: the reason is empty or malformed.
        """
        text = clean_text("reason", reason, maximum=REASON_MAX, required=True)
        if self.holder_name == ERASED_NAME:
            raise errors.ErasureNotAllowed(
                f"the personal data of account {self.id} is erased already", status=self.status
            )
        if self.status != CLOSED:
            raise errors.ErasureNotAllowed(
                f"account {self.id} is {self.status}: close it (its balance must be zero) "
                "before erasing its holder's personal data",
                status=self.status,
            )
        self._record(PersonalDataErased(reason=text))

    def reverse(self, posting: Posting, *, reason: str) -> None:
        """Undo a deposit or a withdrawal of this account: a ``PostingReversed`` with the
        same amount and the opposite effect. (A transfer is reversed on both sides at once,
        with ``reverse_transfer``.)

        Raises:
            NotReversible: not a deposit or withdrawal of this account (a transfer side
                goes through ``reverse_transfer``), or a reversal itself.
            AlreadyReversed: it was reversed before.
            AccountNotActive: the account is frozen or closed (no money moves on it).
            InsufficientFunds: undoing a deposit would take more than the balance.
            InvalidAmount: undoing a withdrawal would pass the balance's bound.
            InvalidInput: the reason is empty or malformed.
        """
        if isinstance(posting.event, TransferSent | TransferReceived):
            raise errors.NotReversible(
                "a transfer is reversed on both accounts at once: reverse it as a transfer",
                version=posting.version,
            )
        change = self._check_reversal(posting, reason)
        self._record_reversal(posting, change, reason)

    def _check_reversal(self, posting: Posting, reason: str) -> int:
        """Check that ``posting`` can be reversed here; return the reversal's balance change."""
        clean_text("reason", reason, maximum=REASON_MAX, required=True)
        event = posting.event
        if not isinstance(event, REVERSIBLE) or not 1 <= posting.version <= self.version:
            raise errors.NotReversible(
                errors.NOT_REVERSIBLE_MESSAGE.format(
                    version=posting.version, event_type=event.event_type
                ),
                version=posting.version,
                event_type=event.event_type,
            )
        if posting.version in self.reversed:
            raise errors.AlreadyReversed(
                errors.ALREADY_REVERSED_MESSAGE.format(
                    version=posting.version, by=self.reversed[posting.version]
                ),
                version=posting.version,
                reversed_by_version=self.reversed[posting.version],
            )
        self._require_active()
        change = -balance_change(event)
        if change < 0:
            self._require_funds(-change, "reversal")
        else:
            self._require_room(change, "reversal")
        return change

    def _record_reversal(self, posting: Posting, change: int, reason: str) -> None:
        event = posting.event
        self._record(
            PostingReversed(
                reversed_event_id=posting.event_id,
                reversed_version=posting.version,
                reversed_event_type=event.event_type,
                amount_cents=abs(change),
                balance_change_cents=change,
                reason=clean_text("reason", reason, maximum=REASON_MAX, required=True),
                transfer_id=getattr(event, "transfer_id", None),
            )
        )


def reverse_transfer(
    source: Account, sent: Posting, target: Account, received: Posting, *, reason: str
) -> None:
    """Reverse both sides of a transfer at once: the money goes back to ``source``.

    Both sides are checked before either records anything.

    Raises:
        NotReversible: the two postings are not the two sides of one transfer.
        AlreadyReversed, AccountNotActive, InsufficientFunds, InvalidAmount, InvalidInput:
            as for ``Account.reverse``, on either side.
    """
    if not (
        isinstance(sent.event, TransferSent)
        and isinstance(received.event, TransferReceived)
        and sent.event.transfer_id == received.event.transfer_id
        and sent.event.to_account == target.id
        and received.event.from_account == source.id
    ):
        raise errors.NotReversible(
            "these postings are not the two sides of one transfer", version=sent.version
        )
    back = source._check_reversal(sent, reason)
    out = target._check_reversal(received, reason)
    source._record_reversal(sent, back, reason)
    target._record_reversal(received, out, reason)


def balance_change(event: AccountEvent) -> int:
    """How much an event changes the balance (negative for money going out)."""
    match event:
        case AccountOpened():
            return event.initial_balance_cents
        case MoneyDeposited() | TransferReceived():
            return event.amount_cents
        case MoneyWithdrawn() | TransferSent():
            return -event.amount_cents
        case PostingReversed():
            return event.balance_change_cents
        case _:
            return 0


def status_after(event: AccountEvent) -> str | None:
    """The account's status after an event, or None when the event leaves it as it was."""
    match event:
        case AccountOpened() | AccountUnfrozen():
            return ACTIVE
        case AccountFrozen():
            return FROZEN
        case AccountClosed():
            return CLOSED
        case _:
            return None


_KNOWN = frozenset(EVENT_TYPES.values())
