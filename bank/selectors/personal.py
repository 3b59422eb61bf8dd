"""Personal fields as the admin shows them: what is stored, and what it says.

The events and snapshots store a personal field (an ``AccountOpened``'s ``holder_name``) as a
``pii:v1:`` token; ``bank.services.encryption.reveal`` turns it into the clear text, or
``[erased]`` once the holder's data key is gone. The admin shows both: the stored payload
verbatim (the hash chain covers exactly those bytes) with every encrypted field marked, and
the fields decrypted beside it.

Events written before encryption (``AccountOpened`` schema version 1) hold the name in
clear. Once the holder's personal data is erased (a ``PersonalDataErased`` event), such a
clear value is no longer shown either: ``stored_for_display`` replaces it with
``HIDDEN_CLEAR`` (the bytes stay in the database; README, "Data written before encryption").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from bank import privacy
from bank.services import encryption, repository
from bank.services.accounts import AccountState
from bank.services.errors import ServiceError
from projections.models import AccountBalance

# The personal fields of an account snapshot's state (the aggregate's own copy of the name).
SNAPSHOT_FIELDS = ("holder_name",)
# What the stored view shows instead of a name an earlier release stored in clear, once the
# holder's personal data was erased.
HIDDEN_CLEAR = "[erased: stored in clear by a release before encryption, not shown]"
# A token whose ciphertext or wrapped key does not open: an integrity failure, not an erasure.
UNREADABLE = "[cannot be decrypted: {error}]"


@dataclass(frozen=True, slots=True)
class PersonalField:
    """One personal field of an event or snapshot.

    ``encrypted``: stored as a token (False: stored in clear, before encryption);
    ``shown``: what it says (the clear text, ``[erased]``, or why it cannot be read).
    """

    name: str
    encrypted: bool
    shown: str

    @property
    def erased(self) -> bool:
        return self.shown in (privacy.ERASED, HIDDEN_CLEAR)


def fields_of(event_type: str | None) -> tuple[str, ...]:
    """The personal fields of an event type (``None``: an account snapshot's state)."""
    if event_type is None:
        return SNAPSHOT_FIELDS
    return encryption.PERSONAL_FIELDS.get(event_type, ())


def _reveal(value: str, field: str, erased: bool) -> tuple[bool, str]:
    if not privacy.is_token(value):
        if erased and value != privacy.ERASED:
            return False, privacy.ERASED
        return False, value
    try:
        return True, encryption.reveal(value, field)
    except privacy.PersonalDataKeyError as exc:
        return True, UNREADABLE.format(error=exc)


def personal_fields(
    event_type: str | None, data: dict[str, Any] | None, *, erased: bool
) -> list[PersonalField]:
    """The personal fields ``data`` holds, each revealed.

    Args:
        event_type: the event's type, or None for an account snapshot's state.
        erased: whether the holder's personal data was erased (``is_erased``): a value
            stored in clear then reads ``[erased]`` too.
    """
    found = []
    for name in fields_of(event_type):
        value = (data or {}).get(name)
        if isinstance(value, str):
            encrypted, shown = _reveal(value, name, erased)
            found.append(PersonalField(name=name, encrypted=encrypted, shown=shown))
    return found


def stored_for_display(
    event_type: str | None, data: dict[str, Any] | None, *, erased: bool
) -> dict[str, Any]:
    """``data`` as stored, except a personal field stored in clear once the holder's data is
    erased (``HIDDEN_CLEAR`` instead): tokens stay exactly as they are."""
    shown = dict(data or {})
    if erased:
        for name in fields_of(event_type):
            value = shown.get(name)
            if isinstance(value, str) and not privacy.is_token(value) and value != privacy.ERASED:
                shown[name] = HIDDEN_CLEAR
    return shown


def is_erased(account_id: uuid.UUID) -> bool:
    """Whether the account's holder had their personal data erased (a ``PersonalDataErased``
    event in its stream): from its events, or, for a stream this release cannot read, from
    the balance read model (its row reads ``[erased]`` once the event reached it)."""
    try:
        return repository.load_one(account_id).holder_name == privacy.ERASED
    except ServiceError:
        return erased_by_read_model([account_id]) != set()


def erased_by_read_model(account_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The accounts among ``account_ids`` the balance read model shows erased (one query)."""
    ids = list(dict.fromkeys(account_ids))
    if not ids:
        return set()
    return set(
        AccountBalance.objects.filter(account_id__in=ids, holder_name=privacy.ERASED).values_list(
            "account_id", flat=True
        )
    )


def as_shown_now(past: AccountState, now: AccountState) -> AccountState:
    """A past state of the account (time travel, a comparison) as it may be shown now:
    ``[erased]`` once the holder's data is erased, whatever the version (an encrypted name
    reads so already; a name an earlier release stored in clear would not)."""
    if now.holder_name == privacy.ERASED and past.holder_name != privacy.ERASED:
        return replace(past, holder_name=privacy.ERASED)
    return past
