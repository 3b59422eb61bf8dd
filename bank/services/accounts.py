"""Account commands and queries: what the API, the admin and the management commands call.

Each command is an explicit, keyword-only function: it checks its input through the domain
and runs as one unit of work (``unit_of_work.run``: load, decide, append, retry; see that
module for the transactions and the retries). Queries read the accounts' own events
(strongly consistent); the read models' queries are in ``bank.selectors``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Unpack

from django.db import transaction

import eventstore as es
from bank.domain import ERASED_NAME, STREAM_TYPE, Account
from bank.domain.errors import SAME_ACCOUNT_MESSAGE, InvalidInput, InvalidTransfer

from . import encryption, repository, unit_of_work
from .context import Actor, CommandContext, Metadata
from .errors import AccountDidNotExistYet, AccountNotFound, VersionNotFound
from .repository import Loaded, replay_snapshot_state
from .telemetry import command_span
from .unit_of_work import MAX_ATTEMPTS


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as the API and the admin show it."""

    id: uuid.UUID
    holder_name: str
    currency: str
    balance_cents: int
    status: str
    version: int
    position: int | None = field(default=None, compare=False)
    """After a command: the global position of its last event (None on a query). Not part
    of the state: two equal states compare equal however they were obtained."""

    @classmethod
    def of(cls, account: Account, position: int | None = None) -> AccountState:
        """The state of an account (its holder's name decrypted, or ``[erased]``)."""
        return cls(
            id=account.id,
            holder_name=encryption.reveal(account.holder_name, "holder_name"),
            currency=account.currency,
            balance_cents=account.balance_cents,
            status=account.status or "",
            version=account.version,
            position=position,
        )


@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: uuid.UUID
    source: AccountState
    target: AccountState

    @property
    def position(self) -> int | None:
        """The global position of the transfer's last event (both sides are one append)."""
        return self.target.position


def _on_one(
    command: str,
    account_id: uuid.UUID,
    action: unit_of_work.Action,
    context: CommandContext,
    expected_version: int | None,
    amount_cents: int | None = None,
) -> AccountState:
    """A command on one account, in its span."""
    with command_span(command, account_id, expected_version, amount_cents):
        done = unit_of_work.run(
            command,
            [account_id],
            action,
            context=context,
            expected_version=expected_version,
        )
        return AccountState.of(done.accounts[0].account, done.position)


# --- commands -------------------------------------------------------------------------


