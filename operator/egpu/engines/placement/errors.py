"""Errors the ledger raises. Placement decisions return values; these are misuse or races."""

from __future__ import annotations


class ReservationError(ValueError):
    """A reserve that cannot apply (GPU taken, node gone...). The ledger is left unchanged."""


class UnknownNodeError(KeyError):
    """The ledger has no node of that name."""


class TransactionError(RuntimeError):
    """Transactions closed out of order, or used after they ended."""
