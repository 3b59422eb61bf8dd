"""Ed25519 seals over the hash chains: what a database writer without the key cannot forge.

The SHA-256 chain (``hashing``) shows that stored rows still agree with each other; it has
no secret, so anyone who can INSERT can extend it consistently. The application therefore
signs, with a private key that never enters the database:

- every append: one signature per stream it touched, over the versions it appended and
  the stream's new head (``seal_message``). The signature is stored on the stream's last
  event of the append; the append's earlier events are covered by it (their versions are
  in the signed range and the head's chain covers their content). So an event that no
  signature's range covers was appended by someone else, even when the application later
  appended on top of it: the range of that later append does not start where the last
  covered version ends.
- every snapshot: over (stream, version, schema version, the state's canonical JSON hash,
  the hash of the event at its version: the anchor) (``snapshot_message``).

Verifying needs only public keys, so an auditor or a regulator can check a store, or an
evidence pack (``export_evidence``), without being able to sign anything.

Keys: ``EVENTSTORE_SIGNING_KEY`` is ``key_id:base64`` of the 32-byte Ed25519 seed, or the
path of a file holding that text; ``EVENTSTORE_VERIFY_KEYS`` lists public keys as
``key_id:base64`` (32 raw bytes), comma-separated. The signing key's own public half is
always trusted. Rotating: sign with a new key id and keep the old public key in
``EVENTSTORE_VERIFY_KEYS``.

The messages are plain text so that a short standalone script (README, "Evidence pack")
can rebuild them::

    eventstore-seal/1\\n<stream id>\\n<first version>\\n<last version>\\n<last event's hash>
    eventstore-snapshot/1\\n<stream id>\\n<version>\\n<schema version>\\n<anchor>\\n<sha256 of state>
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SEAL_FORMAT = "eventstore-seal/1"
SNAPSHOT_FORMAT = "eventstore-snapshot/1"
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
# The key used when DEBUG is on and no key is configured: derived from a public constant,
# so a development store keeps verifying across restarts, and worthless for anything else
# (settings refuse it without DEBUG).
DEV_KEY_ID = "dev"
_DEV_SEED = hashlib.sha256(b"eventstore development signing key: not a secret").digest()


class KeyConfigError(ValueError):
    """A key setting cannot be used as given (the message says which and why)."""


class UnknownKeyError(LookupError):
    """A signature names a key id no configured public key has."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(
            f"unknown key id {key_id!r}: if it is a key you rotated out, add its public key "
            "to EVENTSTORE_VERIFY_KEYS (key_id:base64); if nobody here ever used it, treat it "
            "as tampering"
        )


def seal_message(stream_id: uuid.UUID, first: int, version: int, event_hash: str) -> bytes:
    """The bytes an append's signature covers for one stream: the versions it appended
    (``first`` to ``version``) and the new head's hash."""
    return f"{SEAL_FORMAT}\n{stream_id}\n{first}\n{version}\n{event_hash}".encode("ascii")


def state_hash(canonical_state: str) -> str:
    """SHA-256 hex of a snapshot state's canonical JSON text."""
    return hashlib.sha256(canonical_state.encode("utf-8")).hexdigest()


def snapshot_message(
    stream_id: uuid.UUID, version: int, schema_version: int, anchor: str, canonical_state: str
) -> bytes:
    """The bytes a snapshot's signature covers."""
    return (
        f"{SNAPSHOT_FORMAT}\n{stream_id}\n{version}\n{schema_version}\n{anchor}\n"
        f"{state_hash(canonical_state)}"
    ).encode("ascii")


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyConfigError(f"{what}: not valid base64 ({exc})") from exc
    if len(raw) != 32:
        raise KeyConfigError(f"{what}: {len(raw)} bytes after base64; an Ed25519 key has 32")
    return raw


def _split(entry: str, what: str) -> tuple[str, str]:
    key_id, sep, value = entry.strip().partition(":")
    if not sep or not value:
        raise KeyConfigError(f"{what}: expected key_id:base64, got {entry.strip()[:20]!r}…")
    if not KEY_ID.match(key_id):
        raise KeyConfigError(
            f"{what}: key id {key_id!r} must be 1 to 40 letters, digits, '.', '_' or '-'"
        )
    return key_id, value


