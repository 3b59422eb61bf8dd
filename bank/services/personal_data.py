"""Personal data: erasure (crypto-shredding), its re-application after a restore, and the
subject's access request. (Encryption and reading are ``encryption``'s.)

``erase`` appends ``PersonalDataErased`` and deletes the
key in one transaction; ``reapply`` deletes again the keys a restored backup brought back;
``export`` gathers what the bank holds about a holder (GDPR Art. 15).

The subject of an account's personal data is the account (its holder).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Unpack

from django.db import transaction
from django.db.models import TextField
from django.db.models.functions import Cast

import eventstore as es
from bank import privacy
from bank.domain import STREAM_TYPE, PersonalDataErased
from bank.domain.errors import ErasureNotAllowed
from bank.models import ApprovalRequest, IdempotencyRecord, PersonalDataKey

from . import encryption, unit_of_work
from .accounts import AccountState, account_events, get_account
from .context import Actor, CommandContext, Metadata
from .telemetry import command_span

# --- erasure --------------------------------------------------------------------------


def erase(
    *,
    account_id: uuid.UUID,
    reason: str,
    actor: Actor,
    **metadata: Unpack[Metadata],
) -> AccountState:
    """Erase the holder's personal data: append ``PersonalDataErased`` and delete the data
    key, in one transaction.

    The rules: the account is closed (so its balance is zero) and not erased already (the
    domain's ``erase_personal_data``), and no approval request about it is pending.

    Raises:
        ErasureNotAllowed: one of those rules.
        AccountNotFound, ConcurrencyConflict: see ``unit_of_work.run``.
    """
    context = CommandContext.of(actor, **metadata)
    with command_span("erase_personal_data", account_id, None):
        with transaction.atomic():
            pending = ApprovalRequest.objects.filter(
                account_id=account_id, status="pending"
            ) | ApprovalRequest.objects.filter(counterparty_id=account_id, status="pending")
            waiting = pending.values_list("id", flat=True).first()
            if waiting is not None:
                raise ErasureNotAllowed(
                    f"approval request {waiting} about account {account_id} is pending: "
                    "decide it first",
                    approval_id=str(waiting),
                )
            # The key and the stored answers first, the append last: the append takes the
            # store's append lock, held until commit, and nothing slow may run under it.
            # A refusal by the domain rolls all of it back.
            PersonalDataKey.objects.filter(subject_id=account_id).delete()
            _redact_stored_answers(account_id)
            done = unit_of_work.run(
                "erase_personal_data",
                [account_id],
                lambda loaded: loaded[0].account.erase_personal_data(reason),
                context=context,
            )
        encryption.forget_cached_keys()
        return AccountState.of(done.accounts[0].account, done.position)


def _redact_stored_answers(account_id: uuid.UUID) -> int:
    """Replace the holder's name in the API answers kept for ``Idempotency-Key`` replays
    (an answer about the account holds it in clear); return how many were changed.

    Only ``holder_name`` members of objects whose ``id`` is the account are touched, so a
    replay still gives the first answer's shape, with the name as every reader now shows
    it. The records are few (kept ``IDEMPOTENCY_KEY_TTL_HOURS``) and found by the
    account's id in their text.
    """
    wanted = str(account_id)
    changed = 0
    rows = IdempotencyRecord.objects.annotate(text=Cast("response_body", TextField())).filter(
        text__contains=wanted
    )
    for record in rows.select_for_update():
        body, hits = _redacted(record.response_body, wanted)
        if hits:
            record.response_body = body
            record.save(update_fields=["response_body"])
            changed += 1
    return changed


def _redacted(value: Any, account: str) -> tuple[Any, int]:
    if isinstance(value, list):
        pairs = [_redacted(item, account) for item in value]
        return [item for item, _ in pairs], sum(hits for _, hits in pairs)
    if isinstance(value, dict):
        hits = 0
        out = {}
        for key, item in value.items():
            out[key], inner = _redacted(item, account)
            hits += inner
        if out.get("id") == account and out.get("holder_name") not in (None, privacy.ERASED):
            out["holder_name"] = privacy.ERASED
            hits += 1
        return out, hits
    return value, 0


def erased_subjects(
    *, batch: int = 5000, on_batch: Callable[[int, int], None] | None = None
) -> Iterator[uuid.UUID]:
    """Every account with a ``PersonalDataErased`` event, in the global order (reads the
    whole store: for ``--reapply`` after a restore).

    Args:
        on_batch: called with (position reached, head) after each batch (progress).
    """
    head = es.head_position()
    after = 0
    while after < head:
        events = es.read_all(after_position=after, limit=batch)
        if not events:
            break
        for event in events:
            if (
                event.event_type == PersonalDataErased.event_type
                and event.stream_type == STREAM_TYPE
            ):
                yield event.stream_id
        after = events[-1].position
        if on_batch is not None:
            on_batch(after, head)


def reapply(
    *,
    also: Iterable[uuid.UUID] = (),
    on_batch: Callable[[int, int], None] | None = None,
) -> list[uuid.UUID]:
    """Delete again the data key of every subject erased before: a backup restored from
    before an erasure brings the key back. Returns the subjects whose key was deleted now.

    Args:
        also: subjects erased according to a record kept outside this database (the
            erasure register, or the ``PersonalDataErased`` messages on the event bus): a
            dump older than an erasure holds neither its event nor the deletion.
    """
    deleted = []
    for subject in dict.fromkeys([*erased_subjects(on_batch=on_batch), *also]):
        if PersonalDataKey.objects.filter(subject_id=subject).delete()[0]:
            deleted.append(subject)
    encryption.forget_cached_keys()
    return deleted


def export(account_id: uuid.UUID) -> dict[str, Any]:
    """Everything the bank holds about an account's holder, from the events (Art. 15).

    Raises:
        AccountNotFound: no such account.
    """
    state = get_account(account_id)
    events = account_events(account_id)
    return {
        "subject": str(account_id),
        "account": {
            "id": str(state.id),
            "holder_name": state.holder_name,
            "currency": state.currency,
            "balance_cents": state.balance_cents,
            "status": state.status,
            "version": state.version,
        },
        "personal_data_erased": state.holder_name == privacy.ERASED,
        "events": [
            {
                "event_id": str(event.event_id),
                "version": event.version,
                "position": event.position,
                "event_type": event.event_type,
                "occurred_at": event.occurred_at.isoformat(),
                "data": encryption.reveal_event_data(event.event_type, event.data),
                "actor": (event.metadata.get("actor") or {}).get("username"),
            }
            for event in events
        ],
    }
