"""Checks for the free-text fields of commands (holder names, descriptions, reasons)."""

from __future__ import annotations

import unicodedata

from .errors import InvalidInput

HOLDER_NAME_MAX = 200
DESCRIPTION_MAX = 500
REASON_MAX = 500
# Bidirectional embeddings, overrides and isolates: they can make a stored name display as
# another one ("Trojan Source"). Refused with a message of their own; the other invisible
# format characters (category Cf, bidi marks included) are refused below.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ZWNJ, ZWJ = "\u200c", "\u200d"
# Canonical combining class of a virama (IDNA's ContextJ rules, RFC 5892 appendix A.1/A.2).
VIRAMA = 9
# Emoji modifiers FITZPATRICK TYPE-1-2 to TYPE-6 (category Sk): they sit inside ZWJ sequences.
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))

CONTROL_MESSAGE = "contains control characters"
BIDI_MESSAGE = "contains bidirectional override characters"
INVISIBLE_MESSAGE = (
    "contains the invisible character U+{codepoint:04X} {name}, which would make two "
    "different texts look the same: remove it"
)


def clean_text(field: str, value: object, *, maximum: int, required: bool) -> str:
    """Return the text NFC-normalised and stripped, or raise InvalidInput.

    Refuses control characters (NUL included), lone surrogates, invisible format
    characters and over-long text: what either database could not store faithfully, or a
    reader could be fooled by.

    Raises:
        InvalidInput: the text is not a string, or it breaks one of those rules.
    """
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "contains a lone surrogate character") from None
    text = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidInput(field, CONTROL_MESSAGE)
    if not BIDI_CONTROLS.isdisjoint(text):
        raise InvalidInput(field, BIDI_MESSAGE)
    for index, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf" and not _joiner_in_context(text, index):
            raise InvalidInput(
                field,
                INVISIBLE_MESSAGE.format(
                    codepoint=ord(ch), name=unicodedata.name(ch, "(unnamed format character)")
                ),
            )
    if required and not text:
        raise InvalidInput(field, "must not be empty")
    if len(text) > maximum:
        raise InvalidInput(field, f"is longer than {maximum} characters")
    return text


def _joiner_in_context(text: str, index: int) -> bool:
    """Whether the character at ``index`` is a joiner where a script needs one.

    Zero-width (non-)joiners change how Indic conjuncts and Arabic-script letters are drawn:
    Sinhala "Sri" is SHA, AL-LAKUNA (a virama), ZWJ, RA, II; Persian puts a ZWNJ between two
    letters of one word. A ZWJ between two emoji makes them one ("woman", ZWJ, "laptop" is
    the technologist emoji). Anywhere else (a ZWJ inside "Adam") they are invisible, so only
    these contexts are allowed: RFC 5892's ContextJ rules (either joiner right after a
    virama, a ZWNJ between two Arabic-script letters, combining marks between them skipped)
    and Unicode's emoji ZWJ sequences (a ZWJ between two symbols, their variation selectors
    and skin tones skipped).
    """
    ch = text[index]
    if ch not in (ZWNJ, ZWJ) or index == 0:
        return False
    if unicodedata.combining(text[index - 1]) == VIRAMA:
        return True
    before = _neighbour(text, index, step=-1)
    after = _neighbour(text, index, step=1)
    if ch == ZWJ:
        return _is_symbol(before) and _is_symbol(after)
    return _is_arabic_letter(before) and _is_arabic_letter(after)


def _neighbour(text: str, index: int, *, step: int) -> str:
    """The nearest character from ``index`` in direction ``step`` that is neither a mark
    (variation selectors included) nor an emoji skin-tone modifier."""
    index += step
    while 0 <= index < len(text) and (
        unicodedata.category(text[index]).startswith("M") or text[index] in SKIN_TONES
    ):
        index += step
    return text[index] if 0 <= index < len(text) else ""


def _is_symbol(ch: str) -> bool:
    return ch != "" and unicodedata.category(ch) == "So"


def _is_arabic_letter(ch: str) -> bool:
    return (
        ch != ""
        and unicodedata.category(ch).startswith("L")
        and unicodedata.name(ch, "").startswith("ARABIC ")
    )