def open_account(
    *,
    holder_name: str,
    currency: str = "EUR",
    initial_balance_cents: int = 0,
    actor: Actor,
    account_id: uuid.UUID | None = None,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Open an account.

    Args:
        holder_name: the holder's name (1 to 200 characters).
        currency: an ISO 4217 code.
        initial_balance_cents: the opening balance, 0 to 2^53-1.
        actor: who opens it.
        account_id: the new account's id (a random one by default).
        metadata: see ``context.Metadata``.

    Raises:
        InvalidInput, InvalidAmount: a malformed field.
        eventstore.ConcurrencyError: an account with that id exists already.
    """
    context = CommandContext.of(actor, **metadata)
    new_id = account_id or uuid.uuid4()
    with command_span("open", new_id, None):
        account = Account.open(
            new_id,
            holder_name=holder_name,
            currency=currency,
            initial_balance_cents=initial_balance_cents,
        )
        with transaction.atomic():
            result = repository.save([Loaded(account, es.StreamHead(0, ""), 0)], context, "open")
        return AccountState.of(account, max(result.positions))


def deposit(
    *,
    account_id: uuid.UUID,
    amount_cents: int,
    description: str = "",
    actor: Actor,
    expected_version: int | None = None,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Deposit money.

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see ``unit_of_work.run``.
        InvalidAmount, AccountNotActive, InvalidInput: the domain refused it.
    """
    return _on_one(
        "deposit",
        account_id,
        lambda loaded: loaded[0].account.deposit(amount_cents, description),
        CommandContext.of(actor, **metadata),
        expected_version,
        amount_cents,
    )


def withdraw(
    *,
    account_id: uuid.UUID,
    amount_cents: int,
    description: str = "",
    actor: Actor,
    expected_version: int | None = None,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Withdraw money.

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see ``unit_of_work.run``.
        InvalidAmount, AccountNotActive, InsufficientFunds, InvalidInput: domain refusals.
    """
    return _on_one(
        "withdraw",
        account_id,
        lambda loaded: loaded[0].account.withdraw(amount_cents, description),
        CommandContext.of(actor, **metadata),
        expected_version,
        amount_cents,
    )


def freeze(
    *,
    account_id: uuid.UUID,
    reason: str,
    actor: Actor,
    expected_version: int | None = None,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Freeze an active account (a reason is required): no money moves until unfrozen.

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see ``unit_of_work.run``.
        InvalidStateTransition, InvalidInput: domain refusals.
    """
    return _on_one(
        "freeze",
        account_id,
        lambda loaded: loaded[0].account.freeze(reason),
        CommandContext.of(actor, **metadata),
        expected_version,
    )


def unfreeze(
    *,
    account_id: uuid.UUID,
    reason: str,
    actor: Actor,
    expected_version: int | None = None,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Unfreeze a frozen account (a reason is required).

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see ``unit_of_work.run``.
        InvalidStateTransition, InvalidInput: domain refusals.
    """
    return _on_one(
        "unfreeze",
        account_id,
        lambda loaded: loaded[0].account.unfreeze(reason),
        CommandContext.of(actor, **metadata),
        expected_version,
    )


def close(
    *,
    account_id: uuid.UUID,
    reason: str,
    actor: Actor,
    expected_version: int | None = None,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Close an account whose balance is zero (a reason is required); closing is final.

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see ``unit_of_work.run``.
        InvalidStateTransition, BalanceNotZero, InvalidInput: domain refusals.
    """
    return _on_one(
        "close",
        account_id,
        lambda loaded: loaded[0].account.close(reason),
        CommandContext.of(actor, **metadata),
        expected_version,
    )


def transfer(
    *,
    from_account: uuid.UUID,
    to_account: uuid.UUID,
    amount_cents: int,
    description: str = "",
    actor: Actor,
    transfer_id: uuid.UUID | None = None,
    **metadata: Unpack[Metadata],
) -> TransferResult:
    """Move money between two active accounts of one currency, atomically.

    Both accounts' events are appended in one multi-stream append: both or neither.

    Raises:
        AccountNotFound: either account does not exist.
        InvalidTransfer: the same account twice, or two currencies.
        InvalidAmount, AccountNotActive, InsufficientFunds, InvalidInput: domain refusals.
        ConcurrencyConflict: concurrent writers kept winning.
    """
    context = CommandContext.of(actor, **metadata)
    the_transfer = transfer_id or uuid.uuid4()
    with command_span("transfer", from_account, None, amount_cents) as span:
        span.set_attribute("counterparty_id", str(to_account))
        if from_account == to_account:
            raise InvalidTransfer(SAME_ACCOUNT_MESSAGE)

        def action(loaded: Sequence[Loaded]) -> None:
            source, target = loaded
            source.account.send_transfer(
                transfer_id=the_transfer,
                to=target.account,
                amount_cents=amount_cents,
                description=description,
            )

        done = unit_of_work.run("transfer", [from_account, to_account], action, context=context)
        source, target = done.accounts
        return TransferResult(
            transfer_id=the_transfer,
            source=AccountState.of(source.account, done.position),
            target=AccountState.of(target.account, done.position),
        )


# --- queries --------------------------------------------------------------------------


def get_account(account_id: uuid.UUID) -> AccountState:
    """Return the account's current state, read from its events (strongly consistent).

    Raises:
        AccountNotFound: no such account.
    """
    return AccountState.of(repository.load_one(account_id))


def account_at(
    account_id: uuid.UUID, *, version: int | None = None, at: datetime | None = None
) -> AccountState:
    """Return the account's state at a past version, or at a past time.

    Replays only up to there, starting from the newest snapshot at or below that version.

    Raises:
        InvalidInput: neither or both of version and at, or a version below 1.
        AccountNotFound: no such account.
        VersionNotFound: the account has not reached that version.
        AccountDidNotExistYet: the account was opened after ``at``.
    """
    if (version is None) == (at is None):
        raise InvalidInput("as_of", "give exactly one of a version or a time")
    if at is not None:
        if at.tzinfo is None:
            raise InvalidInput("as_of", "the time must carry a time zone (e.g. Z or +01:00)")
        version = es.version_at(account_id, at)
        if version == 0:
            if es.stream_version(account_id) == 0:
                raise AccountNotFound(account_id)
            raise AccountDidNotExistYet(account_id, at.isoformat())
    assert version is not None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInput("as_of_version", "must be a whole number from 1")
    account = repository.load_one(account_id, up_to_version=version)
    if account.version < version:
        raise VersionNotFound(account_id, version, account.version)
    state = AccountState.of(account)
    # A name written in clear before encryption has no key to shred: a past state shows it
    # erased when the account is erased now.
    if (
        not encryption.is_protected(account.holder_name)
        and state.holder_name != ERASED_NAME
        and repository.load_one(account_id).holder_name == ERASED_NAME
    ):
        return dataclasses.replace(state, holder_name=ERASED_NAME)
    return state


def account_events(
    account_id: uuid.UUID, *, after_version: int = 0, limit: int | None = None
) -> list[es.RecordedEvent]:
    """Return the account's events in version order (all of them, or a page).

    Raises:
        AccountNotFound: no such account.
    """
    up_to = after_version + limit if limit is not None else None
    events = es.read_stream(account_id, after_version=after_version, up_to_version=up_to)
    if not events and es.stream_version(account_id) == 0:
        raise AccountNotFound(account_id)
    return events


def account_version(account_id: uuid.UUID) -> int:
    """Return the account's current version (0 when it does not exist)."""
    return es.stream_version(account_id)


__all__ = [
    "MAX_ATTEMPTS",
    "STREAM_TYPE",
    "AccountState",
    "TransferResult",
    "account_at",
    "account_events",
    "account_version",
    "close",
    "deposit",
    "freeze",
    "get_account",
    "open_account",
    "replay_snapshot_state",
    "transfer",
    "unfreeze",
    "withdraw",
]
