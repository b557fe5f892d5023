"""The local control plane is a real Kubernetes: objects round-trip, KWOK runs nodes and pods."""

from __future__ import annotations

import json

import pytest

from harness import Cluster, wait_until

pytestmark = pytest.mark.integration


def test_server_version_matches_the_pin(cluster: Cluster) -> None:
    from pathlib import Path

    pins = dict(
        line.split("=", 1)
        for line in (Path(__file__).parents[2] / "hack" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pins["KUBERNETES_VERSION"]


def test_object_round_trip(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "probe", "-n", namespace, "--from-literal=gpus=1024")
    got = json.loads(
        cluster.kubectl("get", "configmap", "probe", "-n", namespace, "-o", "json").stdout
    )
    assert got["data"] == {"gpus": "1024"}


def test_service_accounts_come_from_the_controller_manager(
    cluster: Cluster, namespace: str
) -> None:
    wait_until(
        lambda: (
            cluster.kubectl("get", "sa", "default", "-n", namespace, check=False).returncode == 0
        ),
        30,
        "the default ServiceAccount in a new namespace",
    )
    token = cluster.kubectl("create", "token", "default", "-n", namespace).stdout.strip()
    assert token.count(".") == 2  # a signed JWT


def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    out = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "nodes",
        f"--as=system:serviceaccount:{namespace}:default",
        check=False,
    )
    assert out.stdout.strip() == "no"
