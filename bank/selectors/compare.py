"""Two versions of an account side by side, and the events that lead from one to the other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import eventstore as es
from bank.domain import InvalidInput
from bank.services.accounts import AccountState, account_at

from .lines import EventLine, line_of

# The events listed between the two versions; the rest are counted (the timeline and its
# CSV have them all).
COMPARE_EVENTS_MAX = 500


@dataclass(frozen=True, slots=True)
class Comparison:
    """The state at version ``a`` and at version ``b`` (a ≤ b), and ``events``: versions
    a+1 to b, the events that turn the first into the second (A exclusive, B inclusive),
    with the balance after each; ``more``: how many of them are not listed."""

    a: AccountState
    b: AccountState
    events: list[EventLine]
    more: int

    @property
    def event_count(self) -> int:
        return self.b.version - self.a.version


def compare_versions(
    account_id: uuid.UUID, *, version_a: int, version_b: int, limit: int = COMPARE_EVENTS_MAX
) -> Comparison:
    """The account at two versions and the events between them.

    A bounded number of queries: two loads (each from the newest snapshot below its
    version) and at most ``limit`` events.

    Raises:
        InvalidInput: a version below 1, or ``version_a`` after ``version_b``.
        AccountNotFound: no such account.
        VersionNotFound: the account has not reached one of the versions.
    """
    if version_a > version_b:
        raise InvalidInput("version_a", "must not be after version B")
    b = account_at(account_id, version=version_b)
    a = b if version_a == version_b else account_at(account_id, version=version_a)
    last = min(version_b, version_a + limit)
    events = (
        es.read_stream(account_id, after_version=version_a, up_to_version=last)
        if last > version_a
        else []
    )
    balance = a.balance_cents
    lines = []
    for event in events:
        entry = line_of(event)
        balance += entry.amount_cents or 0
        lines.append(replace(entry, balance_after_cents=balance))
    return Comparison(a=a, b=b, events=lines, more=version_b - last)
