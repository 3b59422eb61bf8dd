"""Amounts as integer minor units (cents) and ISO 4217 currency codes, checked."""

from __future__ import annotations

from .errors import INVALID_AMOUNT_MESSAGE, InvalidAmount, InvalidInput

# Amounts and balances stay within 2^53 - 1: JavaScript clients read them exactly, and no
# sum of two of them can overflow a signed 64-bit integer.
MAX_CENTS = 2**53 - 1

# Active ISO 4217 codes (funds and precious metals left out).
CURRENCIES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG
    """.split()
)


def check_amount(amount_cents: object) -> int:
    """Return the amount if it is a whole number of cents from 1 to MAX_CENTS.

    Raises:
        InvalidAmount: it is not an int (bools and floats included), not positive, or too big.
    """
    if (
        not isinstance(amount_cents, int)
        or isinstance(amount_cents, bool)
        or not 0 < amount_cents <= MAX_CENTS
    ):
        raise InvalidAmount(
            INVALID_AMOUNT_MESSAGE.format(amount=amount_cents, maximum=MAX_CENTS),
            amount=amount_cents if isinstance(amount_cents, int) else None,
        )
    return amount_cents


def check_currency(currency: object) -> str:
    """Return the currency code if it is an active ISO 4217 code.

    Raises:
        InvalidInput: it is not one.
    """
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise InvalidInput(
            "currency",
            f"{currency!r} is not an ISO 4217 currency code; use one of: "
            + ", ".join(sorted(CURRENCIES)),
        )
    return currency
