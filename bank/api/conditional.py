"""Conditional requests (RFC 9110, section 13): ETags, If-Match and If-None-Match.

An account's ETag is its version as a strong entity tag (``"3"``): two answers with the
same version carry the same account, byte for byte. The headers are parsed as the RFC's
grammar says (``*``, or a comma list of ``"tag"`` / ``W/"tag"``) and compared as it says:
If-Match with the strong comparison (a weak tag never matches), If-None-Match with the weak
one. One extension, kept from the first release (ARCHITECTURE.md: ``If-Match: <version>``):
a bare version number as the whole field, ``3``, means ``"3"``; ``03`` or ``3a`` is malformed.

A condition is checked against the version the command will actually write at: the
service appends with that version as the expected one, so nothing is written if the
account moved on between the check and the append.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bank import selectors
from bank.services.accounts import MAX_ATTEMPTS
from bank.services.errors import ConcurrencyConflict, VersionMismatch

IF_MATCH = "If-Match"
IF_NONE_MATCH = "If-None-Match"

INVALID_PRECONDITION_HEADER = "invalid_precondition_header"
PRECONDITION_NOT_SUPPORTED = "precondition_not_supported"
VERSION_MISMATCH = "version_mismatch"

# RFC 9110 8.8.3: etagc = %x21 / %x23-7E / obs-text. Django hands header values over as
# ISO-8859-1 text, so obs-text (bytes 0x80-0xFF) arrives as U+0080-U+00FF.
_ETAGC = r"[\x21\x23-\x7e\x80-\xff]"
_ENTITY_TAG = re.compile(rf'(W/)?"({_ETAGC}*)"')
_OWS = " \t"
_BARE_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")

# The same grammar as regular expressions (ECMA-262 and Python alike), for the OpenAPI
# document: what they match is exactly what ``parse`` accepts (tests/api check both ways).
_LIST = rf'[ \t,]*(W/)?"{_ETAGC}*"([ \t]*,[ \t,]*(W/)?"{_ETAGC}*")*[ \t,]*'
CONDITION_PATTERN = rf"^[ \t]*(\*|0|[1-9][0-9]{{0,17}}|{_LIST})[ \t]*$"


def etag_of(version: int) -> str:
    """The ETag of an account at ``version``: a strong entity tag, ``"3"``."""
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class EntityTag:
    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f'{"W/" if self.weak else ""}"{self.opaque}"'


@dataclass(frozen=True, slots=True)
class Condition:
    """One If-Match or If-None-Match field: ``*`` or a list of entity tags."""

    any: bool
    tags: tuple[EntityTag, ...] = ()

    def strong_match(self, version: int) -> bool:
        """RFC 9110 13.1.1: true for ``*`` or a strong tag equal to the account's ETag."""
        return self.any or any(not t.weak and t.opaque == str(version) for t in self.tags)

    def weak_match(self, version: int) -> bool:
        """RFC 9110 13.1.2: true for ``*`` or a tag, weak or strong, of the same opaque value."""
        return self.any or any(t.opaque == str(version) for t in self.tags)

    def single_version(self) -> int | None:
        """The version named, when the field is exactly one strong tag ``"<version>"``."""
        if self.any or len(self.tags) != 1 or self.tags[0].weak:
            return None
        opaque = self.tags[0].opaque
        return int(opaque) if _BARE_VERSION.fullmatch(opaque) else None

    def __str__(self) -> str:
        return "*" if self.any else ", ".join(str(t) for t in self.tags)


class InvalidPreconditionHeader(Exception):
    """A conditional header that is not what RFC 9110's grammar allows (a 400)."""

    code = INVALID_PRECONDITION_HEADER

    def __init__(self, header: str, value: str, reason: str) -> None:
        self.header = header
        self.reason = reason
        super().__init__(
            f"{header} {value!r} is malformed: {reason}. Send * or one or more entity tags "
            'in double quotes, separated by commas, e.g. "3" or "3", "4"'
        )


class PreconditionNotSupported(Exception):
    """A conditional header on an operation where it could not mean anything (a 400)."""

    code = PRECONDITION_NOT_SUPPORTED

    def __init__(self, header: str, why: str) -> None:
        self.header = header
        super().__init__(f"{header} is not supported here: {why}")


class PreconditionFailed(Exception):
    """The account's version does not satisfy If-Match / If-None-Match (a 412)."""

    code = VERSION_MISMATCH

    def __init__(self, account_id: uuid.UUID, header: str, condition: Condition, current: int):
        self.header = header
        self.current = current
        self.expected = condition.single_version() if header == IF_MATCH else None
        if header == IF_MATCH:
            why = f"{IF_MATCH}: {condition} matches no version it is at"
            if condition.tags and all(t.weak for t in condition.tags):
                why += " (If-Match compares strongly: a weak tag W/... never matches)"
        else:
            why = f"{IF_NONE_MATCH}: {condition} matches it"
        super().__init__(
            f"account {account_id} is at version {current} (ETag {etag_of(current)}); {why}"
        )


