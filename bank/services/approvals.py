"""Maker-checker: commands that wait for a second person, and their decisions.

``needs_approval`` says whether a command crosses the configured rule (``policy``);
``request`` records it instead of running it (after checking it would pass the business
rules now: a request that could never run is refused at once); ``approve`` runs the exact
command and records the approval in one multi-stream append, with the command's events
caused by the request (``causation_id``) and naming the approval in their metadata;
``reject`` and ``expire`` end a request without running it.

Every request is a stream of its own (``bank.approval``); the queue (``ApprovalRequest``
rows) is written in the same transaction as each of its events. Two approvers racing on
one request: both run under the accounts' stream locks, and the approval stream's expected
version lets exactly one append; the other finds the request decided and is refused
(``approval_not_pending``): the command runs once.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

import eventstore as es
from bank.domain.approval import (
    APPROVAL_STREAM_TYPE,
    PENDING,
    Approval,
    approval_event_from_data,
)
from bank.domain.errors import ApprovalExpired, DomainError, InvalidInput
from bank.models import ApprovalRequest

from . import repository, reversals, unit_of_work
from .accounts import AccountState
from .context import Actor, Clock, CommandContext, system_clock
from .errors import ApprovalNotFound, DuplicateRequest
from .policy import ApprovalPolicy
from .repository import Loaded
from .telemetry import command_span


@dataclass(frozen=True, slots=True)
class Planned:
    """A command ready to run: its name, its accounts (the first is the one it is about),
    what it does to them, and the amount it moves (None for freeze and close)."""

    command: str
    account_ids: list[uuid.UUID]
    action: Callable[[Sequence[Loaded]], None]
    amount_cents: int | None


@dataclass(frozen=True, slots=True)
class Preview:
    """What approving a request would change: the accounts now and after it, or the rule
    it would break now."""

    before: list[AccountState]
    after: list[AccountState]
    refusal: DomainError | None


def policy() -> ApprovalPolicy:
    return ApprovalPolicy.from_settings()


def needs_approval(kind: str, account_id: uuid.UUID, *, amount_cents: int | None = None) -> bool:
    """Whether this command must wait for a second person (reads the account's currency
    only when a threshold could apply).

    Raises:
        AccountNotFound: the account does not exist (when its currency is needed).
    """
    rule = policy()
    if not rule.may_apply(kind):
        return False
    if kind in rule.always:
        return True
    currency = repository.load_one(account_id).currency
    return rule.requires(kind, currency=currency, amount_cents=amount_cents)


def plan(kind: str, command: dict[str, Any]) -> Planned:
    """The command a request holds, ready to run.

    Raises:
        InvalidInput: the command does not fit its kind.
        PostingNotFound: (a reversal) the posting does not exist.
    """
    try:
        if kind == "withdraw":
            amount, text = command["amount_cents"], command.get("description", "")
            return Planned(
                "withdraw",
                [uuid.UUID(command["account_id"])],
                lambda loaded: loaded[0].account.withdraw(amount, text),
                amount,
            )
        if kind == "transfer":
            transfer_id = uuid.UUID(command["transfer_id"])
            amount, text = command["amount_cents"], command.get("description", "")

            def send(loaded: Sequence[Loaded]) -> None:
                loaded[0].account.send_transfer(
                    transfer_id=transfer_id,
                    to=loaded[1].account,
                    amount_cents=amount,
                    description=text,
                )

            ids = [uuid.UUID(command["from_account"]), uuid.UUID(command["to_account"])]
            return Planned("transfer", ids, send, amount)
        if kind in ("freeze", "close"):
            reason = command["reason"]
            account_id = uuid.UUID(command["account_id"])
            if kind == "freeze":
                return Planned(
                    "freeze", [account_id], lambda loaded: loaded[0].account.freeze(reason), None
                )
            return Planned(
                "close", [account_id], lambda loaded: loaded[0].account.close(reason), None
            )
        if kind == "reversal":
            found = reversals.plan(
                uuid.UUID(command["account_id"]),
                uuid.UUID(command["event_id"]),
                command["reason"],
            )
            return Planned("reverse", found.account_ids, found.action, found.amount_cents)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidInput("command", f"not a {kind} command: {exc!r}") from exc
    raise InvalidInput("kind", f"{kind!r} cannot wait for an approval")


# --- requests -------------------------------------------------------------------------


def request(
    kind: str,
    *,
    command: dict[str, Any],
    actor: Actor,
    reason: str = "",
    clock: Clock = system_clock,
    correlation_id: uuid.UUID | None = None,
) -> ApprovalRequest:
    """Ask a second person to approve a command (which does not run now).

    The command is checked against the accounts as they are now: one that breaks a rule
    already (insufficient funds, a frozen account, ...) is refused at once rather than
    queued.

    Args:
        command: the command's arguments (ids as strings); a transfer gets its
            ``transfer_id`` here, so that the id is known before it runs.

    Raises:
        DuplicateRequest: the same command waits for an approval already.
        DomainError, AccountNotFound, PostingNotFound: the command cannot run now.
    """
    command = dict(command)
    if kind == "transfer":
        command.setdefault("transfer_id", str(uuid.uuid4()))
    planned = plan(kind, command)
    now = clock()
    view = preview_of(planned)
    if view.refusal is not None:
        raise view.refusal
    the_fingerprint = fingerprint(kind, command)
    expire_due(clock=clock, fingerprint=the_fingerprint)
    expires_at = now + policy().ttl
    approval = Approval.request(
        uuid.uuid4(),
        kind=kind,
        account_id=planned.account_ids[0],
        command=command,
        requested_by=actor.to_metadata(),
        reason=reason,
        expires_at=expires_at,
    )
    context = CommandContext(actor=actor, correlation_id=correlation_id, clock=lambda: now)
    try:
        with transaction.atomic():
            result = _append(approval, 0, context, "request_approval", now)
            ApprovalRequest.objects.create(
                id=approval.id,
                kind=kind,
                account_id=planned.account_ids[0],
                counterparty_id=planned.account_ids[1] if len(planned.account_ids) > 1 else None,
                amount_cents=planned.amount_cents,
                command=command,
                reason=approval.reason,
                requested_by_id=actor.user_id,
                requested_by=actor.username[:150],
                requested_at=now,
                expires_at=expires_at,
                status=PENDING,
                fingerprint=the_fingerprint,
                version=approval.version,
                position=max(result.positions),
            )
    except IntegrityError as exc:
        pending = (
            ApprovalRequest.objects.filter(fingerprint=the_fingerprint, status=PENDING)
            .values_list("id", flat=True)
            .first()
        )
        if pending is None:
            raise
        raise DuplicateRequest(pending) from exc
    return ApprovalRequest.objects.get(pk=approval.id)


def approve(
    approval_id: uuid.UUID, *, actor: Actor, note: str = "", clock: Clock = system_clock
) -> ApprovalRequest:
    """Approve a pending request: its command runs, and the approval is recorded with it
    (one multi-stream append: both or neither).

    The command's events carry the requester as actor, the request's event as
    ``causation_id`` and ``approval: {id, approved_by}`` in their metadata.

    Raises:
        ApprovalNotFound: no such request.
        SelfApproval: the approver asked for it.
        ApprovalNotPending: decided already (by another approver, say).
        ApprovalExpired: past its time to live (recorded as expired now).
        DomainError: the command breaks a rule now (the request stays pending: reject it,
            or approve it once the account allows it).
    """
    now = clock()
    approval, requested_event = _load(approval_id)
    if approval.is_due_to_expire(now):
        _expire(approval, now)
        raise _expired(approval)
    # Refuse what the request's own state refuses before touching any account.
    approval.check_decision(actor.to_metadata(), now, "approved")
    planned = plan(approval.kind, approval.command)
    decided: dict[str, Any] = {}

    def decide_and_run(loaded: Sequence[Loaded]) -> None:
        current, _ = _load(approval_id)
        head = current.version
        current.approve(decided_by=actor.to_metadata(), now=now, note=note)
        decided["approval"], decided["head"] = current, head
        planned.action(loaded)

    def record_decision() -> list[es.StreamAppend]:
        current: Approval = decided["approval"]
        return [_stream_append(current, decided["head"], now, actor)]

    requester = approval.requested_by
    context = CommandContext(
        actor=Actor(
            username=str(requester.get("username", "")),
            user_id=requester.get("id"),
            auth=str(requester.get("auth", "system")),
        ),
        causation_id=requested_event,
        clock=lambda: now,  # the command's events occur when the approval does
        approval={"id": str(approval_id), "approved_by": actor.to_metadata()},
    )
    with command_span(planned.command, planned.account_ids[0], None, planned.amount_cents) as span:
        span.set_attribute("approval_id", str(approval_id))
        with transaction.atomic():
            done = unit_of_work.run(
                planned.command,
                planned.account_ids,
                decide_and_run,
                context=context,
                also=record_decision,
            )
            _index(decided["approval"], now, done.position)
    return ApprovalRequest.objects.get(pk=approval_id)


def reject(
    approval_id: uuid.UUID, *, actor: Actor, reason: str, clock: Clock = system_clock
) -> ApprovalRequest:
    """Reject a pending request, with a reason; its command never runs.

    Raises:
        ApprovalNotFound, SelfApproval, ApprovalNotPending, ApprovalExpired, InvalidInput.
    """
    now = clock()
    for _attempt in range(unit_of_work.MAX_ATTEMPTS):
        approval, _ = _load(approval_id)
        if approval.is_due_to_expire(now):
            _expire(approval, now)
            raise _expired(approval)
        head = approval.version
        approval.reject(decided_by=actor.to_metadata(), now=now, reason=reason)
        try:
            with transaction.atomic():
                result = _append(
                    approval, head, CommandContext(actor=actor, clock=clock), "reject", now
                )
                _index(approval, now, max(result.positions))
        except es.ConcurrencyError:
            continue  # decided meanwhile: the next load says how
        return ApprovalRequest.objects.get(pk=approval_id)
    raise ApprovalNotFound(approval_id)  # pragma: no cover - five decisions in a row


def expire_due(
    *, clock: Clock = system_clock, fingerprint: str | None = None, limit: int = 1000
) -> int:
    """Record every pending request past its time to live as expired; return how many.

    ``expire_approvals`` runs it; requests and the queue's reads run it too, so an expired
    request never shows as pending.
    """
    now = clock()
    due = ApprovalRequest.objects.filter(status=PENDING, expires_at__lte=now)
    if fingerprint is not None:
        due = due.filter(fingerprint=fingerprint)
    count = 0
    for approval_id in list(due.values_list("id", flat=True)[:limit]):
        approval, _ = _load(approval_id)
        if approval.is_due_to_expire(now):
            try:
                _expire(approval, now)
            except es.ConcurrencyError:
                continue  # decided or expired by someone else meanwhile
            count += 1
    return count


def get(approval_id: uuid.UUID, *, clock: Clock = system_clock) -> ApprovalRequest:
    """A request as the queue holds it (expired first if it is due).

    Raises:
        ApprovalNotFound: no such request.
    """
    row = ApprovalRequest.objects.filter(pk=approval_id).first()
    if row is None:
        raise ApprovalNotFound(approval_id)
    if row.status == PENDING and row.expires_at <= clock():
        expire_due(clock=clock, fingerprint=row.fingerprint)
        row.refresh_from_db()
    return row


def queue(
    *,
    status: str | None = None,
    account_id: uuid.UUID | None = None,
    requested_by: str | None = None,
    kind: str | None = None,
    requested_before: datetime | None = None,
    clock: Clock = system_clock,
) -> QuerySet[ApprovalRequest]:
    """The requests, oldest first, filtered (the due ones are expired first)."""
    expire_due(clock=clock)
    rows = ApprovalRequest.objects.all()
    if status:
        rows = rows.filter(status=status)
    if account_id is not None:
        rows = rows.filter(account_id=account_id) | rows.filter(counterparty_id=account_id)
    if requested_by:
        rows = rows.filter(requested_by=requested_by)
    if kind:
        rows = rows.filter(kind=kind)
    if requested_before is not None:
        rows = rows.filter(requested_at__lt=requested_before)
    return rows.order_by("requested_at", "id")


def preview(row: ApprovalRequest) -> Preview:
    """The accounts now and after the request's command (nothing is written)."""
    return preview_of(plan(row.kind, row.command))


