"""Account commands and queries: the only code that loads accounts and appends their events.

Every command is one unit of work: it loads the account (newest valid snapshot plus the
events after it, in one statement), runs the domain command, appends the recorded events
at the loaded version (all of them or none) and, when the append crosses a multiple of
``SNAPSHOT_INTERVAL``, stores a snapshot. With no transaction open, the first attempt
appends in autocommit (two round trips on PostgreSQL; see ``_attempt``); a retry, a
command inside the caller's transaction and every transfer run in one transaction under
the streams' locks. A concurrent writer makes the append fail; the command is then retried
from a fresh load (a few times) unless the caller pinned the version it expects, in which
case the mismatch is reported.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction

import eventstore as es
from bank.domain import Account, AccountSnapshot, event_from_data
from bank.domain.errors import SAME_ACCOUNT_MESSAGE, InvalidInput, InvalidTransfer

from .context import Actor, Clock, CommandContext, system_clock
from .errors import (
    AccountDidNotExistYet,
    AccountNotFound,
    ConcurrencyConflict,
    VersionMismatch,
    VersionNotFound,
)
from .telemetry import command_span, trace_metadata

logger = logging.getLogger(__name__)

STREAM_TYPE = "bank.account"
MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account as the API and the admin show it."""

    id: uuid.UUID
    holder_name: str
    currency: str
    balance_cents: int
    status: str
    version: int

    @classmethod
    def of(cls, account: Account) -> AccountState:
        return cls(
            id=account.id,
            holder_name=account.holder_name,
            currency=account.currency,
            balance_cents=account.balance_cents,
            status=account.status or "",
            version=account.version,
        )


@dataclass(frozen=True, slots=True)
class TransferResult:
    transfer_id: uuid.UUID
    source: AccountState
    target: AccountState


# --- loading --------------------------------------------------------------------------


def _load(
    account_id: uuid.UUID, *, up_to_version: int | None = None, lock: bool = False
) -> tuple[Account, es.StreamHead | int]:
    """Return the account (snapshot + the events after it) and the head to append at."""
    return _load_many([account_id], up_to_version=up_to_version, lock=lock)[0]


def _load_many(
    account_ids: Sequence[uuid.UUID], *, up_to_version: int | None = None, lock: bool = False
) -> list[tuple[Account, es.StreamHead | int]]:
    """Load accounts in one round trip (taking their stream locks first when ``lock``)."""
    streams = es.load_streams(
        account_ids,
        snapshot_schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
        up_to_version=up_to_version,
        lock=lock,
    )
    return [
        _rebuild(account_id, stream, up_to_version)
        for account_id, stream in zip(account_ids, streams, strict=True)
    ]


def _rebuild(
    account_id: uuid.UUID, stream: es.LoadedStream, up_to_version: int | None
) -> tuple[Account, es.StreamHead | int]:
    if stream.head is None:
        raise AccountNotFound(account_id)
    base = None
    if stream.snapshot is not None:
        base = AccountSnapshot(stream.snapshot.version, stream.snapshot.state)
    try:
        account = Account.from_events(
            account_id,
            (event_from_data(e.event_type, e.data) for e in stream.events),
            snapshot=base,
        )
    except (KeyError, TypeError, ValueError):
        if base is None:
            raise
        # A snapshot this code cannot read is never trusted: replay everything instead.
        (stream,) = es.load_streams(
            [account_id], snapshot_schema_version=None, up_to_version=up_to_version
        )
        account = Account.from_events(
            account_id, (event_from_data(e.event_type, e.data) for e in stream.events)
        )
    return account, stream.head or account.version


def _snapshot_if_due(account: Account, version_before: int, anchor: str | None) -> None:
    interval = settings.SNAPSHOT_INTERVAL
    if account.version // interval > version_before // interval:
        snapshot = account.to_snapshot()
        es.save_snapshot(
            account.id,
            stream_type=STREAM_TYPE,
            version=snapshot.version,
            schema_version=Account.SNAPSHOT_SCHEMA_VERSION,
            state=snapshot.state,
            anchor=anchor,
        )


