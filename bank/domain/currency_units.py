"""ISO 4217 minor units: how many decimals each active currency's amounts have.

Amounts are stored as integer minor units; a display or an input in currency units needs
the exponent (EUR 2: 1250 minor units are 12.50 EUR; JPY 0: 1250 are 1250 JPY; KWD 3:
1250 are 1.250 KWD). Every code of ``CURRENCIES`` is listed in exactly one of the sets
below (tests/admin checks it), so a code added there must be classified here on purpose.
"""

from __future__ import annotations

from .money import CURRENCIES, check_currency

# From the ISO 4217 list (amendment 179, 2025), active codes only.
_NO_DECIMALS = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split())
_THREE_DECIMALS = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_TWO_DECIMALS = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT
    LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN
    NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP
    SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST
    XCD XCG YER ZAR ZMW ZWG
    """.split()
)

MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(sorted(_NO_DECIMALS), 0),
    **dict.fromkeys(sorted(_TWO_DECIMALS), 2),
    **dict.fromkeys(sorted(_THREE_DECIMALS), 3),
}

# Checked when the module loads: the table and the domain's currency list never drift apart.
if set(MINOR_UNITS) != CURRENCIES or len(MINOR_UNITS) != (
    len(_NO_DECIMALS) + len(_TWO_DECIMALS) + len(_THREE_DECIMALS)
):
    raise RuntimeError(
        "ISO 4217 minor units missing or listed twice for "
        f"{sorted(set(MINOR_UNITS) ^ CURRENCIES) or 'a code in two sets'}"
    )


def minor_units(currency: str) -> int:
    """Return how many decimals an amount in ``currency`` has (ISO 4217's minor unit).

    Raises:
        InvalidInput: ``currency`` is not an active ISO 4217 code.
    """
    return MINOR_UNITS[check_currency(currency)]
