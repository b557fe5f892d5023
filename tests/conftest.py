"""Fixtures for the tests that need a real cluster (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import (
    RUN_DIR,
    Cluster,
    OperatorProcess,
    cluster_fixture,
    namespace_fixture,
    real_node_fixture,
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    yield from cluster_fixture()


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    """A real kubelet node (containerd, runc) of the test cluster."""
    return real_node_fixture(cluster)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    yield from namespace_fixture(cluster)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    """The project's CRDs installed and Established."""
    from harness import REPO

    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    return cluster


@pytest.fixture(scope="module")
def operator(crds: Cluster, request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """The operator, running for one test module (modules that kill it start their own)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    proc = OperatorProcess(crds, RUN_DIR / f"operator-{request.module.__name__}.log")
    proc.start()
    yield proc
    proc.stop()
