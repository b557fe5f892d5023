"""Kubernetes quantity strings ("500m", "2", "1Gi", "16G", "1e3") as exact numbers.

The grammar is the API server's: a decimal number, then either an exponent
(`e3`, `E-2`) or one suffix (binary Ki..Ei, decimal n u m k M G T P E). Conversions to
integers round up, as `Quantity.MilliValue()` and `Quantity.Value()` do, so a request
is never under-counted.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_BINARY_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_DECIMAL_SUFFIXES = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>[KMGTPE]i|[numkMGTPE])?)"
)


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity; raises ValueError naming the bad text."""
    if isinstance(text, bool):
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"not a Kubernetes quantity: {text!r}")
        return Fraction(str(text))
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number = Fraction(match["number"])
    if match["exponent"]:
        return number * Fraction(10) ** int(match["exponent"][1:])
    suffix = match["suffix"] or ""
    if suffix in _BINARY_SUFFIXES:
        return number * _BINARY_SUFFIXES[suffix]
    return number * _DECIMAL_SUFFIXES[suffix]


def _non_negative(value: Fraction, text: str | int | float, what: str) -> Fraction:
    if value < 0:
        raise ValueError(f"{what} must not be negative: {text!r}")
    return value


def cpu_millis(text: str | int | float) -> int:
    """CPU quantity in millicores, rounded up ("500m" -> 500, "2" -> 2000, "0.1" -> 100)."""
    return math.ceil(_non_negative(parse_quantity(text), text, "cpu") * 1000)


def memory_bytes(text: str | int | float) -> int:
    """Memory quantity in bytes, rounded up ("1Gi" -> 1073741824, "16G" -> 16000000000)."""
    return math.ceil(_non_negative(parse_quantity(text), text, "memory"))


def whole_count(text: str | int | float, what: str = "count") -> int:
    """A quantity that must be a whole, non-negative number (GPUs, pods)."""
    value = _non_negative(parse_quantity(text), text, what)
    if value.denominator != 1:
        raise ValueError(f"{what} must be a whole number: {text!r}")
    return int(value)
