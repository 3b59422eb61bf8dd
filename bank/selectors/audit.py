"""Read-side views of one account for auditors: the timeline with balances and chain status.

Reversals are linked both ways: a ``PostingReversed`` row names the version it reverses
(its own data), and a reversed posting names the version that reversed it (the account's
``reversed`` map, which the aggregate keeps from its events and its snapshots, so that a
posting on an old page learns of a reversal many pages later without reading them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

import eventstore as es
from bank.domain import PostingReversed, balance_change, event_from_data
from bank.domain.account import REVERSIBLE
from bank.services import repository
from bank.services.accounts import AccountState, account_at

# The posting types a teller may reverse (a transfer on both sides at once).
REVERSIBLE_TYPES = frozenset(cls.event_type for cls in REVERSIBLE)

PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class TimelineRow:
    version: int
    position: int
    event_id: uuid.UUID
    event_type: str
    amount_cents: int | None
    balance_after_cents: int
    description: str
    counterparty: str
    actor: str
    occurred_at: datetime
    trace_id: str
    chain: str  # "intact", "broken" (the first bad event) or "unverified" (after it)
    correlation_id: str = ""  # the command's (or transfer's) id: its events across streams
    reverses: int | None = None  # a reversal: the version of the posting it undoes
    reversed_by: int | None = None  # a reversed posting: the version of its reversal

    @property
    def reversible(self) -> bool:
        """A posting not reversed yet (the domain decides in the end: funds, status)."""
        return self.event_type in REVERSIBLE_TYPES and self.reversed_by is None

    @property
    def in_reversed_pair(self) -> bool:
        return self.reverses is not None or self.reversed_by is not None


@dataclass(frozen=True, slots=True)
class Integrity:
    """What the audit page says about the account's record.

    ``verified_*``: what the last recorded ``verify_events`` run covered; ``checked_version``:
    through which version the chain and seals are verified now (that run plus the events
    after it, checked for this page); ``problem``: the first broken link or seal (eventstore's
    StreamProblem) or None; ``snapshot_problem``: a snapshot verification rejected.
    """

    verified_version: int
    verified_at: datetime | None
    checked_version: int
    problem: Any
    snapshot_problem: str

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.snapshot_problem

    @property
    def reason(self) -> str:
        """Why commands are withheld (empty when the record is intact)."""
        if self.problem is not None:
            return f"the account's record is broken ({self.problem})"
        if self.snapshot_problem:
            return f"a snapshot of the account was rejected (snapshot at {self.snapshot_problem})"
        return ""


@dataclass(frozen=True, slots=True)
class Timeline:
    state: AccountState
    rows: list[TimelineRow]  # newest first
    page: int
    pages: int
    chain_problem: Any  # the first broken link (eventstore's StreamProblem), or None
    integrity: Integrity
    page_size: int = PAGE_SIZE
    hidden: int = 0  # rows of this page left out (``hide_reversed``)

    def page_of(self, version: int) -> int:
        """The page (newest first) that shows ``version``."""
        return (self.state.version - version) // self.page_size + 1


def _row(
    event: es.RecordedEvent,
    balance_after: int,
    problem_version: int | None,
    reversed_map: dict[int, int] | None = None,
) -> TimelineRow:
    decoded = event_from_data(event.event_type, event.data)
    change = balance_change(decoded)
    actor = event.metadata.get("actor")
    if problem_version is None or event.version < problem_version:
        chain = "intact"
    elif event.version == problem_version:
        chain = "broken"
    else:
        chain = "unverified"
    return TimelineRow(
        version=event.version,
        position=event.position,
        event_id=event.event_id,
        event_type=event.event_type,
        amount_cents=change if change or "amount_cents" in event.data else None,
        balance_after_cents=balance_after,
        description=str(event.data.get("description") or event.data.get("reason") or ""),
        counterparty=str(event.data.get("to_account") or event.data.get("from_account") or ""),
        actor=str(actor.get("username", "")) if isinstance(actor, dict) else str(actor or ""),
        occurred_at=event.occurred_at,
        trace_id=str(event.metadata.get("trace_id", "")),
        chain=chain,
        correlation_id=str(event.metadata.get("correlation_id") or ""),
        reverses=decoded.reversed_version if isinstance(decoded, PostingReversed) else None,
        reversed_by=(reversed_map or {}).get(event.version),
    )


def reversal_map(account_id: uuid.UUID) -> tuple[AccountState, dict[int, int]]:
    """The account now, and which of its postings were reversed: original version ->
    reversal version (one load: a snapshot and the events after it).

    Raises:
        AccountNotFound, UnreadableStream: as ``get_account``.
    """
    account = repository.load_one(account_id)
    return AccountState.of(account), dict(account.reversed)


def account_integrity(account_id: uuid.UUID) -> Integrity:
    """The account's record as verified: by the last recorded run, plus what came after it.

    Costs the events since that run, not the history's length.
    """
    status = es.stream_status(account_id)
    return Integrity(
        verified_version=status.verified_version,
        verified_at=status.verified_at,
        checked_version=status.checked_version,
        problem=status.problem,
        snapshot_problem=status.snapshot_problem,
    )


def account_timeline(
    account_id: uuid.UUID,
    *,
    page: int = 1,
    page_size: int = PAGE_SIZE,
    hide_reversed: bool = False,
) -> Timeline:
    """One page of an account's history, newest first, with the balance after each event.

    A bounded number of queries whatever the history's length: the page's events, the
    state at the page's newest version (from a verified snapshot), and the chain and seals
    of the events after the last recorded verification.

    Args:
        hide_reversed: leave out the page's reversed postings and their reversals (the
            pages stay the same versions; ``hidden`` says how many rows were left out).

    Raises:
        AccountNotFound: no such account.
    """
    state, reversed_map = reversal_map(account_id)
    pages = max(1, -(-state.version // page_size))
    page = min(max(page, 1), pages)
    top = state.version - (page - 1) * page_size
    bottom = max(1, top - page_size + 1)
    events = es.read_stream(account_id, after_version=bottom - 1, up_to_version=top)
    balance = (
        state.balance_cents
        if top == state.version
        else account_at(account_id, version=top).balance_cents
    )
    integrity = account_integrity(account_id)
    problem = integrity.problem
    problem_version = problem.version if problem is not None else None
    rows = []
    for event in reversed(events):
        rows.append(_row(event, balance, problem_version, reversed_map))
        balance -= balance_change(event_from_data(event.event_type, event.data))
    shown = [row for row in rows if not row.in_reversed_pair] if hide_reversed else rows
    return Timeline(
        state=state,
        rows=shown,
        page=page,
        pages=pages,
        chain_problem=problem,
        integrity=integrity,
        page_size=page_size,
        hidden=len(rows) - len(shown),
    )


def timeline_rows(account_id: uuid.UUID, *, chunk: int = 1000) -> Iterator[TimelineRow]:
    """Every event of the account, oldest first, with running balances and the reversal
    links (for CSV export)."""
    problem = account_integrity(account_id).problem
    problem_version = problem.version if problem is not None else None
    _, reversed_map = reversal_map(account_id)
    balance, after = 0, 0
    while True:
        events = es.read_stream(account_id, after_version=after, up_to_version=after + chunk)
        if not events:
            return
        for event in events:
            balance += balance_change(event_from_data(event.event_type, event.data))
            yield _row(event, balance, problem_version, reversed_map)
        after = events[-1].version


@dataclass(frozen=True, slots=True)
class StoredPage:
    """One page of an account's events as stored (no decoding), newest first: what the
    audit page shows of an account this release cannot read."""

    events: list[es.RecordedEvent]
    page: int
    pages: int
    version: int


def stored_events(
    account_id: uuid.UUID, *, page: int = 1, page_size: int = PAGE_SIZE
) -> StoredPage:
    """The account's events as the store holds them, a page at a time, newest first.

    Nothing is decoded, so an event of a type this release does not know is shown too. Two
    queries whatever the history's length (the stream's version, the page's events).
    """
    version = es.stream_version(account_id)
    pages = max(1, -(-version // page_size))
    page = min(max(page, 1), pages)
    top = version - (page - 1) * page_size
    bottom = max(1, top - page_size + 1)
    events = es.read_stream(account_id, after_version=bottom - 1, up_to_version=top)
    return StoredPage(events=list(reversed(events)), page=page, pages=pages, version=version)


# How many of the last run's problems the admin index's panel lists (the count is always shown).
PANEL_PROBLEMS = 3


@dataclass(frozen=True, slots=True)
class IntegrityPanel:
    """What the admin index says about the whole store (from records only, no checking).

    ``last``/``last_full``: the newest recorded ``VerificationRun`` of any kind and the
    newest full one (None: never); ``trigger_problems``: missing or disabled immutability
    triggers; ``full_too_old``: no full run within ``max_age_hours``.
    """

    last: Any
    last_full: Any
    trigger_problems: list[str]
    max_age_hours: float
    full_too_old: bool

    @property
    def failing(self) -> bool:
        return bool(self.trigger_problems) or (self.last is not None and not self.last.ok)

    @property
    def first_problems(self) -> list[str]:
        return list(self.last.problems[:PANEL_PROBLEMS]) if self.last is not None else []


def integrity_panel() -> IntegrityPanel:
    """The store's recorded integrity, in at most three small queries (no verification)."""
    last = es.last_run()
    last_full = last if last is None or last.full else es.last_run(full=True)
    max_age = float(settings.HEALTH_MAX_VERIFY_AGE_HOURS)
    too_old = (
        last_full is None
        or (timezone.now() - last_full.finished_at).total_seconds() > max_age * 3600
    )
    return IntegrityPanel(
        last=last,
        last_full=last_full,
        trigger_problems=es.trigger_problems(),
        max_age_hours=max_age,
        full_too_old=too_old,
    )
