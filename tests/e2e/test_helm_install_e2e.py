"""The operator as users run it: its own image (hack/images.py, no registry) on a
real kubelet node, installed by `helm install` of the chart. It runs under the
chart's ServiceAccount, wins the Lease, turns Ready, binds a gang on the
simulated GPU nodes, scales an inference service, and resizes a pod on the real
node in place from the kubelet's metrics; what RBAC does not grant is refused;
`helm uninstall` leaves only the CRDs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape
from harness import (
    DEFAULT_TOPOLOGY,
    LOCALCLUSTER,
    REAL_NODE_LABEL,
    REAL_NODE_TOLERATION,
    REPO,
    RUN_DIR,
    Cluster,
    add_gpu_nodes,
    wait_until,
)

pytestmark = pytest.mark.e2e

GPU = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
REAL_MODEL = "EGPU-FAKE-GPU"  # the real node's fake GPUs (EGPU_REAL_NODE_GPUS)
# The python test image's usage feeder (hack/image/usage_feeder.py): holds 950 MiB.
FEEDER_COMMAND = ["/usr/local/bin/egpu-usage-feeder", "--memory-mib", "950"]
CHART = REPO / "charts" / "egpu-operator"
MODEL = "NVIDIA-GH200"  # only these nodes have it
SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=3,  # two for the gang, one for the inference service
    gpu_models=(MODEL,),
    name_prefix="helm",
    domain_prefix="helm-",
)
# Pods of this namespace only, under this scheduler name (the chart's values).
TEAM, OTHER_TEAM, SCHEDULER = "helm-team-a", "helm-team-b", "egpu-helm-scheduler"
# One replica on the real node, with a request that fits the small machine.
VALUES = {
    "replicaCount": 1,
    "watchNamespaces": [TEAM],
    "schedulerName": SCHEDULER,
    "nodeSelector": {REAL_NODE_LABEL: "true"},
    "tolerations": [REAL_NODE_TOLERATION],
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "logLevel": "DEBUG",
}
# Run inside the operator's container with its own token.
CALL = """
import os, ssl, sys, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
ctx = ssl.create_default_context(cafile=sa + "ca.crt")
env = os.environ
host = "https://%s:%s" % (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])
token = open(sa + "token").read()
for path in sys.argv[1:]:
    req = urllib.request.Request(host + path, headers={"Authorization": "Bearer " + token})
    try:
        code = urllib.request.urlopen(req, context=ctx, timeout=10).status
    except urllib.error.HTTPError as e:
        code = e.code
    print(path, code)
