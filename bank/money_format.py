"""Amounts for people: integer minor units to currency units and back, in the admin's language.

Stored amounts are integer minor units (``bank.domain``); staff read and type currency units
with ISO 4217's decimals for the currency (EUR 2, JPY 0, KWD 3). Display goes through
Django's localization (``number_format`` with grouping), so the separators are the active
language's: ``20,909.90 EUR`` in English. Conversions are exact: ``Decimal`` and integers,
never ``float``.
"""

from __future__ import annotations

import re
from decimal import (
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Rounded,
    localcontext,
)

from django.utils.formats import get_format, number_format

from bank.domain import MAX_CENTS, DomainError
from bank.domain.currency_units import minor_units

# What a teller may type (after the language's decimal mark is read as a point): digits with
# at most one decimal point, an optional sign (so that "-5" gets the right message).
_AMOUNT = re.compile(r"^(?P<sign>[-+]?)(?=[.]?[0-9])[0-9]*(?:[.][0-9]*)?$")
# Longer input is no amount a bank holds (MAX_CENTS has 16 digits); capping it keeps every
# Decimal operation below exact within the local context's precision.
MAX_AMOUNT_LENGTH = 40

# Every operation below must be exact: one that would round raises instead.
_EXACT = Context(prec=400)  # with the default traps: InvalidOperation, DivisionByZero, Overflow
_EXACT.traps[Inexact] = True
_EXACT.traps[Rounded] = True

AMOUNT_NOT_A_NUMBER = (
    "“{text}” is not an amount: type digits with at most one decimal mark, e.g. {example} "
    "(no thousands separators, no currency sign)."
)
AMOUNT_TOO_PRECISE = (
    "{text} has too many decimals for {currency}: {currency} amounts have {precision}."
)
AMOUNT_NOT_POSITIVE = "The amount must be more than zero; {text} is not."
AMOUNT_TOO_LARGE = "The amount must be at most {maximum} {currency}; {text} is more."


class AmountError(ValueError):
    """A typed amount that cannot be taken (the message says why and what to type)."""


def _units(currency: str) -> int | None:
    try:
        return minor_units(currency)
    except DomainError:
        return None  # not an ISO code: shown as raw minor units, never guessed


def precision_phrase(currency: str) -> str:
    """``no decimals``, ``at most 2 decimals``... for messages and help texts."""
    units = minor_units(currency)
    return "no decimals" if units == 0 else f"at most {units} decimals"


def to_units(amount_cents: int, currency: str) -> Decimal:
    """The amount in currency units, exactly (1252 EUR cents → Decimal('12.52')).

    Raises:
        InvalidInput: ``currency`` is not an active ISO 4217 code.
    """
    # scaleb only moves the exponent: exact for any integer that fits the context.
    with localcontext(_EXACT):
        return Decimal(amount_cents).scaleb(-minor_units(currency))


def format_amount(amount_cents: int | None, currency: str) -> str:
    """The amount in currency units, localized and grouped, without the code ("-1,234.50").

    Empty for None. An unknown currency code shows the integer minor units as stored.
    """
    if amount_cents is None:
        return ""
    units = _units(currency)
    if units is None:
        return number_format(amount_cents, 0, use_l10n=True, force_grouping=True)
    return number_format(
        to_units(amount_cents, currency), units, use_l10n=True, force_grouping=True
    )


def format_money(amount_cents: int | None, currency: str) -> str:
    """The amount with its currency code, in the active language ("20,909.90 EUR")."""
    if amount_cents is None:
        return ""
    if _units(currency) is None:
        return f"{format_amount(amount_cents, currency)} {currency} (minor units)"
    return f"{format_amount(amount_cents, currency)} {currency}"


def plain_amount(amount_cents: int | None, currency: str) -> str:
    """The amount as a plain decimal for machines (CSV): "-17.52", "1234567"; "" for None."""
    if amount_cents is None:
        return ""
    if _units(currency) is None:
        return str(amount_cents)
    return format(to_units(amount_cents, currency), "f")


def amount_example(currency: str) -> str:
    """An amount as a teller would type it in the active language ("12.50", "1250")."""
    units = minor_units(currency)
    if units == 0:
        return "1250"
    return "12" + str(get_format("DECIMAL_SEPARATOR")) + "5" + "0" * (units - 1)


def parse_amount(text: str, currency: str) -> int:
    """Read an amount typed in currency units ("12.50") as integer minor units (1250).

    The active language's decimal mark is the decimal mark (a point too, unless the
    language groups thousands with points: "1.234" would be ambiguous there).

    Raises:
        AmountError: not a number, more decimals than the currency has, not positive, or
            above the domain's maximum.
        InvalidInput: ``currency`` is not an active ISO 4217 code.
    """
    units = minor_units(currency)
    typed = text.strip()
    example = amount_example(currency)
    not_a_number = AmountError(AMOUNT_NOT_A_NUMBER.format(text=typed, example=example))
    decimal_mark = str(get_format("DECIMAL_SEPARATOR"))
    if decimal_mark != ".":
        if str(get_format("THOUSAND_SEPARATOR")) == "." and "." in typed:
            raise not_a_number
        typed_point = typed.replace(decimal_mark, ".")
    else:
        typed_point = typed
    match = _AMOUNT.match(typed_point)
    if len(typed_point) > MAX_AMOUNT_LENGTH or match is None:
        raise not_a_number
    try:
        with localcontext(_EXACT):
            value = Decimal(typed_point)
            scaled = value.scaleb(units)
            whole = scaled == scaled.to_integral_value()
    except InvalidOperation:  # pragma: no cover - the pattern admits decimals only
        raise not_a_number from None
    if value <= 0:
        raise AmountError(AMOUNT_NOT_POSITIVE.format(text=typed))
    if not whole:
        raise AmountError(
            AMOUNT_TOO_PRECISE.format(
                text=typed, currency=currency, precision=precision_phrase(currency)
            )
        )
    cents = int(scaled)
    if cents > MAX_CENTS:
        raise AmountError(
            AMOUNT_TOO_LARGE.format(
                text=typed, currency=currency, maximum=format_amount(MAX_CENTS, currency)
            )
        )
    return cents
