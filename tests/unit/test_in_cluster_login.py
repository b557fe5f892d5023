"""Inside a pod the operator reaches the API server at the `kubernetes` Service's
address from the environment, as client-go does, not by a DNS name."""

from __future__ import annotations

import pytest

from egpu.controllers.settings import in_cluster_server

pytestmark = pytest.mark.unit


def test_the_service_address_from_the_environment() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_server(env) == "https://10.96.0.1:443"


def test_an_ipv6_service_address_is_bracketed() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert in_cluster_server(env) == "https://[fd00::1]:6443"


@pytest.mark.parametrize(
    "env", [{}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT": "443"}]
)
def test_outside_a_pod_there_is_none(env: dict[str, str]) -> None:
    assert in_cluster_server(env) is None