def _save(
    changes: Sequence[tuple[Account, es.StreamHead | int, int]],
    context: CommandContext,
    command: str,
    *,
    locked: bool = False,
    snapshots: bool = True,
) -> es.AppendResult:
    """Append the accounts' new events (and snapshots that are due, unless not asked).

    ``locked``: the caller holds the streams' locks and retries its whole transaction on
    a conflict, so the append needs no savepoint of its own (two round trips fewer).
    """
    occurred_at = context.clock()
    appends = [
        es.StreamAppend(
            stream_id=account.id,
            stream_type=STREAM_TYPE,
            expected_version=head,
            events=[
                es.NewEvent(
                    event_type=event.event_type,
                    schema_version=event.schema_version,
                    data=event.to_data(),
                    occurred_at=occurred_at,
                )
                for event in account.collect_events()
            ],
        )
        for account, head, _ in changes
    ]
    result = es.append_streams(
        appends,
        metadata={**context.metadata(command), **trace_metadata()},
        savepoint=not locked,
    )
    if snapshots:
        for account, _, version_before in changes:
            _snapshot_if_due(account, version_before, _anchor(result, account))
    return result


def _anchor(result: es.AppendResult, account: Account) -> str | None:
    """The hash of the account's newest event, when this append wrote it (a snapshot's anchor)."""
    head = result.heads.get(account.id)
    return head.hash if head is not None and head.version == account.version else None


def _run(
    command: str,
    account_id: uuid.UUID,
    action: Callable[[Account], None],
    *,
    context: CommandContext,
    expected_version: int | None,
    amount_cents: int | None = None,
) -> AccountState:
    with command_span(command, account_id, expected_version, amount_cents):
        return _run_attempts(command, account_id, action, context, expected_version)


def _run_attempts(
    command: str,
    account_id: uuid.UUID,
    action: Callable[[Account], None],
    context: CommandContext,
    expected_version: int | None,
) -> AccountState:
    attempts = 1 if expected_version is not None else MAX_ATTEMPTS
    for attempt in range(attempts):
        try:
            if attempt == 0 and _autocommit():
                return _attempt(command, account_id, action, context, expected_version)
            with transaction.atomic():
                return _attempt(
                    command, account_id, action, context, expected_version, locked=True
                )
        except es.ConcurrencyError as exc:
            if expected_version is not None:
                # Rolled back by now: the version can be read if the append could not.
                actual = exc.actual if exc.actual is not None else es.stream_version(account_id)
                raise VersionMismatch(account_id, expected_version, actual) from exc
    raise ConcurrencyConflict(account_id, attempts)


def _attempt(
    command: str,
    account_id: uuid.UUID,
    action: Callable[[Account], None],
    context: CommandContext,
    expected_version: int | None,
    *,
    locked: bool = False,
) -> AccountState:
    """One attempt at a command: load, run the domain command, append.

    ``locked``, inside the transaction ``_run_attempts`` opened: the load takes the
    account's stream lock first (in the same round trip), so the command cannot lose a
    race; the append needs no savepoint and the snapshot, when due, is written in the same
    transaction.

    Otherwise (the first attempt, when no transaction is open): two statements, no lock.
    The load is one statement (the snapshot and the events after it, consistent with each
    other); the append is one statement in autocommit, a transaction of its own that
    commits only if the stream is still at the loaded head (the INSERT's guard and
    UNIQUE(stream_id, version)), taking the stream's lock and then the append lock inside
    it. A stream that moved on meanwhile raises ``ConcurrencyError`` having written
    nothing, and the retry is locked, so a hot account's writers queue instead of racing
    again. A snapshot that is due is written after the events commit: it describes
    committed state, and a crash before it costs only a longer replay.
    """
    account, head = _load(account_id, lock=locked)
    _check_expected(account, expected_version)
    before = account.version
    action(account)
    result = _save([(account, head, before)], context, command, locked=locked, snapshots=locked)
    if not locked:
        _snapshot_after_commit(account, before, _anchor(result, account))
    return AccountState.of(account)


