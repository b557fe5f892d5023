"""The test harness's operator starts even when the port it picked is taken first: a
port picked free is back in the ephemeral range until the operator binds it, and any
connection may take it in between (seen as a CI error in the leader tests)."""

from __future__ import annotations

import socket

import pytest

from harness import RUN_DIR, Cluster, OperatorProcess

pytestmark = pytest.mark.e2e


def test_an_operator_whose_health_port_was_taken_starts_on_new_ports(crds: Cluster) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    proc = OperatorProcess(crds, RUN_DIR / "operator-ports.log")
    taken = proc.health_port
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            proc.start()
            assert proc.health_port != taken
            assert proc.healthy()
        finally:
            proc.stop()
