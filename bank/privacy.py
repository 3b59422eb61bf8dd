"""Envelope encryption of personal data (crypto-shredding), without Django.

Every personal field is stored as a token ``pii:v1:<subject>:<base64url(nonce | ciphertext |
tag)>``: AES-256-GCM under the data key of its data subject (the account, whose holder the
person is), with the subject and the field's name as associated data, so a token cannot be
moved to another subject or field unnoticed. Data keys are random 256-bit keys, stored
wrapped (AES-256-GCM again) by a master key that only the application holds
(``PII_MASTER_KEYS``: ``key_id:base64`` of 32 bytes, comma-separated, the first one wraps
new keys, the others still unwrap: rotation). Deleting a subject's data key makes every
token of that subject unreadable for good: the events keep their ciphertext, and the hash
chain, which covers exactly what is stored, verifies before and after.

``cryptography``'s AESGCM is the primitive (public API); nothing here is hand-rolled crypto.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bank.domain import ERASED_NAME

TOKEN_PREFIX = "pii:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
# What a reader shows where a personal field's key was erased.
ERASED = ERASED_NAME
# The development master key (public: in this file), accepted only under DEBUG.
DEV_KEY_ID = "dev"
_DEV_KEY = base64.b64encode(b"ledgerline-development-pii-key!!").decode()
_TOKEN = re.compile(
    r"pii:v1:(?P<subject>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):"
    r"(?P<body>[A-Za-z0-9_-]+={0,2})"
)
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class PersonalDataKeyError(ValueError):
    """``PII_MASTER_KEYS`` is malformed, or a wrapped key does not open."""


@dataclass(frozen=True, slots=True)
class MasterKeys:
    """The application's master keys: ``current`` wraps new data keys; all unwrap."""

    current: str
    keys: dict[str, bytes]

    def wrap(self, subject: uuid.UUID, data_key: bytes) -> tuple[str, bytes]:
        """Wrap a data key under the current master key: (master key id, nonce | ct)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, data_key, _wrap_aad(subject))
        return self.current, nonce + sealed

    def unwrap(self, subject: uuid.UUID, key_id: str, wrapped: bytes) -> bytes:
        """Raises: PersonalDataKeyError: an unknown master key id, or a key that does not
        open (tampered, or wrapped for another subject)."""
        master = self.keys.get(key_id)
        if master is None:
            raise PersonalDataKeyError(
                f"the data key of {subject} is wrapped by master key {key_id!r}, which "
                "PII_MASTER_KEYS does not hold: add it back (keys rotated out must stay "
                "until personal_data_key --rotate has re-wrapped every data key)"
            )
        try:
            return AESGCM(master).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(subject)
            )
        except InvalidTag as exc:
            raise PersonalDataKeyError(
                f"the data key of {subject} does not open with master key {key_id!r}: "
                "it was altered in the database"
            ) from exc


def parse_master_keys(text: str, *, debug: bool) -> MasterKeys:
    """Parse ``PII_MASTER_KEYS``.

    Raises:
        PersonalDataKeyError: saying what is wrong (and, without DEBUG, that it is required
            and that the development key is refused).
    """
    if not text.strip():
        if not debug:
            raise PersonalDataKeyError(
                "PII_MASTER_KEYS is required without DEBUG: key_id:base64 of 32 random "
                "bytes (make one with: python manage.py personal_data_key --new k2027)"
            )
        text = f"{DEV_KEY_ID}:{_DEV_KEY}"
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise PersonalDataKeyError(
                f"PII_MASTER_KEYS: {key_id!r} is not key_id:base64 (an id of letters, digits, "
                "'.', '_' or '-', up to 32)"
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PersonalDataKeyError(f"PII_MASTER_KEYS: key {key_id} is not base64") from exc
        if len(key) != KEY_BYTES:
            raise PersonalDataKeyError(
                f"PII_MASTER_KEYS: key {key_id} has {len(key)} bytes, not {KEY_BYTES}"
            )
        if key_id in keys:
            raise PersonalDataKeyError(f"PII_MASTER_KEYS: key {key_id} is given twice")
        if key_id == DEV_KEY_ID and not debug:
            raise PersonalDataKeyError(
                "PII_MASTER_KEYS: the development key (id 'dev') is public and refused "
                "without DEBUG"
            )
        keys[key_id] = key
        order.append(key_id)
    if not order:
        raise PersonalDataKeyError("PII_MASTER_KEYS holds no key")
    return MasterKeys(order[0], keys)


def dev_master_key_text() -> str:
    """The public development master key (``PII_MASTER_KEYS`` under DEBUG when unset)."""
    return f"{DEV_KEY_ID}:{_DEV_KEY}"


def new_master_key_text(key_id: str) -> str:
    """A new master key as ``key_id:base64`` (for the key command)."""
    if not _KEY_ID.fullmatch(key_id):
        raise PersonalDataKeyError(f"{key_id!r} is not a valid key id")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def encrypt(data_key: bytes, subject: uuid.UUID, field: str, text: str) -> str:
    """The token of ``text`` (a personal field of ``subject``)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key).encrypt(nonce, text.encode(), _aad(subject, field))
    body = base64.urlsafe_b64encode(nonce + sealed).decode()
    return f"{TOKEN_PREFIX}{subject}:{body}"


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def token_subject(token: str) -> uuid.UUID:
    """The data subject a token belongs to.

    Raises:
        PersonalDataKeyError: not a well-formed token.
    """
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise PersonalDataKeyError("not a well-formed personal-data token")
    return uuid.UUID(match["subject"])


def decrypt(data_key: bytes, token: str, field: str) -> str:
    """The text of a token.

    Raises:
        PersonalDataKeyError: malformed, altered, or meant for another subject or field.
    """
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise PersonalDataKeyError("not a well-formed personal-data token")
    raw = base64.urlsafe_b64decode(match["body"])
    try:
        plain = AESGCM(data_key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(uuid.UUID(match["subject"]), field)
        )
    except InvalidTag as exc:
        raise PersonalDataKeyError(
            f"a {field} of {match['subject']} does not decrypt: altered, or moved from "
            "another subject or field"
        ) from exc
    return plain.decode()


def _aad(subject: uuid.UUID, field: str) -> bytes:
    return f"pii:v1:{subject}:{field}".encode()


def _wrap_aad(subject: uuid.UUID) -> bytes:
    return f"pii-key:v1:{subject}".encode()
