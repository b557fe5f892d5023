"""The Helm chart, linted, rendered and installed with a real helm against the real API server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import REPO, Cluster

pytestmark = pytest.mark.integration

CHART = REPO / "charts" / "egpu-operator"


def _helm_binary() -> str:
    sys.path.insert(0, str(REPO / "hack"))
    import localcluster

    return str(localcluster.binary("helm"))


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [_helm_binary(), *args], text=True, capture_output=True, env=cluster.env, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def test_lint(cluster: Cluster) -> None:
    out = helm(cluster, "lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in out.stdout


def test_values_schema_refuses_bad_values(cluster: Cluster) -> None:
    out = helm(cluster, "template", "x", str(CHART), "--set", "replicaCount=0", check=False)
    assert out.returncode != 0
    assert "replicaCount" in out.stderr


def test_install_creates_operator_objects(cluster: Cluster, namespace: str) -> None:
    release = f"egpu-{namespace}"
    helm(
        cluster,
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "replicaCount=2",
        "--set",
        "watchNamespaces={team-a}",
    )
    try:
        deploy = json.loads(
            cluster.kubectl("get", "deployment", "-n", namespace, "-o", "json").stdout
        )["items"]
        assert len(deploy) == 1
        spec = deploy[0]["spec"]
        assert spec["replicas"] == 2
        args = spec["template"]["spec"]["containers"][0]["args"]
        assert "--namespace=team-a" in args and "--lease-name=egpu-operator" in args
        cluster.kubectl("get", "clusterrole", deploy[0]["metadata"]["name"])
        cluster.kubectl("get", "pdb", "-n", namespace, deploy[0]["metadata"]["name"])
        can_bind = cluster.kubectl(
            "auth",
            "can-i",
            "create",
            "pods/binding",
            f"--as=system:serviceaccount:{namespace}:{deploy[0]['metadata']['name']}",
            check=False,
        )
        assert can_bind.stdout.strip() == "yes"
        # the node agent: a DaemonSet that runs only on nodes labelled for it
        (agent,) = json.loads(
            cluster.kubectl("get", "daemonset", "-n", namespace, "-o", "json").stdout
        )["items"]
        pod_spec = agent["spec"]["template"]["spec"]
        assert pod_spec["nodeSelector"] == {"egpu.io/agent": "true"}
        assert pod_spec["containers"][0]["command"] == ["egpu", "agent"]
        account = f"--as=system:serviceaccount:{namespace}:{pod_spec['serviceAccountName']}"
        for verb, resource in (("patch", "nodes/status"), ("patch", "nodes"), ("get", "nodes")):
            allowed = cluster.kubectl("auth", "can-i", verb, resource, account, check=False)
            assert allowed.stdout.strip() == "yes", (verb, resource)
        denied = cluster.kubectl("auth", "can-i", "delete", "pods", account, check=False)
        assert denied.stdout.strip() == "no"
    finally:
        helm(cluster, "uninstall", release, "-n", namespace, check=False)


def test_chart_crds_match_the_generated_ones() -> None:
    generated = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert generated, "no generated CRDs in crds/"
    in_chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert generated == in_chart
    for name in generated:
        assert (REPO / "crds" / name).read_text() == (CHART / "crds" / name).read_text()
