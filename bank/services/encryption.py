"""Personal fields encrypted under their subject's data key, and revealed for reading.

``protect`` encrypts a personal field for the events (``bank.privacy`` does the
cryptography); ``reveal`` turns a stored value back into text: the clear name, ``[erased]``
once the key is gone, or the value itself for events written before encryption (schema
version 1 of ``AccountOpened``, which hold names in clear: they cannot be rewritten).

Unwrapped keys are kept in memory for ``PII_KEY_CACHE_SECONDS``: an erasure made by another
process shows there within that time (at once in the erasing process, and at once in every
account loaded from its events, which carry ``PersonalDataErased``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bank import privacy
from bank.models import PersonalDataKey

# The personal fields of each event type: encrypted when written, revealed when read.
PERSONAL_FIELDS: dict[str, tuple[str, ...]] = {"AccountOpened": ("holder_name",)}

_lock = threading.Lock()
_cache: dict[uuid.UUID, tuple[float, bytes | None]] = {}
_master: tuple[str, privacy.MasterKeys] | None = None
_generation = 0
# Subjects whose key row was created by a transaction not known to have committed: their
# key is never cached from a read (that read could see the uncommitted row, and a rollback
# would leave a key in memory that the database does not hold).
_uncommitted: set[uuid.UUID] = set()


def master_keys() -> privacy.MasterKeys:
    """The configured master keys (parsed once per value of the setting)."""
    global _master
    text = settings.PII_MASTER_KEYS
    if _master is None or _master[0] != text:
        # The settings checked the value against DEBUG at start (the development key is
        # refused without it); here it is only parsed (Django's tests turn DEBUG off).
        _master = (text, privacy.parse_master_keys(text, debug=True))
    return _master[1]


def forget_cached_keys() -> None:
    """Drop every unwrapped key this process holds (after an erasure, or in tests).

    A key read before the call and remembered after it is not kept (the generation it was
    read in is over), so a reader racing an erasure in this process cannot re-cache it.
    """
    global _generation
    with _lock:
        _cache.clear()
        _generation += 1


def _current_generation() -> int:
    with _lock:
        return _generation


def data_key(subject: uuid.UUID, *, create: bool = False) -> bytes | None:
    """The subject's unwrapped data key, or None when it was erased (or never existed).

    Args:
        create: make one when there is none (only when writing a new subject's data).
    """
    now = time.monotonic()
    ttl = settings.PII_KEY_CACHE_SECONDS
    with _lock:
        cached = _cache.get(subject)
        generation = _generation
    if cached is not None and now - cached[0] < ttl and (cached[1] is not None or not create):
        return cached[1]
    if create:
        key = privacy.new_data_key()
        if _insert_key(subject, key):
            # Remembered once the row is committed: a rolled-back open must not leave a
            # key in memory that the database does not hold.
            with _lock:
                _uncommitted.add(subject)
            transaction.on_commit(lambda: _committed(subject, key, generation))
            return key
    row = PersonalDataKey.objects.filter(subject_id=subject).first()
    found = (
        master_keys().unwrap(subject, row.master_key_id, bytes(row.wrapped_key))
        if row is not None
        else None
    )
    _remember(subject, found, generation)
    return found


def _insert_key(subject: uuid.UUID, key: bytes) -> bool:
    """Store a new data key for ``subject`` unless it has one; whether this one was stored.

    One statement (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, PostgreSQL and SQLite
    3.35+), so opening an account costs one round trip for its key, not a read, a savepoint
    and an insert.
    """
    key_id, wrapped = master_keys().wrap(subject, key)
    meta = PersonalDataKey._meta
    quote = connection.ops.quote_name
    values = [
        meta.get_field("subject_id").get_db_prep_value(subject, connection),
        key_id,
        meta.get_field("wrapped_key").get_db_prep_value(wrapped, connection),
        meta.get_field("created_at").get_db_prep_value(timezone.now(), connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} (subject_id, master_key_id, wrapped_key, "
            "created_at) VALUES (%s, %s, %s, %s) ON CONFLICT (subject_id) DO NOTHING "
            "RETURNING subject_id",
            values,
        )
        return cursor.fetchone() is not None


def _committed(subject: uuid.UUID, key: bytes, generation: int) -> None:
    with _lock:
        _uncommitted.discard(subject)
    _remember(subject, key, generation)


def prefetch(subjects: Iterable[uuid.UUID]) -> None:
    """Read the data keys of many subjects in one query (a projection's batch of openings,
    a rebuild), so that revealing their names costs no query each."""
    now = time.monotonic()
    ttl = settings.PII_KEY_CACHE_SECONDS
    if ttl <= 0:
        return
    with _lock:
        generation = _generation
        wanted = {
            subject
            for subject in subjects
            if (cached := _cache.get(subject)) is None or now - cached[0] >= ttl
        }
    if not wanted:
        return
    keys = master_keys()
    found = {
        row.subject_id: keys.unwrap(row.subject_id, row.master_key_id, bytes(row.wrapped_key))
        for row in PersonalDataKey.objects.filter(subject_id__in=wanted)
    }
    for subject in wanted:
        _remember(subject, found.get(subject), generation)


def _remember(subject: uuid.UUID, key: bytes | None, generation: int) -> None:
    """Cache a key read in ``generation``, unless the cache was cleared since (an erasure)
    or the subject's key row may not be committed yet."""
    if settings.PII_KEY_CACHE_SECONDS > 0:
        with _lock:
            if generation == _generation and subject not in _uncommitted:
                _cache[subject] = (time.monotonic(), key)


def protect(subject: uuid.UUID, field: str, text: str) -> str:
    """The token that stores ``text``, a personal field of ``subject``."""
    key = data_key(subject, create=True)
    assert key is not None
    return privacy.encrypt(key, subject, field, text)


def protect_event_data(
    event_type: str, subject: uuid.UUID, data: dict[str, Any]
) -> dict[str, Any]:
    """``data`` with its personal fields encrypted (a copy; others returned as they are)."""
    fields = PERSONAL_FIELDS.get(event_type)
    if not fields:
        return data
    protected = dict(data)
    for field in fields:
        value = protected.get(field)
        if isinstance(value, str) and not privacy.is_token(value):
            protected[field] = protect(subject, field, value)
    return protected


def is_protected(value: str) -> bool:
    """Whether a stored personal field is a token (encrypted), not text in clear."""
    return privacy.is_token(value)


def reveal(value: str, field: str) -> str:
    """What a stored personal field says: the text, ``[erased]`` when its key is gone, the
    value itself when it is not a token (written before encryption, or the erased mark).

    A token that does not decrypt (altered in the database) raises: that is an integrity
    failure, not an erasure.

    Raises:
        privacy.PersonalDataKeyError: the token or its wrapped key was altered.
    """
    if not privacy.is_token(value):
        return value
    key = data_key(privacy.token_subject(value))
    if key is None:
        return privacy.ERASED
    return privacy.decrypt(key, value, field)


def reveal_event_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event's payload with its personal fields revealed (for staff pages and the API)."""
    fields = PERSONAL_FIELDS.get(event_type)
    if not fields:
        return data
    shown = dict(data)
    for field in fields:
        if isinstance(shown.get(field), str):
            shown[field] = reveal(shown[field], field)
    return shown


def rotate(batch: int = 500) -> tuple[int, int]:
    """Re-wrap every data key not wrapped by the current master key; return (re-wrapped,
    all). Each batch commits on its own: an interrupted rotation resumes where it stopped.

    Raises:
        privacy.PersonalDataKeyError: a key wrapped by a master key no longer configured,
            or altered.
    """
    keys = master_keys()
    total = PersonalDataKey.objects.count()
    moved = 0
    while True:
        with transaction.atomic():
            rows = list(
                PersonalDataKey.objects.select_for_update()
                .exclude(master_key_id=keys.current)
                .order_by("subject_id")[:batch]
            )
            if not rows:
                return moved, total
            for row in rows:
                key = keys.unwrap(row.subject_id, row.master_key_id, bytes(row.wrapped_key))
                row.master_key_id, row.wrapped_key = keys.wrap(row.subject_id, key)
            PersonalDataKey.objects.bulk_update(rows, ["master_key_id", "wrapped_key"])
            moved += len(rows)


def key_problems() -> list[str]:
    """Whether ``PII_MASTER_KEYS`` opens the stored data keys: one key per master key id
    that wrapped any is unwrapped; each that fails is named with what to do. (A wrong or
    missing master key would otherwise show only when a name is first read.)"""
    try:
        keys = master_keys()
    except privacy.PersonalDataKeyError as exc:
        return [f"PII_MASTER_KEYS: {exc}"]
    problems = []
    key_ids = PersonalDataKey.objects.values_list("master_key_id", flat=True).distinct()
    for key_id in sorted(key_ids):
        row = PersonalDataKey.objects.filter(master_key_id=key_id).first()
        if row is None:
            continue  # erased meanwhile
        try:
            keys.unwrap(row.subject_id, key_id, bytes(row.wrapped_key))
        except privacy.PersonalDataKeyError as exc:
            count = PersonalDataKey.objects.filter(master_key_id=key_id).count()
            problems.append(
                f"{count} data key(s) wrapped by master key {key_id!r} do not open: {exc} "
                "(set PII_MASTER_KEYS to the keys the data was written with; names read "
                "until then fail)"
            )
    return problems