def _snapshot_after_commit(account: Account, version_before: int, anchor: str | None) -> None:
    # Committed: from here on nothing may fail the command (its caller would retry a
    # deposit that happened). A snapshot is only a shortcut for later loads.
    try:
        _snapshot_if_due(account, version_before, anchor)
    except (DatabaseError, es.EventStoreError) as exc:
        logger.warning(
            "account %s: the snapshot at version %s was not stored (%r); loads replay "
            "from the previous one until the next is due",
            account.id,
            account.version,
            exc,
        )


def _autocommit() -> bool:
    """No transaction is open: each statement commits alone."""
    connection = transaction.get_connection()
    return not connection.in_atomic_block and connection.get_autocommit()


def _check_expected(account: Account, expected_version: int | None) -> None:
    if expected_version is not None and account.version != expected_version:
        raise VersionMismatch(account.id, expected_version, account.version)


def _context(
    actor: Actor,
    correlation_id: uuid.UUID | None,
    causation_id: uuid.UUID | None,
    idempotency_key: str | None,
    clock: Clock,
) -> CommandContext:
    if not isinstance(actor, Actor):
        raise TypeError("actor must be an Actor: every command records who issued it")
    return CommandContext(
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
        clock=clock,
    )


# --- commands -------------------------------------------------------------------------


def open_account(
    *,
    holder_name: str,
    currency: str = "EUR",
    initial_balance_cents: int = 0,
    actor: Actor,
    account_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    clock: Clock = system_clock,
) -> AccountState:
    """Open an account.

    Args:
        holder_name: the holder's name (1 to 200 characters).
        currency: an ISO 4217 code.
        initial_balance_cents: the opening balance, 0 to 2^53-1.
        actor: who opens it.
        account_id: the new account's id (a random one by default).

    Raises:
        InvalidInput, InvalidAmount: a malformed field.
        eventstore.ConcurrencyError: an account with that id exists already.
    """
    context = _context(actor, correlation_id, causation_id, idempotency_key, clock)
    new_id = account_id or uuid.uuid4()
    with command_span("open", new_id, None):
        account = Account.open(
            new_id,
            holder_name=holder_name,
            currency=currency,
            initial_balance_cents=initial_balance_cents,
        )
        with transaction.atomic():
            _save([(account, es.StreamHead(0, ""), 0)], context, "open")
        return AccountState.of(account)


def deposit(
    *,
    account_id: uuid.UUID,
    amount_cents: int,
    description: str = "",
    actor: Actor,
    expected_version: int | None = None,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    clock: Clock = system_clock,
) -> AccountState:
    """Deposit money.

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see the module docstring.
        InvalidAmount, AccountNotActive, InvalidInput: the domain refused it.
    """
    return _run(
        "deposit",
        account_id,
        lambda account: account.deposit(amount_cents, description),
        context=_context(actor, correlation_id, causation_id, idempotency_key, clock),
        expected_version=expected_version,
        amount_cents=amount_cents,
    )


def withdraw(
    *,
    account_id: uuid.UUID,
    amount_cents: int,
    description: str = "",
    actor: Actor,
    expected_version: int | None = None,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    clock: Clock = system_clock,
) -> AccountState:
    """Withdraw money.

    Raises:
        AccountNotFound, VersionMismatch, ConcurrencyConflict: see the module docstring.
        InvalidAmount, AccountNotActive, InsufficientFunds, InvalidInput: domain refusals.
    """
    return _run(
        "withdraw",
        account_id,
        lambda account: account.withdraw(amount_cents, description),
        context=_context(actor, correlation_id, causation_id, idempotency_key, clock),
        expected_version=expected_version,
        amount_cents=amount_cents,
    )