def preview_of(planned: Planned) -> Preview:
    loaded = repository.load(planned.account_ids)
    before = [AccountState.of(item.account) for item in loaded]
    try:
        planned.action(loaded)
    except DomainError as refusal:
        return Preview(before, before, refusal)
    return Preview(before, [AccountState.of(item.account) for item in loaded], None)


# --- inside ---------------------------------------------------------------------------


def _expired(approval: Approval) -> ApprovalExpired:
    when = approval.expires_at.isoformat() if approval.expires_at else "?"
    return ApprovalExpired(
        f"approval {approval.id} expired at {when} without a decision: ask again",
        expires_at=when,
    )


def _load(approval_id: uuid.UUID) -> tuple[Approval, uuid.UUID]:
    """The request rebuilt from its stream, and its first event's id."""
    events = es.read_stream(approval_id)
    if not events or events[0].stream_type != APPROVAL_STREAM_TYPE:
        raise ApprovalNotFound(approval_id)
    approval = Approval.from_events(
        approval_id, (approval_event_from_data(e.event_type, e.data) for e in events)
    )
    return approval, events[0].event_id


def _expire(approval: Approval, now: datetime) -> None:
    head = approval.version
    approval.expire(now=now)
    with transaction.atomic():
        result = _append(
            approval, head, CommandContext(actor=Actor.system("expiry")), "expire", now
        )
        _index(approval, now, max(result.positions))


