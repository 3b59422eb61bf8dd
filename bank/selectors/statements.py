"""Statements: an account's opening balance, its movements and its closing balance over a
range of days.

The days are the admin's time zone's (``TIME_ZONE``): a statement from 1 to 31 March covers
[1 March 00:00, 1 April 00:00) there. The opening balance is the state just before the first
day began, the closing balance the state at the end of the last day, each exactly as time
travel finds it (the newest version whose event occurred by then, replayed from a
snapshot); the movements are the money-moving events between those two versions, with the
balance after each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, tzinfo

from django.utils import timezone

import eventstore as es
from bank.domain import InvalidInput
from bank.services.accounts import AccountState, account_at, get_account

from .lines import EventLine, line_of

# The movements a statement page lists; its CSV has them all.
STATEMENT_ROWS_MAX = 1000
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Statement:
    """``start``/``end``: the range, aware, end exclusive; ``opening_version``: the account's
    version when the range began (0: not opened yet); ``closing_version``: when it ended;
    ``movements``: at most ``STATEMENT_ROWS_MAX`` (``truncated`` when there are more)."""

    account: AccountState
    first_day: date
    last_day: date
    start: datetime
    end: datetime
    opening_version: int
    closing_version: int
    opening_balance_cents: int
    closing_balance_cents: int
    movements: list[EventLine]
    truncated: bool

    @property
    def net_cents(self) -> int:
        return self.closing_balance_cents - self.opening_balance_cents


def day_range(
    first_day: date, last_day: date, zone: tzinfo | None = None
) -> tuple[datetime, datetime]:
    """The instants a range of whole days covers in ``zone`` (the current time zone by
    default): from the first day's midnight to the midnight after the last day."""
    zone = zone or timezone.get_current_timezone()
    start = timezone.make_aware(datetime.combine(first_day, time.min), zone)
    end = timezone.make_aware(datetime.combine(last_day + timedelta(days=1), time.min), zone)
    return start, end


def _version_before(account_id: uuid.UUID, moment: datetime) -> int:
    """The account's version just before ``moment`` (0 when it had no event yet)."""
    return es.version_at(account_id, moment - _JUST_BEFORE)


def _balance_at(account_id: uuid.UUID, version: int) -> int:
    return account_at(account_id, version=version).balance_cents if version else 0


def statement_movements(
    account_id: uuid.UUID,
    *,
    after_version: int,
    up_to_version: int,
    opening_balance_cents: int,
    chunk: int = 1000,
) -> Iterator[EventLine]:
    """The money movements of versions ``after_version``+1 to ``up_to_version``, oldest
    first, with the running balance, read ``chunk`` events at a time."""
    balance, after = opening_balance_cents, after_version
    while after < up_to_version:
        events = es.read_stream(
            account_id, after_version=after, up_to_version=min(up_to_version, after + chunk)
        )
        if not events:
            return
        for event in events:
            entry = line_of(event)
            if entry.amount_cents is None:
                continue  # a status change: no movement
            balance += entry.amount_cents
            yield replace(entry, balance_after_cents=balance)
        after = events[-1].version


def account_statement(
    account_id: uuid.UUID,
    *,
    first_day: date,
    last_day: date,
    zone: tzinfo | None = None,
    limit: int = STATEMENT_ROWS_MAX,
) -> Statement:
    """The statement of an account for the days ``first_day`` to ``last_day`` (inclusive).

    A bounded number of queries: the account, two version look-ups, the opening state (from
    a snapshot), the range's events (``limit`` movements at most) and, when cut, the closing
    state.

    Raises:
        AccountNotFound: no such account.
        InvalidInput: ``last_day`` before ``first_day``.
    """
    if last_day < first_day:
        raise InvalidInput("to", "the last day must not be before the first")
    account = get_account(account_id)
    start, end = day_range(first_day, last_day, zone)
    opening_version = _version_before(account_id, start)
    closing_version = _version_before(account_id, end)
    opening = _balance_at(account_id, opening_version)
    movements: list[EventLine] = []
    # limit=0: the heading only (the CSV streams the movements itself).
    truncated = limit == 0 and closing_version > opening_version
    if limit > 0:
        for entry in statement_movements(
            account_id,
            after_version=opening_version,
            up_to_version=closing_version,
            opening_balance_cents=opening,
            chunk=min(limit + 1, 1000),
        ):
            if len(movements) == limit:
                truncated = True
                break
            movements.append(entry)
    if truncated:
        closing = _balance_at(account_id, closing_version)
    else:
        closing = opening + sum(entry.amount_cents or 0 for entry in movements)
    return Statement(
        account=account,
        first_day=first_day,
        last_day=last_day,
        start=start,
        end=end,
        opening_version=opening_version,
        closing_version=closing_version,
        opening_balance_cents=opening,
        closing_balance_cents=closing,
        movements=movements,
        truncated=truncated,
    )
