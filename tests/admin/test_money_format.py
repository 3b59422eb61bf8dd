"""Amounts for people: ISO 4217 minor units, localized display, exact parsing (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from bank.domain import CURRENCIES, MAX_CENTS, InvalidInput
from bank.domain.currency_units import MINOR_UNITS, minor_units
from bank.money_format import (
    AMOUNT_NOT_A_NUMBER,
    AMOUNT_NOT_POSITIVE,
    AMOUNT_TOO_LARGE,
    AMOUNT_TOO_PRECISE,
    AmountError,
    format_money,
    parse_amount,
    plain_amount,
    to_units,
)


def test_every_active_currency_has_its_iso_4217_minor_units():
    assert set(MINOR_UNITS) == CURRENCIES
    assert set(MINOR_UNITS.values()) == {0, 2, 3}
    expected = {"EUR": 2, "USD": 2, "GBP": 2, "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0}
    expected |= {"VND": 0, "XOF": 0, "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3}
    expected |= {"IQD": 3, "LYD": 3, "HUF": 2, "IDR": 2, "TOP": 2}
    assert {code: minor_units(code) for code in expected} == expected
    with pytest.raises(InvalidInput):
        minor_units("XXX")


@pytest.mark.parametrize(
    ("cents", "currency", "shown"),
    [
        (1234567, "EUR", "12,345.67 EUR"),
        (1234567, "JPY", "1,234,567 JPY"),
        (1234567, "KWD", "1,234.567 KWD"),
        (2090990, "EUR", "20,909.90 EUR"),
        (-1752, "EUR", "-17.52 EUR"),
        (0, "EUR", "0.00 EUR"),
        (5, "BHD", "0.005 BHD"),
        (MAX_CENTS, "EUR", "90,071,992,547,409.91 EUR"),
    ],
)
def test_amounts_show_in_currency_units_grouped_in_english(cents, currency, shown):
    with translation.override("en"):
        assert format_money(cents, currency) == shown


def test_the_separators_are_the_languages():
    with translation.override("de"):
        assert format_money(1234567, "EUR") == "12.345,67 EUR"
        assert parse_amount("12,50", "EUR") == 1250
        with pytest.raises(AmountError):
            parse_amount("1.234", "EUR")  # a German reads a thousand; refused, not guessed


def test_machine_amounts_are_plain_decimals():
    assert plain_amount(-1752, "EUR") == "-17.52"
    assert plain_amount(1234567, "JPY") == "1234567"
    assert plain_amount(1234567, "KWD") == "1234.567"
    assert plain_amount(0, "EUR") == "0.00"
    assert plain_amount(None, "EUR") == ""
    assert to_units(MAX_CENTS, "EUR") == Decimal("90071992547409.91")


@pytest.mark.parametrize(
    ("typed", "currency", "cents"),
    [
        ("12.50", "EUR", 1250),
        ("12.5", "EUR", 1250),
        (" 12 ", "EUR", 1200),
        ("12.500", "EUR", 1250),
        (".05", "EUR", 5),
        ("1250", "JPY", 1250),
        ("5.0", "JPY", 5),
        ("1.234", "KWD", 1234),
        ("0.001", "BHD", 1),
        ("90071992547409.91", "EUR", MAX_CENTS),
    ],
)
def test_typed_amounts_become_exact_minor_units(typed, currency, cents):
    with translation.override("en"):
        assert parse_amount(typed, currency) == cents


@pytest.mark.parametrize(
    ("typed", "currency", "message"),
    [
        (
            "1.234",
            "EUR",
            AMOUNT_TOO_PRECISE.format(
                text="1.234", currency="EUR", precision="at most 2 decimals"
            ),
        ),
        (
            "5.5",
            "JPY",
            AMOUNT_TOO_PRECISE.format(text="5.5", currency="JPY", precision="no decimals"),
        ),
        (
            "0.0001",
            "KWD",
            AMOUNT_TOO_PRECISE.format(
                text="0.0001", currency="KWD", precision="at most 3 decimals"
            ),
        ),
        ("0", "EUR", AMOUNT_NOT_POSITIVE.format(text="0")),
        ("0.00", "EUR", AMOUNT_NOT_POSITIVE.format(text="0.00")),
        ("-5", "EUR", AMOUNT_NOT_POSITIVE.format(text="-5")),
        ("abc", "EUR", AMOUNT_NOT_A_NUMBER.format(text="abc", example="12.50")),
        ("1,234.50", "EUR", AMOUNT_NOT_A_NUMBER.format(text="1,234.50", example="12.50")),
        ("1e3", "EUR", AMOUNT_NOT_A_NUMBER.format(text="1e3", example="12.50")),
        ("NaN", "EUR", AMOUNT_NOT_A_NUMBER.format(text="NaN", example="12.50")),
        ("12 EUR", "EUR", AMOUNT_NOT_A_NUMBER.format(text="12 EUR", example="12.50")),
        ("١٢", "EUR", AMOUNT_NOT_A_NUMBER.format(text="١٢", example="12.50")),
        ("1" * 41, "JPY", AMOUNT_NOT_A_NUMBER.format(text="1" * 41, example="1250")),
        (
            "90071992547409.92",
            "EUR",
            AMOUNT_TOO_LARGE.format(
                text="90071992547409.92", currency="EUR", maximum="90,071,992,547,409.91"
            ),
        ),
    ],
)
def test_amounts_that_cannot_be_taken_say_why(typed, currency, message):
    with translation.override("en"), pytest.raises(AmountError) as refused:
        parse_amount(typed, currency)
    assert str(refused.value) == message


@given(
    cents=st.integers(min_value=1, max_value=MAX_CENTS),
    currency=st.sampled_from(sorted(CURRENCIES)),
)
def test_what_is_shown_for_machines_reads_back_as_the_same_minor_units(cents, currency):
    with translation.override("en"):
        assert parse_amount(plain_amount(cents, currency), currency) == cents