def public_key_text(key: Ed25519PublicKey) -> str:
    """The base64 of a public key's 32 raw bytes (the form EVENTSTORE_VERIFY_KEYS takes)."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


@dataclass(frozen=True)
class Keyring:
    """The key that signs (if this process may sign) and every public key that verifies."""

    signing_key_id: str | None
    signing_key: Ed25519PrivateKey | None
    public_keys: dict[str, Ed25519PublicKey]

    def sign(self, message: bytes) -> tuple[str, str]:
        """Return (key id, base64 signature) of ``message``.

        Raises:
            KeyConfigError: this keyring holds public keys only.
        """
        if self.signing_key is None or self.signing_key_id is None:
            raise KeyConfigError(
                "this process holds public keys only (EVENTSTORE_VERIFY_KEYS without "
                "EVENTSTORE_SIGNING_KEY): it can verify the store, not write to it"
            )
        return self.signing_key_id, base64.b64encode(self.signing_key.sign(message)).decode()

    def verify(self, key_id: str, signature: str, message: bytes) -> bool:
        """Whether ``signature`` is ``key_id``'s signature of ``message``.

        Raises:
            UnknownKeyError: no public key has this id.
        """
        key = self.public_keys.get(key_id)
        if key is None:
            raise UnknownKeyError(key_id)
        try:
            key.verify(base64.b64decode(signature, validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def public_key_texts(self) -> dict[str, str]:
        """Every trusted public key as ``{key_id: base64}``."""
        return {key_id: public_key_text(key) for key_id, key in sorted(self.public_keys.items())}


def generate_key_text(key_id: str) -> str:
    """A new signing key in the ``EVENTSTORE_SIGNING_KEY`` form."""
    if not KEY_ID.match(key_id):
        raise KeyConfigError(f"key id {key_id!r} must be 1 to 40 letters, digits, '.', '_' or '-'")
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    seed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return f"{key_id}:{base64.b64encode(seed).decode('ascii')}"


def parse_public_keys(verify: str) -> dict[str, Ed25519PublicKey]:
    """``EVENTSTORE_VERIFY_KEYS`` (comma-separated ``key_id:base64``) as ``{key_id: key}``."""
    public: dict[str, Ed25519PublicKey] = {}
    for entry in filter(None, (part.strip() for part in verify.split(","))):
        key_id, value = _split(entry, "EVENTSTORE_VERIFY_KEYS")
        if key_id in public:
            raise KeyConfigError(f"EVENTSTORE_VERIFY_KEYS: key id {key_id!r} is listed twice")
        public[key_id] = Ed25519PublicKey.from_public_bytes(
            _b64(value, f"EVENTSTORE_VERIFY_KEYS {key_id}")
        )
    return public


def dev_key_text() -> str:
    """The development key in the ``EVENTSTORE_SIGNING_KEY`` form (settings use it when
    DEBUG is on and no key is set)."""
    return f"{DEV_KEY_ID}:{base64.b64encode(_DEV_SEED).decode('ascii')}"


def parse_keyring(signing: str, verify: str, *, debug: bool) -> Keyring:
    """Build the keyring from the two settings' text.

    Args:
        signing: ``EVENTSTORE_SIGNING_KEY``: ``key_id:base64`` or a file path; empty for none.
        verify: ``EVENTSTORE_VERIFY_KEYS``: comma-separated ``key_id:base64`` public keys.
        debug: with DEBUG on, no signing key means the development key.

    Raises:
        KeyConfigError: a value cannot be used; the message names the setting and the fix.
    """
    signing = signing.strip()
    if signing.startswith(("/", "./", "~")) or (signing and Path(signing).is_file()):
        path = Path(signing).expanduser()
        try:
            signing = path.read_text().strip()
        except OSError as exc:
            raise KeyConfigError(f"EVENTSTORE_SIGNING_KEY: cannot read {path}: {exc}") from exc
    public = parse_public_keys(verify)
    if not signing:
        if public and not debug:
            # A verifier (an auditor's copy, a read-only job): public keys, nothing to sign.
            return Keyring(None, None, public)
        if not debug:
            raise KeyConfigError(
                "EVENTSTORE_SIGNING_KEY is not set. Generate one with `python manage.py "
                "signing_key --new KEY_ID`, keep it out of the database, and set it (or set "
                "DEBUG=true for the development key; or, for a process that only verifies, "
                "set EVENTSTORE_VERIFY_KEYS alone)."
            )
        signing_id, seed = DEV_KEY_ID, _DEV_SEED
    else:
        signing_id, value = _split(signing, "EVENTSTORE_SIGNING_KEY")
        seed = _b64(value, "EVENTSTORE_SIGNING_KEY")
        if signing_id == DEV_KEY_ID and not debug:
            raise KeyConfigError(
                f"EVENTSTORE_SIGNING_KEY: key id {DEV_KEY_ID!r} is kept for the development "
                "key; choose another"
            )
    private = Ed25519PrivateKey.from_private_bytes(seed)
    own = private.public_key()
    listed = public.get(signing_id)
    if listed is not None and public_key_text(listed) != public_key_text(own):
        raise KeyConfigError(
            f"EVENTSTORE_VERIFY_KEYS lists key id {signing_id!r} with another public key than "
            "EVENTSTORE_SIGNING_KEY's; a key id names one key for ever"
        )
    public[signing_id] = own
    return Keyring(signing_id, private, public)


_override: list[Keyring] = []


@contextlib.contextmanager
def keyring_override(keys: Keyring) -> Iterator[None]:
    """Sign and verify with ``keys`` instead of the configured keyring, in this process, for
    the block (benchmarks measure the command path without the Ed25519 work this way)."""
    _override.append(keys)
    try:
        yield
    finally:
        _override.remove(keys)


def keyring() -> Keyring:
    """The process's keyring: from settings, unless overridden for a block."""
    return _override[-1] if _override else _configured()


def clear_caches() -> None:
    """Forget the keyring read from settings (they changed): the next use reads them again."""
    _configured.cache_clear()


@functools.cache
def _configured() -> Keyring:
    """The keyring from settings (cleared when a test overrides them)."""
    from django.conf import settings

    # The settings validated the keys with the real DEBUG and put the development key in
    # EVENTSTORE_SIGNING_KEY when it applies (tests run with DEBUG forced off and settings
    # made with it on, so DEBUG is not looked at again here).
    signing = getattr(settings, "EVENTSTORE_SIGNING_KEY", "")
    verify = getattr(settings, "EVENTSTORE_VERIFY_KEYS", "")
    if not signing.strip():
        return Keyring(None, None, parse_public_keys(verify))  # verifies only
    return parse_keyring(signing, verify, debug=True)


def verify_only_keyring(verify: str) -> Keyring:
    """A keyring of public keys only (what an outside verifier holds)."""
    return Keyring(None, None, parse_public_keys(verify))
