"""Account events: immutable facts, named in the past tense, with a stable JSON form.

Event type names and field names are part of the public contract: never rename them; add
new ones and upcast old payloads instead.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEvent:
    """Base of the account events."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def to_data(self) -> dict[str, Any]:
        """Return the event's JSON payload."""
        data = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = str(value) if isinstance(value, uuid.UUID) else value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> AccountEvent:
        """Build the event from its (current-schema) JSON payload."""
        names, uuids, optional = _FIELDS.get(cls) or _fields_of(cls)
        if not uuids and not optional:
            # The common case on replay: the payload has exactly the fields.
            try:
                return cls(**data)
            except TypeError:
                pass  # extra fields (ignored below) or a missing one (KeyError below)
        kwargs = {name: data[name] for name in names if name not in optional or name in data}
        for name in uuids:
            if kwargs.get(name) is not None:
                kwargs[name] = uuid.UUID(kwargs[name])
        return cls(**kwargs)


_FIELDS: dict[type, tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]] = {}
_UUID_TYPES = ("uuid.UUID", uuid.UUID, "uuid.UUID | None")


def _fields_of(cls: type) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]:
    fields = dataclasses.fields(cls)
    found = (
        tuple(f.name for f in fields),
        tuple(f.name for f in fields if f.type in _UUID_TYPES),
        # Fields with a default may be absent from a payload (older writers left them out).
        frozenset(f.name for f in fields if f.default is not dataclasses.MISSING),
    )
    _FIELDS[cls] = found
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountOpened(AccountEvent):
    """An account is opened.

    Schema version 2: ``holder_name`` is stored as a personal-data token (encrypted under
    the account's data key, see ``bank.privacy``); version 1, written before, holds it in
    clear. Readers accept both; the domain treats the value as opaque once stored.
    """

    event_type: ClassVar[str] = "AccountOpened"
    schema_version: ClassVar[int] = 2
    holder_name: str
    currency: str
    initial_balance_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyDeposited(AccountEvent):
    event_type: ClassVar[str] = "MoneyDeposited"
    amount_cents: int
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyWithdrawn(AccountEvent):
    event_type: ClassVar[str] = "MoneyWithdrawn"
    amount_cents: int
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountFrozen(AccountEvent):
    event_type: ClassVar[str] = "AccountFrozen"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUnfrozen(AccountEvent):
    event_type: ClassVar[str] = "AccountUnfrozen"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountClosed(AccountEvent):
    event_type: ClassVar[str] = "AccountClosed"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSent(AccountEvent):
    """Money left this account for another; the other side is a TransferReceived."""

    event_type: ClassVar[str] = "TransferSent"
    transfer_id: uuid.UUID
    to_account: uuid.UUID
    amount_cents: int
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReceived(AccountEvent):
    """Money arrived from another account; the other side is a TransferSent."""

    event_type: ClassVar[str] = "TransferReceived"
    transfer_id: uuid.UUID
    from_account: uuid.UUID
    amount_cents: int
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PostingReversed(AccountEvent):
    """A posting of this account is undone: the same amount, the opposite effect.

    ``reversed_version`` / ``reversed_event_id`` name the original posting in this stream;
    a transfer's reversal records one of these on each side, both carrying
    ``transfer_id``. ``amount_cents`` is positive; ``balance_change_cents`` says which way
    the money moves here (the opposite of the original's).
    """

    event_type: ClassVar[str] = "PostingReversed"
    reversed_event_id: uuid.UUID
    reversed_version: int
    reversed_event_type: str
    amount_cents: int
    balance_change_cents: int
    reason: str
    transfer_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonalDataErased(AccountEvent):
    """The holder's personal data was erased (their data key deleted): who and when are in
    the metadata, why here. Holds no personal data itself."""

    event_type: ClassVar[str] = "PersonalDataErased"
    reason: str


EVENT_TYPES: dict[str, type[AccountEvent]] = {
    cls.event_type: cls
    for cls in (
        AccountOpened,
        MoneyDeposited,
        MoneyWithdrawn,
        AccountFrozen,
        AccountUnfrozen,
        AccountClosed,
        TransferSent,
        TransferReceived,
        PostingReversed,
        PersonalDataErased,
    )
}


def event_from_data(event_type: str, data: dict[str, Any]) -> AccountEvent:
    """Rebuild a domain event from its stored type name and payload.

    Raises:
        KeyError: the type is not an account event.
    """
    return EVENT_TYPES[event_type].from_data(data)