"""


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    sys.path.insert(0, str(REPO / "hack"))
    import localcluster

    proc = subprocess.run(
        [str(localcluster.binary("helm")), *args],
        text=True,
        capture_output=True,
        env=cluster.env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def get(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def image(cluster: Cluster, real_node: str) -> str:
    """The operator image, built (or taken from the cache) and loaded into the real node."""
    env = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
    subprocess.run([*LOCALCLUSTER, "load-images", "operator"], env=env, check=True)
    sys.path.insert(0, str(REPO / "hack"))
    import images

    return str(images.operator_ref())


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    namespace = "egpu-system-helm"
    values = tmp_path_factory.mktemp("helm") / "values.json"
    values.write_text(json.dumps(VALUES))
    add_gpu_nodes(cluster, SHAPE)
    # The chart installs the CRDs (or finds them installed).
    helm(cluster, "install", "egpu", str(CHART), "-n", namespace, "--create-namespace",
         "-f", str(values), "--wait", "--timeout", "180s")  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=DEFAULT_TOPOLOGY)
    for team in (TEAM, OTHER_TEAM):
        cluster.kubectl("create", "namespace", team)
    try:
        yield namespace
    finally:
        helm(cluster, "uninstall", "egpu", "-n", namespace, "--wait", check=False)
        for ns in (namespace, TEAM, OTHER_TEAM):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def operator_pod(cluster: Cluster, namespace: str) -> dict[str, Any]:
    items = get(cluster, "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=egpu")["items"]
    assert len(items) == 1, [p["metadata"]["name"] for p in items]
    return dict(items[0])


def test_the_operator_runs_from_its_image_on_the_real_node(
    cluster: Cluster, release: str, real_node: str, image: str
) -> None:
    pod = operator_pod(cluster, release)
    spec, status = pod["spec"], pod["status"]
    assert spec["nodeName"] == real_node
    assert spec["serviceAccountName"] == "egpu-egpu-operator"
    assert spec["containers"][0]["image"] == image
    container = status["containerStatuses"][0]
    assert container["ready"] is True and container["restartCount"] == 0
    assert container["containerID"].startswith("containerd://")
    # Ready means leading: the Lease in the release namespace names this pod.
    lease = get(cluster, "lease", "egpu-operator", "-n", release)
    assert lease["spec"]["holderIdentity"].startswith(pod["metadata"]["name"] + "_")


def test_it_binds_a_gang_on_the_simulated_gpu_nodes(cluster: Cluster, release: str) -> None:
    workload = {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": "gang"},
        "spec": {
            "replicas": 2,
            "gpusPerPod": 8,
            "gpuModel": MODEL,
            "gang": {"policy": "AllOrNothing"},
            "topology": {"topologyName": "default", "required": "egpu.io/leaf"},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "registry.local/egpu/trainer:latest",
                            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ]
                }
            },
        },
    }
    # The same kind of pod in a namespace the operator does not watch: never bound.
    stray = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray"},
        "spec": {
            "schedulerName": SCHEDULER,
            "containers": [{"name": "c", "image": "x", "resources": {"limits": {GPU: "1"}}}],
        },
    }
    cluster.kubectl("apply", "-n", OTHER_TEAM, "-f", "-", input=json.dumps(stray))
    cluster.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(workload))

    def members() -> list[dict[str, Any]]:
        return list(get(cluster, "pods", "-n", TEAM)["items"])

    wait_until(
        lambda: len(members()) == 2 and all(p["spec"].get("nodeName") for p in members()),
        120,
        "the gang to be bound",
    )
    nodes = sorted(p["spec"]["nodeName"] for p in members())
    assert len(set(nodes)) == 2 and all(n.startswith("helm-b0-l0-") for n in nodes), nodes
    assert {p["spec"]["schedulerName"] for p in members()} == {SCHEDULER}
    assert not get(cluster, "pod", "stray", "-n", OTHER_TEAM)["spec"].get("nodeName")
    pod = operator_pod(cluster, release)
    logs = cluster.kubectl("logs", "-n", release, pod["metadata"]["name"]).stdout
    assert " 403" not in logs and "Forbidden" not in logs, logs[-3000:]


def test_rbac_refuses_what_the_chart_does_not_grant(cluster: Cluster, release: str) -> None:
    pod = operator_pod(cluster, release)["metadata"]["name"]
    out = cluster.kubectl(
        "exec", "-n", release, pod, "--", "/usr/bin/python3.11", "-c", CALL,
        "/api/v1/secrets", f"/api/v1/namespaces/{release}/secrets", "/api/v1/nodes",
    ).stdout  # fmt: skip
    codes = dict(line.rsplit(" ", 1) for line in out.splitlines())
    assert codes == {
        "/api/v1/secrets": "403",
        f"/api/v1/namespaces/{release}/secrets": "403",
        "/api/v1/nodes": "200",  # granted: the same token, the same path, allowed
    }


def test_it_scales_an_inference_service(cluster: Cluster, release: str) -> None:
    """Through the scale subresource: the in-cluster operator makes and binds the
    serving pods on the simulated nodes, then takes them away again."""
    service = {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUInferenceService",
        "metadata": {"name": "serve"},
        "spec": {
            "gpusPerPod": 1,
            "gpuModel": MODEL,
            "minReplicas": 1,
            "maxReplicas": 4,
            "replicas": 1,
            "scaling": {
                "metric": "Concurrency",
                "target": 3,
                "source": {"podMetrics": {"port": 8080}},
            },
            "template": {
                "metadata": {"annotations": {"egpu.io/sim-ready-after": "1s"}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.local/egpu/sim:1",
                            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ]
                },
            },
        },
    }
    cluster.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(service))

    def serving() -> list[dict[str, Any]]:
        items = get(cluster, "pods", "-n", TEAM, "-l", "egpu.io/inference-service=serve")["items"]
        return [p for p in items if p["metadata"]["labels"].get("egpu.io/role") == "serving"]

    def bound(count: int) -> bool:
        pods = serving()
        return len(pods) == count and all(p["spec"].get("nodeName") for p in pods)

    wait_until(lambda: bound(1), 90, "one serving pod bound")
    cluster.kubectl("scale", "-n", TEAM, "gpuinferenceservice/serve", "--replicas=3")
    wait_until(lambda: bound(3), 90, "three serving pods bound")
    assert all(p["spec"]["nodeName"].startswith("helm-") for p in serving())
    assert {p["spec"]["schedulerName"] for p in serving()} == {SCHEDULER}
    cluster.kubectl("scale", "-n", TEAM, "gpuinferenceservice/serve", "--replicas=1")
    wait_until(lambda: bound(1), 90, "back to one serving pod")
    cluster.kubectl("delete", "gpuinferenceservice", "serve", "-n", TEAM)
    wait_until(lambda: not serving(), 90, "the serving pods to go")


def test_it_resizes_a_pod_in_place_on_the_real_node(
    cluster: Cluster, release: str, real_node: str
) -> None:
    """The in-cluster operator reads the real kubelet's metrics through nodes/proxy
    (its ServiceAccount's RBAC) and grows a member whose real use rises, in place."""
    cluster.kubectl("label", "--overwrite", "node", real_node, f"{PRODUCT_LABEL}={REAL_MODEL}")
    workload = {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": "grow"},
        "spec": {
            "replicas": 1,
            "gpusPerPod": 1,
            "gpuModel": REAL_MODEL,
            "gang": {"policy": "None"},
            "resize": {"mode": "Auto", "memory": {"min": "1Gi", "max": "2Gi", "step": "1Gi"}},
            "template": {
                "spec": {
                    "tolerations": [REAL_NODE_TOLERATION],
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": "egpu.local/python:3.11",
                            "imagePullPolicy": "Never",
                            "command": FEEDER_COMMAND,
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "1Gi"},
                                "limits": {"cpu": "100m", "memory": "1Gi"},
                            },
                        }
                    ],
                },
            },
        },
    }
    cluster.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(workload))

    def member() -> dict[str, Any]:
        out = cluster.kubectl("get", "pod", "grow-0", "-n", TEAM, "-o", "json", check=False)
        return dict(json.loads(out.stdout)) if out.returncode == 0 else {}

    def limit() -> str | None:
        statuses = member().get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("resources", {}).get("limits", {}).get("memory")

    try:
        wait_until(lambda: limit() == "1Gi", 120, "the member to run on the real node")
        first = member()
        assert first["spec"]["nodeName"] == real_node
        wait_until(lambda: limit() == "2Gi", 120, "the member to grow to 2Gi in place")
        last = member()
        assert last["metadata"]["uid"] == first["metadata"]["uid"]
        assert last["status"]["containerStatuses"][0]["restartCount"] == 0
        pod = operator_pod(cluster, release)
        logs = cluster.kubectl("logs", "-n", release, pod["metadata"]["name"]).stdout
        assert " 403" not in logs and "Forbidden" not in logs, logs[-3000:]
    finally:
        cluster.kubectl("delete", "gpuworkload", "grow", "-n", TEAM, "--wait=true", check=False)
        wait_until(lambda: not member(), 60, "the member to be gone")
        cluster.kubectl("label", "node", real_node, f"{PRODUCT_LABEL}-")


