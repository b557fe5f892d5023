"""The real control plane for integration tests: started once per session.

`make integration` starts it beforehand (hack/run-integration.sh) and stops it
afterwards; run alone, `pytest -m integration` starts it here and stops what it
started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "test-cluster"))
LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        kubectl = str(Path(sys.executable).parent / "kubectl")
        proc = subprocess.run(
            [kubectl, *args],
            input=input,
            text=True,
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc


def _status_ok() -> bool:
    env = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
    return subprocess.run([*LOCALCLUSTER, "status"], env=env, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    env = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
    started_here = not _status_ok()
    if started_here:
        subprocess.run([*LOCALCLUSTER, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    yield Cluster(kubeconfig=str(RUN_DIR / "kubeconfig"))
    if started_here:
        subprocess.run([*LOCALCLUSTER, "down"], env=env, check=False)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
