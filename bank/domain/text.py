"""Checks for the free-text fields of commands (holder names, descriptions, reasons)."""

from __future__ import annotations

import unicodedata

from .errors import InvalidInput

HOLDER_NAME_MAX = 200
DESCRIPTION_MAX = 500
REASON_MAX = 500
# Bidirectional embeddings, overrides and isolates: they can make a stored name display as
# another one ("Trojan Source"); marks (U+200E/F) and joiners stay allowed.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_text(field: str, value: object, *, maximum: int, required: bool) -> str:
    """Return the text NFC-normalised and stripped, or raise InvalidInput.

    Refuses control characters (NUL included), lone surrogates and over-long text: what
    either database could not store faithfully, or a reader could be fooled by.
    """
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "contains a lone surrogate character") from None
    text = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidInput(field, "contains control characters")
    if not BIDI_CONTROLS.isdisjoint(text):
        raise InvalidInput(field, "contains bidirectional override characters")
    if required and not text:
        raise InvalidInput(field, "must not be empty")
    if len(text) > maximum:
        raise InvalidInput(field, f"is longer than {maximum} characters")
    return text