def parse(header: str, value: str) -> Condition:
    """Parse an If-Match / If-None-Match field value (RFC 9110 13.1.1 and 13.1.2).

    ``*`` alone, or a list of entity tags separated by commas with optional spaces; empty
    list elements are ignored (RFC 9110 5.6.1), but a field with no tag at all is refused.
    A bare version number alone is read as that version's ETag.

    Raises:
        InvalidPreconditionHeader: anything else.
    """
    text = value.strip(_OWS)
    if text == "*":
        return Condition(any=True)
    if _BARE_VERSION.fullmatch(text):
        return Condition(any=False, tags=(EntityTag(text),))
    tags: list[EntityTag] = []
    position = 0
    while position < len(text):
        if text[position] in _OWS or text[position] == ",":
            position += 1
            continue
        match = _ENTITY_TAG.match(text, position)
        if match is None:
            raise InvalidPreconditionHeader(header, value, _why(text, position))
        tags.append(EntityTag(match.group(2), weak=match.group(1) is not None))
        position = match.end()
        while position < len(text) and text[position] in _OWS:
            position += 1
        if position < len(text) and text[position] != ",":
            raise InvalidPreconditionHeader(
                header, value, f"expected a comma after {match.group(0)}"
            )
    if not tags:
        raise InvalidPreconditionHeader(header, value, "it names no entity tag")
    return Condition(any=False, tags=tuple(tags))


def _why(text: str, position: int) -> str:
    rest = text[position:]
    if rest.startswith("*"):
        return "* must stand alone"
    if rest.startswith(("w/", "W/")) and not rest.startswith('W/"'):
        return 'a weak tag is W/ followed by a quoted tag, e.g. W/"3"'
    if rest.startswith(('"', 'W/"')):
        return "an entity tag is not closed by a double quote, or holds a character it may not"
    return "entity tags must be in double quotes"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Preconditions:
    """The If-Match and If-None-Match of one request, parsed."""

    if_match: Condition | None = None
    if_none_match: Condition | None = None

    @classmethod
    def of(cls, request: Any) -> Preconditions:
        """Read both headers.

        Raises:
            InvalidPreconditionHeader: a malformed field.
        """
        if_match = request.headers.get(IF_MATCH)
        if_none_match = request.headers.get(IF_NONE_MATCH)
        return cls(
            if_match=None if if_match is None else parse(IF_MATCH, if_match),
            if_none_match=None if if_none_match is None else parse(IF_NONE_MATCH, if_none_match),
        )

    @classmethod
    def refused(cls, request: Any, why: str) -> None:
        """For operations that create: a precondition there is refused, not ignored.

        Raises:
            PreconditionNotSupported: either header was sent.
        """
        for header in (IF_MATCH, IF_NONE_MATCH):
            if header in request.headers:
                raise PreconditionNotSupported(header, why)

    def check(self, account_id: uuid.UUID, version: int) -> None:
        """Evaluate both (RFC 9110 13.2.2) for a write at ``version``.

        Raises:
            PreconditionFailed: either is false (412).
        """
        if self.if_match is not None and not self.if_match.strong_match(version):
            raise PreconditionFailed(account_id, IF_MATCH, self.if_match, version)
        if self.if_none_match is not None and self.if_none_match.weak_match(version):
            raise PreconditionFailed(account_id, IF_NONE_MATCH, self.if_none_match, version)

    def not_modified(self, account_id: uuid.UUID, version: int) -> bool:
        """Evaluate both for a read of the account at ``version``: True means 304.

        Raises:
            PreconditionFailed: If-Match is false (412).
        """
        if self.if_match is not None and not self.if_match.strong_match(version):
            raise PreconditionFailed(account_id, IF_MATCH, self.if_match, version)
        return self.if_none_match is not None and self.if_none_match.weak_match(version)

    def run(self, account_id: uuid.UUID, command: Callable[[int | None], T]) -> T:
        """Run ``command(expected_version)`` only if the account satisfies the conditions.

        No condition, or ``If-Match: *``: the command runs unpinned (and a lost race is
        retried by the service). ``If-Match: "3"``: pinned at 3, which the service checks
        atomically. Anything else (a list, If-None-Match): the conditions are evaluated
        against the current version and the command is pinned at it, so a write in
        between is noticed, and the conditions are evaluated again.

        Raises:
            PreconditionFailed: a condition is false (412).
            ConcurrencyConflict: the account kept moving under the evaluation.
        """
        if self.if_none_match is None:
            if self.if_match is None or self.if_match.any:
                return command(None)
            pinned = self.if_match.single_version()
            if pinned is not None:
                return command(pinned)
        for _ in range(MAX_ATTEMPTS):
            current = selectors.account_version(account_id)
            if current == 0:
                # No such account: the answer without the conditions (404) is not a 2xx or
                # 412, so they are ignored (RFC 9110 13.2.1).
                return command(None)
            self.check(account_id, current)
            try:
                return command(current)
            except VersionMismatch:
                continue  # written to since we looked: evaluate against the new version
        raise ConcurrencyConflict(account_id, MAX_ATTEMPTS)


__all__ = [
    "IF_MATCH",
    "CONDITION_PATTERN",
    "IF_NONE_MATCH",
    "Condition",
    "EntityTag",
    "InvalidPreconditionHeader",
    "PreconditionFailed",
    "PreconditionNotSupported",
    "Preconditions",
    "etag_of",
    "parse",
]
