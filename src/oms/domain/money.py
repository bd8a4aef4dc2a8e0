"""Money: ``Decimal`` amounts in an ISO 4217 currency, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
    "MDL MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR "
    "PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT "
    "TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG"
)
_NO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"

MINOR_UNITS: Final[dict[str, int]] = {
    **{code: 2 for code in _TWO_DECIMALS.split()},
    **{code: 0 for code in _NO_DECIMALS.split()},
    **{code: 3 for code in _THREE_DECIMALS.split()},
}
"""Active ISO 4217 codes with their number of minor units (digits after the decimal point)."""


def is_currency(code: str) -> bool:
    return code in MINOR_UNITS


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit (banker's rounding)."""
    exponent = Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))
    return amount.quantize(exponent, rounding=ROUND_HALF_EVEN)


def has_at_most_minor_units(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no more decimal places than the currency allows."""
    exponent = amount.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return places <= MINOR_UNITS.get(currency, 2)