def test_upgrade_rolls_the_operator_without_losing_a_bind(cluster: Cluster, release: str) -> None:
    """`helm upgrade` (here: the log level) replaces the operator pod; the new one
    leads, and the gang bound before stays bound, the same pods on the same nodes."""

    def members() -> dict[str, tuple[str, str]]:
        items = get(cluster, "pods", "-n", TEAM)["items"]
        return {p["metadata"]["uid"]: (p["metadata"]["name"], p["spec"]["nodeName"]) for p in items}

    before, old = members(), operator_pod(cluster, release)["metadata"]["name"]
    assert len(before) == 2
    assert '"level": "debug"' in cluster.kubectl("logs", "-n", release, old).stdout
    helm(cluster, "upgrade", "egpu", str(CHART), "-n", release, "--reuse-values",
         "--set", "logLevel=INFO", "--wait", "--timeout", "120s")  # fmt: skip
    wait_until(
        lambda: len(get(cluster, "pods", "-n", release)["items"]) == 1, 60, "the old pod to go"
    )
    new = operator_pod(cluster, release)
    assert new["metadata"]["name"] != old
    assert "--log-level=INFO" in new["spec"]["containers"][0]["args"]
    lease = get(cluster, "lease", "egpu-operator", "-n", release)
    assert lease["spec"]["holderIdentity"].startswith(new["metadata"]["name"] + "_")
    assert members() == before
    logs = cluster.kubectl("logs", "-n", release, new["metadata"]["name"]).stdout
    assert '"level": "debug"' not in logs


def test_uninstall_leaves_only_the_crds(cluster: Cluster, release: str) -> None:
    helm(cluster, "uninstall", "egpu", "-n", release, "--wait", "--timeout", "120s")
    selector = "app.kubernetes.io/instance=egpu"
    left = cluster.kubectl(
        "get", "deploy,rs,svc,sa,role,rolebinding,pdb,lease", "-n", release, "-l", selector,
        "-o", "name",
    ).stdout  # fmt: skip
    cluster_wide = cluster.kubectl(
        "get", "clusterrole,clusterrolebinding", "-l", selector, "-o", "name"
    ).stdout
    assert left.strip() == "" and cluster_wide.strip() == ""
    wait_until(
        lambda: not get(cluster, "pods", "-n", release)["items"], 90, "the operator pod to go"
    )
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout
    for name in ("gpuworkloads.egpu.io", "gpuinferenceservices.egpu.io", "gputopologies.egpu.io"):
        assert name in crds
