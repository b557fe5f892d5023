"""Topology-aware gang placement: a pure engine over an incrementally indexed ledger.

    ledger = ClusterLedger(topology, nodes)
    result = place_gang(ledger, request)      # Placement | Unschedulable; reads only
    if isinstance(result, Placement):
        ledger.reserve(result)                # all pods or ReservationError, no trace

No Kubernetes imports and no clock: the caller feeds node facts and usage in.
"""

from egpu.engines.placement.engine import place_gang
from egpu.engines.placement.errors import ReservationError, TransactionError, UnknownNodeError
from egpu.engines.placement.ledger import ClusterLedger, Transaction
from egpu.engines.placement.views import DomainStats, HeldPod, NodeUsage, NodeView

__all__ = [
    "ClusterLedger",
    "DomainStats",
    "HeldPod",
    "NodeUsage",
    "NodeView",
    "ReservationError",
    "Transaction",
    "TransactionError",
    "UnknownNodeError",
    "place_gang",
]
