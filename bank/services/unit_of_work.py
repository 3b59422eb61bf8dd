"""One unit of work per command, over one account or several: load, decide, append, retry.

A command's ``action`` runs the domain on the loaded accounts; the unit of work appends
what they recorded at the loaded versions, all of it or nothing. With no transaction open,
a command on one account first tries in autocommit (two statements on PostgreSQL, see
``attempt``); a retry, a command inside the caller's transaction and every command on
several accounts run in one transaction under the streams' locks. A concurrent writer
makes the append fail; the command is then retried from a fresh load (a few times) unless
the caller pinned the version it expects, in which case the mismatch is reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import transaction

import eventstore as es

from . import repository
from .context import CommandContext
from .errors import ConcurrencyConflict, VersionMismatch
from .repository import Loaded

MAX_ATTEMPTS = 5

# Runs the domain on the loaded accounts, in the order the command named them.
Action = Callable[[Sequence[Loaded]], None]
# After the action: appends to other streams that must commit with the accounts' events
# (an approval recording its decision), built afresh on every attempt.
Also = Callable[[], Sequence[es.StreamAppend]]


@dataclass(frozen=True, slots=True)
class Done:
    """What a command did: the accounts after it, and where its events landed.

    Attributes:
        accounts: the accounts after the command, in the order the command named them.
        position: the global position of its last event (a reader of the read models
            waits for their projections to get there to see the command's effect).
    """

    accounts: list[Loaded]
    position: int


def run(
    command: str,
    account_ids: Sequence[uuid.UUID],
    action: Action,
    *,
    context: CommandContext,
    expected_version: int | None = None,
    also: Also | None = None,
) -> Done:
    """Run a command until it appends or fails for a reason a retry cannot change.

    Args:
        command: its name (recorded in the events' metadata).
        account_ids: the accounts it changes, distinct.
        expected_version: the version the (first) account must be at; no retry then.
        also: appends to other streams, in the same multi-stream append (always in a
            transaction under the accounts' locks).

    Returns:
        The accounts after the command, in the order of ``account_ids``, and the position
        of its last event.

    Raises:
        AccountNotFound: an account does not exist.
        VersionMismatch: the account is not at ``expected_version``.
        ConcurrencyConflict: concurrent writers kept winning.
        DomainError: the domain refused the command (nothing was written).
    """
    attempts = 1 if expected_version is not None else MAX_ATTEMPTS
    for number in range(attempts):
        try:
            if number == 0 and len(account_ids) == 1 and also is None and _autocommit():
                return attempt(command, account_ids, action, context, expected_version)
            with transaction.atomic():
                return attempt(
                    command,
                    account_ids,
                    action,
                    context,
                    expected_version,
                    locked=True,
                    also=also,
                )
        except es.ConcurrencyError as exc:
            if expected_version is not None:
                # Rolled back by now: the version can be read if the append could not.
                actual = exc.actual
                if actual is None:
                    actual = es.stream_version(account_ids[0])
                raise VersionMismatch(account_ids[0], expected_version, actual) from exc
    raise ConcurrencyConflict(account_ids[0], attempts)


def attempt(
    command: str,
    account_ids: Sequence[uuid.UUID],
    action: Action,
    context: CommandContext,
    expected_version: int | None,
    *,
    locked: bool = False,
    also: Also | None = None,
) -> Done:
    """One attempt at a command: load, run the domain, append.

    ``locked``, inside the transaction ``run`` opened: the load takes the streams' locks
    first (in the same round trip, always in id order, so two commands on the same
    accounts cannot deadlock whichever way they name them); the append needs no savepoint
    and the snapshots that come due are written in the same transaction.

    Otherwise (the first attempt on one account, with no transaction open): two round
    trips, no lock. The load is one round trip (the snapshot and the events after it, two
    statements checked against each other: ``eventstore.loading``); the append is one statement in autocommit, a transaction
    of its own that commits only if the stream is still at the loaded head (the INSERT's
    guard and UNIQUE(stream_id, version)), taking the stream's lock and then the append
    lock inside it. A stream that moved on meanwhile raises ``ConcurrencyError`` having
    written nothing, and the retry is locked, so a hot account's writers queue instead of
    racing again. A snapshot that is due is written after the events commit: it describes
    committed state, and a crash before it costs only a longer replay.
    """
    in_id_order = sorted(account_ids, key=lambda account_id: account_id.int)
    by_id = {loaded.account.id: loaded for loaded in repository.load(in_id_order, lock=locked)}
    changed = [by_id[account_id] for account_id in account_ids]
    if expected_version is not None and changed[0].version != expected_version:
        raise VersionMismatch(changed[0].account.id, expected_version, changed[0].version)
    action(changed)
    result = repository.save(
        changed,
        context,
        command,
        locked=locked,
        snapshots=locked,
        extra=also() if also is not None else (),
    )
    if not locked:
        for loaded in changed:
            repository.snapshot_after_commit(loaded, result)
    return Done(changed, max(result.positions))


def _autocommit() -> bool:
    """No transaction is open: each statement commits alone."""
    connection = transaction.get_connection()
    return not connection.in_atomic_block and connection.get_autocommit()
