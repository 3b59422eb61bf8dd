"""Free text in commands: invisible format characters are refused with a message that names
them, wherever a holder name, description or reason goes through the same check."""

from __future__ import annotations

import unicodedata
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bank.domain import Account, errors
from bank.domain.text import BIDI_MESSAGE, INVISIBLE_MESSAGE, clean_text

SINHALA_SRI = "\u0dc1\u0dca\u200d\u0dbb\u0dd3"  # SHA, AL-LAKUNA (virama), ZWJ, RA, II
PERSIAN_MIKHAHAM = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWNJ between letters
HINDI_HALF_KA = "\u0915\u094d\u200c\u0937"  # KA, VIRAMA, ZWNJ, SSA: no conjunct
TECHNOLOGIST = "\U0001f469\u200d\U0001f4bb Dev"  # WOMAN, ZWJ, PERSONAL COMPUTER: one emoji
RAINBOW_FLAG = "\U0001f3f3\ufe0f\u200d\U0001f308"  # WHITE FLAG, VS16, ZWJ, RAINBOW
MEDIUM_TONE_COOK = "\U0001f468\U0001f3fd\u200d\U0001f373"  # MAN, SKIN TONE, ZWJ, COOKING


def invisible(ch: str) -> str:
    return INVISIBLE_MESSAGE.format(codepoint=ord(ch), name=unicodedata.name(ch))


def opened():
    account = Account.open(uuid.uuid4(), holder_name="Ada", currency="EUR")
    account.collect_events()
    return account


@pytest.mark.parametrize(
    "ch",
    [
        "\u200b",  # ZERO WIDTH SPACE
        "\u200c",  # ZERO WIDTH NON-JOINER (between Latin letters)
        "\u200d",  # ZERO WIDTH JOINER (between Latin letters)
        "\u2060",  # WORD JOINER
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (byte order mark)
        "\u200e",  # LEFT-TO-RIGHT MARK
        "\u200f",  # RIGHT-TO-LEFT MARK
        "\u061c",  # ARABIC LETTER MARK
        "\u00ad",  # SOFT HYPHEN
        "\u2062",  # INVISIBLE TIMES
        "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    ],
)
def test_a_holder_name_with_an_invisible_format_character_is_refused_and_records_nothing(ch):
    with pytest.raises(errors.InvalidInput) as caught:
        Account.open(uuid.uuid4(), holder_name=f"Ad{ch}am", currency="EUR")
    assert caught.value.code == errors.INVALID_INPUT
    assert caught.value.field == "holder_name"
    assert caught.value.message == f"holder_name: {invisible(ch)}"


@pytest.mark.parametrize("where", ["{}Adam", "Adam{}", "{}", "Ad{} am"])
def test_invisible_characters_at_the_edges_are_not_stripped_away_but_refused(where):
    with pytest.raises(errors.InvalidInput, match="U\\+200B ZERO WIDTH SPACE"):
        Account.open(uuid.uuid4(), holder_name=where.format("\u200b"), currency="EUR")


def test_the_message_names_the_character_and_says_what_to_do():
    with pytest.raises(errors.InvalidInput) as caught:
        clean_text("holder_name", "Ad\u200dam", maximum=200, required=True)
    assert str(caught.value) == (
        "holder_name: contains the invisible character U+200D ZERO WIDTH JOINER, which would "
        "make two different texts look the same: remove it"
    )


def test_bidirectional_overrides_keep_their_own_message():
    with pytest.raises(errors.InvalidInput) as caught:
        clean_text("holder_name", "abc\u202edcba", maximum=200, required=True)
    assert caught.value.message == f"holder_name: {BIDI_MESSAGE}"


@pytest.mark.parametrize(
    "name",
    [SINHALA_SRI, PERSIAN_MIKHAHAM, HINDI_HALF_KA, TECHNOLOGIST, RAINBOW_FLAG, MEDIUM_TONE_COOK],
)
def test_joiners_where_a_script_needs_them_are_kept(name):
    account = Account.open(uuid.uuid4(), holder_name=name, currency="EUR")
    (event,) = account.collect_events()
    assert event.holder_name == name


@pytest.mark.parametrize(
    "name",
    [
        "\u200c\u0645\u06cc",  # ZWNJ before the first letter
        "\u0645\u06cc\u200c",  # ... after the last (nothing to separate)
        "\u0645\u06cc\u200c abc",  # ... between an Arabic letter and a space
        "\u0645\u06cc\u200d\u062e",  # ZWJ between Arabic letters: not a ContextJ context
        "\u0645\u06cc\u200c\u200c\u062e",  # two in a row: the second has no letter before it
        "\U0001f469\u200d",  # ZWJ after an emoji with nothing to join it to
        "Ann\u200d\U0001f4bb",  # ... between a letter and an emoji
        "\U0001f469\u200c\U0001f4bb",  # ZWNJ between emoji
    ],
)
def test_joiners_outside_those_contexts_are_refused(name):
    with pytest.raises(errors.InvalidInput, match="ZERO WIDTH"):
        Account.open(uuid.uuid4(), holder_name=name, currency="EUR")


@pytest.mark.parametrize(
    "command",
    [
        lambda a: a.deposit(100, "rent\u200b"),
        lambda a: a.withdraw(1, "\u2060fee"),
        lambda a: a.freeze("card\ufeff stolen"),
        lambda a: a.close("moved\u200e"),
    ],
)
def test_descriptions_and_reasons_go_through_the_same_check_and_record_nothing(command):
    account = opened()
    account.deposit(500)
    account.collect_events()
    version = account.version
    with pytest.raises(errors.InvalidInput, match="invisible character"):
        command(account)
    assert account.version == version and account.pending_events == []


@given(st.text(alphabet=st.characters(categories=["Cf"]), min_size=1, max_size=3))
def test_no_text_made_only_of_format_characters_is_accepted(text):
    with pytest.raises(errors.InvalidInput):
        clean_text("holder_name", f"A{text}B", maximum=200, required=True)


@pytest.mark.parametrize("amount", [False, True])
def test_opening_refuses_a_bool_as_the_initial_balance_like_any_other_non_int(amount):
    with pytest.raises(errors.InvalidAmount) as caught:
        Account.open(uuid.uuid4(), holder_name="Ann", currency="EUR", initial_balance_cents=amount)
    assert caught.value.code == errors.INVALID_AMOUNT
    assert caught.value.message == errors.INVALID_AMOUNT_MESSAGE.format(
        amount=amount, maximum=2**53 - 1
    )


def test_opening_with_a_zero_int_balance_is_still_allowed():
    account = Account.open(
        uuid.uuid4(), holder_name="Ann", currency="EUR", initial_balance_cents=0
    )
    (event,) = account.collect_events()
    assert event.initial_balance_cents == 0 and type(event.initial_balance_cents) is int