def _status_command(name: str) -> Callable[..., AccountState]:
    def command(
        *,
        account_id: uuid.UUID,
        reason: str,
        actor: Actor,
        expected_version: int | None = None,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
        idempotency_key: str | None = None,
        clock: Clock = system_clock,
    ) -> AccountState:
        return _run(
            name,
            account_id,
            lambda account: getattr(account, name)(reason),
            context=_context(actor, correlation_id, causation_id, idempotency_key, clock),
            expected_version=expected_version,
        )

    command.__name__ = command.__qualname__ = name
    command.__doc__ = (
        f"{name.capitalize()} an account (a reason is required).\n\n"
        "Raises:\n"
        "    AccountNotFound, VersionMismatch, ConcurrencyConflict: see the module docstring.\n"
        "    InvalidStateTransition, BalanceNotZero, InvalidInput: domain refusals.\n"
    )
    return command


freeze = _status_command("freeze")
unfreeze = _status_command("unfreeze")
close = _status_command("close")


def transfer(
    *,
    from_account: uuid.UUID,
    to_account: uuid.UUID,
    amount_cents: int,
    description: str = "",
    actor: Actor,
    transfer_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    clock: Clock = system_clock,
) -> TransferResult:
    """Move money between two active accounts of one currency, atomically.

    Both accounts' events are appended in one multi-stream append: both or neither.

    Raises:
        AccountNotFound: either account does not exist.
        InvalidTransfer: the same account twice, or two currencies.
        InvalidAmount, AccountNotActive, InsufficientFunds, InvalidInput: domain refusals.
        ConcurrencyConflict: concurrent writers kept winning.
    """
    context = _context(actor, correlation_id, causation_id, idempotency_key, clock)
    with command_span("transfer", from_account, None, amount_cents) as span:
        span.set_attribute("counterparty_id", str(to_account))
        if from_account == to_account:
            raise InvalidTransfer(SAME_ACCOUNT_MESSAGE)
        return _transfer_attempts(
            from_account,
            to_account,
            amount_cents,
            description,
            transfer_id or uuid.uuid4(),
            context,
        )


def _transfer_attempts(
    from_account: uuid.UUID,
    to_account: uuid.UUID,
    amount_cents: int,
    description: str,
    transfer_id: uuid.UUID,
    context: CommandContext,
) -> TransferResult:
    for _ in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                # Always load in id order: the same pair is handled the same way whichever
                # direction the money goes.
                first, second = sorted((from_account, to_account), key=lambda i: i.int)
                loaded = dict(
                    zip((first, second), _load_many([first, second], lock=True), strict=True)
                )
                source, source_head = loaded[from_account]
                target, target_head = loaded[to_account]
                versions = (source.version, target.version)
                source.send_transfer(
                    transfer_id=transfer_id,
                    to=target,
                    amount_cents=amount_cents,
                    description=description,
                )
                _save(
                    [(source, source_head, versions[0]), (target, target_head, versions[1])],
                    context,
                    "transfer",
                    locked=True,
                )
                return TransferResult(
                    transfer_id=transfer_id,
                    source=AccountState.of(source),
                    target=AccountState.of(target),
                )
        except es.ConcurrencyError:
            continue
    raise ConcurrencyConflict(from_account, MAX_ATTEMPTS)


# --- queries --------------------------------------------------------------------------


def get_account(account_id: uuid.UUID) -> AccountState:
    """Return the account's current state, read from its events (strongly consistent).

    Raises:
        AccountNotFound: no such account.
    """
    return AccountState.of(_load(account_id)[0])


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
    account, _ = _load(account_id, up_to_version=version)
    if account.version < version:
        raise VersionNotFound(account_id, version, account.version)
    return AccountState.of(account)


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


__all__: list[Any] = [
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
    "transfer",
    "unfreeze",
    "withdraw",
]


def replay_snapshot_state(
    account_id: uuid.UUID, base: es.SnapshotData | None, events: list[es.EventData]
) -> dict[str, Any]:
    """The snapshot state an account has after ``events`` (verification checks snapshots
    against it)."""
    account = Account.from_events(
        account_id,
        (event_from_data(e.event_type, e.data) for e in events),
        snapshot=AccountSnapshot(base.version, base.state) if base is not None else None,
    )
    return account.to_snapshot().state