def _stream_append(
    approval: Approval, head: int, occurred_at: datetime, actor: Actor | None = None
) -> es.StreamAppend:
    return es.StreamAppend(
        stream_id=approval.id,
        stream_type=APPROVAL_STREAM_TYPE,
        expected_version=head,
        events=[
            es.NewEvent(
                event_type=event.event_type,
                schema_version=event.schema_version,
                data=event.to_data(),
                occurred_at=occurred_at,
                # The decision is the approver's, whoever the command's actor is.
                metadata={"actor": actor.to_metadata()} if actor is not None else {},
            )
            for event in approval.collect_events()
        ],
    )


def _append(
    approval: Approval,
    head: int,
    context: CommandContext,
    command: str,
    occurred_at: datetime,
) -> es.AppendResult:
    """Append the request's new events, occurring at ``occurred_at`` (the time its queue
    row records too, so a rebuilt queue equals the one written live)."""
    return es.append_streams(
        [_stream_append(approval, head, occurred_at)],
        metadata=context.metadata(command),
    )


def _index(approval: Approval, now: datetime, position: int) -> None:
    """Bring the queue's row up to the request's stream (same transaction)."""
    decided = approval.status != PENDING
    ApprovalRequest.objects.filter(pk=approval.id).update(
        status=approval.status,
        decided_by=str((approval.decided_by or {}).get("username", ""))[:150]
        if approval.decided_by
        else ("system" if decided else ""),
        decided_at=now if decided else None,
        decision_reason=approval.decision_reason,
        version=approval.version,
        position=position,
    )


def fingerprint(kind: str, command: dict[str, Any]) -> str:
    """The queue's key for "the same command" (one pending request per key): the kind
    and the arguments, a transfer's generated id aside."""
    same = {key: value for key, value in command.items() if key != "transfer_id"}
    text = json.dumps([kind, same], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = [
    "ApprovalExpired",
    "Planned",
    "Preview",
    "approve",
    "expire_due",
    "fingerprint",
    "get",
    "needs_approval",
    "plan",
    "policy",
    "preview",
    "queue",
    "reject",
    "request",
]
