#!/usr/bin/env python3
"""A real, local Kubernetes control plane made of processes, with KWOK nodes.

    python hack/localcluster.py up|down|status|env [--fresh] [--real-nodes N]

`up` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, all bound to 127.0.0.1 on free ports, with generated certificates, RBAC
and service-account tokens. With --real-nodes N (or EGPU_REAL_NODES=N) it also
starts N real nodes, each a containerd and a kubelet (hack/realnode.py), which
run real containers from images built without a registry (hack/images.py).
With --audit (or EGPU_AUDIT=1) the API server also writes an audit log of the
requests ServiceAccounts make (logs/audit.log), which the Helm e2e checks the
chart's RBAC against.
State lives in $EGPU_RUN_DIR (default .run/cluster
in the checkout): pki/, etcd/, logs/, kubeconfig and state.json. Binaries come
from hack/build-binaries.sh (cached under $EGPU_CACHE, outside git).

Standard library only, so it runs before the project's virtualenv exists.
Every failure tears down what was started: no orphan processes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))
import images  # noqa: E402
import realnode  # noqa: E402

RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "cluster"))
CACHE = Path(os.environ.get("EGPU_CACHE", Path.home() / ".cache" / "egpu"))
BIN_DIR = CACHE / "bin"
STAGES_DIR = REPO / "operator" / "egpu" / "sim" / "stages"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
# Pod IPs handed out by kwok: room for 100,000 pods.
POD_CIDR = "10.128.0.0/14"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# `up --audit`: the API server logs, at level Metadata, every request made by a
# ServiceAccount outside kube-system (the controller manager's own controllers run
# as kube-system ServiceAccounts and would flood it), one JSON event a line. The
# Helm e2e reads it to prove the chart's RBAC rule by rule.
AUDIT_LOG = RUN_DIR / "logs" / "audit.log"
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
"""


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


def binary(name: str) -> Path:
    own = {"egpu-fake-gpu-plugin": "fakegpu", "egpu-fake-dra-plugin": "fakedra"}
    if name in own:  # the project's own, versioned by its source
        digest = hashlib.sha256((REPO / "hack" / own[name] / "main.go").read_bytes()).hexdigest()
        return BIN_DIR / f"{name}-{digest[:12]}"
    v = images.read_versions()
    version = {
        "etcd": v["ETCD_VERSION"],
        "kubelet": v["KUBERNETES_VERSION"],
        "containerd": v["CONTAINERD_VERSION"],
        "containerd-shim-runc-v2": v["CONTAINERD_VERSION"],
        "kwok": v["KWOK_VERSION"],
        "helm": v["HELM_VERSION"],
    }.get(name, v["KUBERNETES_VERSION"])
    return BIN_DIR / f"{name}-{version}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates -----------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """CA, API server serving cert, client certs per component, SA key pair."""
    if (pki / "done").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-days",
        "3650",
        "-subj",
        "/CN=egpu-local-ca",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    sans = ",".join(
        [
            "IP:127.0.0.1",
            f"IP:{SERVICE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    certs = {
        "apiserver": ("/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth"),
        "admin": ("/O=system:masters/CN=egpu-admin", "extendedKeyUsage=clientAuth"),
        "controller-manager": ("/CN=system:kube-controller-manager", "extendedKeyUsage=clientAuth"),
        "scheduler": ("/CN=system:kube-scheduler", "extendedKeyUsage=clientAuth"),
        "kwok": ("/O=system:masters/CN=egpu-kwok", "extendedKeyUsage=clientAuth"),
    }
    for name, (subject, ext) in certs.items():
        (pki / f"{name}.ext").write_text(ext + "\n")
        openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki
        )
        openssl(
            "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.crt",
            cwd=pki,
        )
    openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    (pki / "done").write_text("")


def make_front_proxy_pki(pki: Path) -> None:
    """A second CA and the client cert the API server's aggregator presents to
    extension API servers (prometheus-adapter, metrics-server): the front proxy."""
    if (pki / "front-proxy-done").exists():
        return
    (pki / "front-proxy-client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for command in (
        "ecparam -name prime256v1 -genkey -noout -out front-proxy-ca.key",
        "req -x509 -new -key front-proxy-ca.key -days 3650 -subj /CN=egpu-front-proxy-ca"
        " -out front-proxy-ca.crt",
        "ecparam -name prime256v1 -genkey -noout -out front-proxy-client.key",
        "req -new -key front-proxy-client.key -subj /CN=front-proxy-client"
        " -out front-proxy-client.csr",
        "x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key"
        " -CAcreateserial -days 3650 -extfile front-proxy-client.ext -out front-proxy-client.crt",
    ):
        openssl(*command.split(), cwd=pki)
    (pki / "front-proxy-done").write_text("")


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: egpu-local
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: egpu-local
  context: {{cluster: egpu-local, user: {user}, namespace: default}}
current-context: egpu-local
"""
    )


# --- processes --------------------------------------------------------------


@dataclass
class State:
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls) -> State:
        path = RUN_DIR / "state.json"
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(ports=data.get("ports", {}), pids=data.get("pids", {}))

    def save(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        (RUN_DIR / "state.json").write_text(
            json.dumps({"ports": self.ports, "pids": self.pids}, indent=2)
        )


def ours(pid: int) -> bool:
    """True when pid is alive and is one of this run dir's processes (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and str(RUN_DIR) in cmdline


# The processes this invocation started: their exit is read from the handle,
# not from /proc, which can lag just after a start.
STARTED: dict[str, subprocess.Popen[bytes]] = {}


def start(state: State, name: str, argv: list[str]) -> None:
    logs = RUN_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / f"{name}.log").open("ab")
    # A new session, so the process outlives `up` and `down` can signal it alone.
    proc = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=RUN_DIR,
    )
    state.pids[name] = proc.pid
    STARTED[name] = proc
    state.save()


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_all(state: State, grace: float = 5.0) -> list[str]:
    """Stop one by one in reverse start order (clients before the API server,
    the API server before etcd, which it would otherwise wait for), each with
    SIGTERM, then SIGKILL after `grace` seconds. Returns the survivors."""
    for name in reversed(list(state.pids)):  # adopted processes (the demo operator) first
        pid = state.pids[name]
        if not ours(pid):
            continue
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while ours(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if ours(pid):
            _signal(pid, signal.SIGKILL)
            time.sleep(0.2)
    survivors = [n for n, p in state.pids.items() if ours(p)]
    state.pids.clear()
    state.save()
    return survivors


def tail(name: str, lines: int = 25) -> str:
    path = RUN_DIR / "logs" / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def https_ok(url: str, pki: Path, client: str | None = "admin") -> bool:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client:
        ctx.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    else:  # components serve self-signed certs on their health ports
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_for(what: str, check: object, state: State, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        proc = STARTED.get(name)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited during start-up (code {proc.returncode}):\n{tail(name)}"
            )
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}:\n{tail(name)}")


# --- the components ---------------------------------------------------------


def stages_file() -> Path:
    """All simulation Stages in one multi-document file for kwok's --config."""
    ready_ms = os.environ.get("EGPU_SIM_READY_DELAY_MS", "1000")
    if not ready_ms.isdigit():
        raise RuntimeError(f"EGPU_SIM_READY_DELAY_MS must be whole milliseconds, not {ready_ms!r}")
    docs = [
        p.read_text().strip().replace("__EGPU_READY_DELAY_MS__", ready_ms)
        for p in sorted(STAGES_DIR.glob("*.yaml"))
    ]
    if not docs:
        raise RuntimeError(f"no KWOK stages found in {STAGES_DIR}")
    path = RUN_DIR / "kwok-stages.yaml"
    path.write_text("\n---\n".join(docs) + "\n")
    return path


def held_back() -> set[str]:
    """Components not started by `up` (EGPU_HOLD_BACK=kube-scheduler): a benchmark
    starts them later with `start-scheduler`, so both schedulers see the same backlog."""
    return {c.strip() for c in os.environ.get("EGPU_HOLD_BACK", "").split(",") if c.strip()}


# kube-scheduler profiles `start-scheduler --profile` knows. Both are named
# default-scheduler, so the same pods go to either.
# - default: the stock plugins (NodeResourcesFit scores LeastAllocated: it spreads);
# - most-allocated: bin-packing, NodeResourcesFit scoring MostAllocated with
#   nvidia.com/gpu weighted above cpu and memory (the upstream "resource bin packing"
#   configuration).
SCHEDULER_PROFILES = {
    "default": "",
    "most-allocated": (
        "profiles:\n"
        "- schedulerName: default-scheduler\n"
        "  pluginConfig:\n"
        "  - name: NodeResourcesFit\n"
        "    args:\n"
        "      scoringStrategy:\n"
        "        type: MostAllocated\n"
        "        resources:\n"
        "        - {name: nvidia.com/gpu, weight: 10}\n"
        "        - {name: cpu, weight: 1}\n"
        "        - {name: memory, weight: 1}\n"
    ),
}


def scheduler_config(kubeconfig: Path, profile: str = "default") -> str:
    """The KubeSchedulerConfiguration for one of SCHEDULER_PROFILES."""
    if profile not in SCHEDULER_PROFILES:
        raise ValueError(
            f"unknown scheduler profile {profile!r}; one of {', '.join(SCHEDULER_PROFILES)}"
        )
    return (
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        "clientConnection:\n"
        f"  kubeconfig: {kubeconfig}\n"
        "  qps: 2000\n"
        "  burst: 4000\n"
        "leaderElection: {leaderElect: false}\n"
    ) + SCHEDULER_PROFILES[profile]


def start_scheduler(state: State, wait: bool = True, profile: str = "default") -> None:
    p = state.ports
    sched_cfg = RUN_DIR / "scheduler-config.yaml"
    sched_cfg.write_text(scheduler_config(RUN_DIR / "scheduler.kubeconfig", profile))
    start(
        state,
        "kube-scheduler",
        [
            str(binary("kube-scheduler")),
            f"--config={sched_cfg}",
            f"--authentication-kubeconfig={RUN_DIR / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={RUN_DIR / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['scheduler']}",
            "--v=1",
        ],
    )
    if wait:
        wait_scheduler(state)


def wait_scheduler(state: State) -> None:
    p, pki = state.ports, RUN_DIR / "pki"
    wait_for(
        "kube-scheduler /healthz",
        lambda: https_ok(f"https://127.0.0.1:{p['scheduler']}/healthz", pki, None),
        state,
        "kube-scheduler",
        60,
    )


def audit_flags(audit: bool) -> list[str]:
    if not audit:
        return []
    policy = RUN_DIR / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    AUDIT_LOG.parent.mkdir(parents=True, exist_ok=True)
    AUDIT_LOG.unlink(missing_ok=True)  # this control plane's requests only
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={AUDIT_LOG}",
        "--audit-log-format=json",
        # Rotated only past 1 GiB (0 would mean lumberjack's 100 MB), which no test
        # run comes near: a reader sees one whole file.
        "--audit-log-maxsize=1024",
    ]


def launch(
    state: State, real_nodes: int = 0, gpus: int = 0, dra: bool = False, audit: bool = False
) -> None:
    pki = RUN_DIR / "pki"
    make_pki(pki)
    make_front_proxy_pki(pki)
    p = state.ports
    for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"):
        p[name] = free_port()
    state.save()
    server = f"https://127.0.0.1:{p['apiserver']}"
    for user in ("admin", "controller-manager", "scheduler", "kwok"):
        write_kubeconfig(RUN_DIR / f"{user}.kubeconfig", server, pki, user)
    shutil.copy(RUN_DIR / "admin.kubeconfig", RUN_DIR / "kubeconfig")

    etcd_dir = RUN_DIR / "etcd"
    shutil.rmtree(etcd_dir, ignore_errors=True)
    start(
        state,
        "etcd",
        [
            str(binary("etcd")),
            "--name=egpu",
            f"--data-dir={etcd_dir}",
            f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
            f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
            f"--listen-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
            f"--initial-cluster=egpu=http://127.0.0.1:{p['etcd-peer']}",
            # A scratch store: durability buys nothing here and fsync costs a lot.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=8589934592",
            "--listen-metrics-urls=",
            "--log-level=warn",
        ],
    )
    wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{p['etcd']}/health"), state, "etcd", 30)

    start(
        state,
        "kube-apiserver",
        [
            str(binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            # Real nodes' pods reach it on their bridge's gateway address.
            f"--bind-address={'0.0.0.0' if real_nodes else '127.0.0.1'}",
            "--advertise-address=127.0.0.1",
            # Logs and exec on real nodes; kubelets serve self-signed certificates.
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--secure-port={p['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # No client-side or server-side throttling: the tests and benchmarks
            # measure this project, not the limits of a shared production server.
            "--max-requests-inflight=0",
            "--max-mutating-requests-inflight=0",
            "--enable-priority-and-fairness=false",
            "--allow-privileged=true",
            "--event-ttl=1h",
            # The aggregation layer: extension API servers (custom metrics for the HPA)
            # trust requests that carry the front proxy's client cert.
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--profiling=false",
            *audit_flags(audit),
            "--v=1",
        ],
    )
    wait_for(
        "kube-apiserver /readyz",
        lambda: https_ok(f"{server}/readyz", pki),
        state,
        "kube-apiserver",
        90,
    )

    start(
        state,
        "kube-controller-manager",
        [
            str(binary("kube-controller-manager")),
            f"--kubeconfig={RUN_DIR / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={RUN_DIR / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={RUN_DIR / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['controller-manager']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--kube-api-qps=2000",
            "--kube-api-burst=4000",
            "--profiling=false",
            "--v=1",
        ],
    )
    if "kube-scheduler" not in held_back():
        start_scheduler(state, wait=False)
    start(
        state,
        "kwok",
        [
            str(binary("kwok")),
            f"--kubeconfig={RUN_DIR / 'kwok.kubeconfig'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-label-selector=type=kwok",
            f"--config={stages_file()}",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.255.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{p['kwok']}",
            # Per-pod INFO lines cost kwok real CPU at 10,000 pods.
            "--v=WARN",
        ],
    )
    wait_for(
        "kube-controller-manager /healthz",
        lambda: https_ok(f"https://127.0.0.1:{p['controller-manager']}/healthz", pki, None),
        state,
        "kube-controller-manager",
        60,
    )
    if "kube-scheduler" not in held_back():
        wait_scheduler(state)
    wait_for(
        "kwok /healthz", lambda: http_ok(f"http://127.0.0.1:{p['kwok']}/healthz"), state, "kwok", 30
    )
    # Service accounts come from the controller-manager: pods cannot be
    # created before the default one exists.
    wait_for(
        "the default ServiceAccount",
        lambda: https_ok(f"{server}/api/v1/namespaces/default/serviceaccounts/default", pki),
        state,
        "kube-controller-manager",
        60,
    )
    for index in range(real_nodes):
        start_real_node(state, realnode.Node(RUN_DIR, index), gpus, dra)


def https_json(url: str, pki: Path) -> object:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ssl.SSLError, ValueError):
        return None


def node_ready(state: State, name: str) -> bool:
    node = https_json(
        f"https://127.0.0.1:{state.ports['apiserver']}/api/v1/nodes/{name}", RUN_DIR / "pki"
    )
    if not isinstance(node, dict):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_gpus(state: State, name: str) -> int:
    node = https_json(
        f"https://127.0.0.1:{state.ports['apiserver']}/api/v1/nodes/{name}", RUN_DIR / "pki"
    )
    if not isinstance(node, dict):
        return 0
    return int(node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0"))


def node_dra_devices(state: State, name: str) -> int:
    """Devices in the ResourceSlices of node `name` (only the fake DRA plugin publishes any)."""
    slices = https_json(
        f"https://127.0.0.1:{state.ports['apiserver']}/apis/resource.k8s.io/v1/resourceslices"
        f"?fieldSelector=spec.nodeName%3D{name}",
        RUN_DIR / "pki",
    )
    if not isinstance(slices, dict):
        return 0
    return sum(len(s.get("spec", {}).get("devices") or []) for s in slices.get("items", []))


def start_dra_plugin(state: State, node: realnode.Node, gpus: int) -> None:
    """The fake DRA kubelet plugin: registered with this node's kubelet (its
    plugins_registry) and publishing `gpus` devices in the node's ResourceSlice."""
    plugin = f"fake-dra-{node.name}"
    # A fresh node: the kubelet's own DRA state went with the last teardown.
    shutil.rmtree(node.dra_state_dir, ignore_errors=True)
    registered = node.dra_state_dir / "registered"
    start(
        state,
        plugin,
        [
            str(binary("egpu-fake-dra-plugin")),
            f"-node={node.name}",
            f"-kubeconfig={RUN_DIR / 'admin.kubeconfig'}",
            f"-registry-dir={node.dir / 'kubelet' / 'plugins_registry'}",
            f"-state-dir={node.dra_state_dir}",
            f"-cdi-dir={node.cdi_dir}",
            f"-count={gpus}",
        ],
    )
    wait_for(
        f"{gpus} DRA devices of {node.name}, registered with its kubelet",
        lambda: registered.exists() and node_dra_devices(state, node.name) == gpus,
        state,
        plugin,
        60,
    )


def start_real_node(state: State, node: realnode.Node, gpus: int = 0, dra: bool = False) -> None:
    """containerd, the images, then the kubelet; returns once the Node is Ready
    (and, with `gpus`, advertises that many fake GPUs through a device plugin, or
    with `dra` publishes them through a DRA kubelet plugin instead)."""
    p, pki = state.ports, RUN_DIR / "pki"
    longest = node.dir / "kubelet" / "pod-resources" / "0123456789"
    if len(str(longest)) > 107:
        raise RuntimeError(
            f"EGPU_RUN_DIR is too long for the kubelet's unix sockets ({longest}): "
            "a shorter path, please"
        )
    p[f"kubelet-{node.index}"] = free_port()
    p[f"kubelet-healthz-{node.index}"] = free_port()
    state.save()
    realnode.write_config(
        node,
        pki,
        f"https://127.0.0.1:{p['apiserver']}",
        {
            "kubelet": p[f"kubelet-{node.index}"],
            "kubelet-healthz": p[f"kubelet-healthz-{node.index}"],
        },
        binary("containerd-shim-runc-v2"),
    )
    realnode.make_cgroup_root(node)
    realnode.make_bridge(node)
    realnode.add_service_rule(node, p["apiserver"])
    ctr = f"containerd-{node.name}"
    start(state, ctr, [str(binary("containerd")), "--config", str(node.dir / "containerd.toml")])
    wait_for(
        f"{ctr}'s socket",
        lambda: (
            subprocess.run(
                ["ctr", "--address", str(node.socket), "version"], capture_output=True
            ).returncode
            == 0
        ),
        state,
        ctr,
        30,
    )
    images.load(str(node.socket), images.build(["pause", "python"]).values())
    kubelet = f"kubelet-{node.name}"
    start(
        state,
        kubelet,
        [
            str(binary("kubelet")),
            f"--config={node.dir / 'kubelet.yaml'}",
            f"--kubeconfig={node.dir / 'kubeconfig'}",
            f"--root-dir={node.dir / 'kubelet'}",
            f"--cert-dir={node.dir / 'kubelet-pki'}",
            f"--hostname-override={node.name}",
            f"--node-ip={node.gateway}",
            f"--node-labels={realnode.NODE_LABEL}=true",
            # cAdvisor finds containerd where a cluster's kubelet does (its own socket
            # is elsewhere here): container stats as a real node has them by default.
            f"--containerd={node.socket}",
            "--v=1",
        ],
    )
    wait_for(f"node {node.name} Ready", lambda: node_ready(state, node.name), state, kubelet, 90)
    if gpus and dra:
        start_dra_plugin(state, node, gpus)
    elif gpus:
        plugin = f"fake-gpu-{node.name}"
        start(
            state,
            plugin,
            [
                str(binary("egpu-fake-gpu-plugin")),
                # The kubelet listens for plugins in this machine-wide directory
                # whatever its root: only the newest kubelet on a machine gets them.
                f"-plugin-dir={realnode.DEVICE_PLUGIN_DIR}",
                f"-endpoint={node.network}.sock",
                f"-count={gpus}",
                f"-owner={node.dir}",  # so that `down` knows it for this run's
            ],
        )
        wait_for(
            f"{gpus} nvidia.com/gpu on {node.name}",
            lambda: node_gpus(state, node.name) == gpus,
            state,
            plugin,
            60,
        )


def load_images(names: list[str], if_running: bool = False) -> int:
    """Import images (hack/images.py) into every running real node's containerd."""
    nodes = realnode.nodes_of(RUN_DIR)
    state = State.load()
    running = [n for n in nodes if ours(state.pids.get(f"containerd-{n.name}", -1))]
    if not running:
        log(f"no real node is running in {RUN_DIR} (up --real-nodes N): nothing loaded")
        return 0 if if_running else 1
    archives = images.build(names)
    for node in running:
        images.load(str(node.socket), archives.values())
        log(f"loaded {', '.join(names)} into {node.name}")
    return 0


def healthy(state: State, real_nodes: int = 0) -> bool:
    return (
        bool(state.pids)
        and all(
            ours(pid)
            for name, pid in state.pids.items()
            if name.startswith(("kubelet-", "containerd-", "fake-gpu-", "fake-dra-"))
        )
        and all(f"kubelet-egpu-real-{i}" in state.pids for i in range(real_nodes))
        and all(ours(state.pids[c]) for c in COMPONENTS if c in state.pids)
        and all(c in state.pids for c in COMPONENTS if c not in held_back())
        and https_ok(f"https://127.0.0.1:{state.ports['apiserver']}/readyz", RUN_DIR / "pki")
    )


def ensure_binaries(real_nodes: int = 0, gpus: int = 0, dra: bool = False) -> None:
    if real_nodes and realnode.missing_tools():
        log(f"installing {', '.join(realnode.missing_tools())}")
        subprocess.run(["bash", str(REPO / "hack" / "install-node-deps.sh")], check=True)
    needed = [
        *COMPONENTS,
        *(["kubelet", "containerd", "containerd-shim-runc-v2"] if real_nodes else []),
        *(["egpu-fake-gpu-plugin"] if real_nodes and gpus and not dra else []),
        *(["egpu-fake-dra-plugin"] if real_nodes and gpus and dra else []),
    ]
    missing = [c for c in needed if not binary(c).exists()]
    if missing:
        log(f"obtaining binaries: {', '.join(missing)}")
        subprocess.run(["bash", str(REPO / "hack" / "build-binaries.sh")], check=True)


def cmd_up(
    fresh: bool, real_nodes: int = 0, gpus: int = 0, dra: bool = False, audit: bool = False
) -> int:
    state = State.load()
    if not fresh and healthy(state, real_nodes):
        log(f"already running; KUBECONFIG={RUN_DIR / 'kubeconfig'}")
        print(RUN_DIR / "kubeconfig")
        return 0
    if state.pids:
        stop_everything(state)
    ensure_binaries(real_nodes, gpus, dra)
    t0 = time.monotonic()
    state = State()
    try:
        launch(state, real_nodes, gpus, dra, audit)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        log(f"start failed: {exc}")
        survivors = stop_everything(state)
        if survivors:
            log(f"could not stop: {survivors}")
        return 1
    except BaseException:
        stop_everything(state)
        raise
    log(f"control plane ready in {time.monotonic() - t0:.1f}s; logs in {RUN_DIR / 'logs'}")
    log(f"export KUBECONFIG={RUN_DIR / 'kubeconfig'}")
    print(RUN_DIR / "kubeconfig")
    return 0


def stop_everything(state: State) -> list[str]:
    """stop_all, then undo what real nodes left: pods, shims, mounts, bridges."""
    survivors = stop_all(state)
    for node in realnode.nodes_of(RUN_DIR):
        survivors += [f"{node.name}: {p}" for p in realnode.teardown(node)]
    return survivors


def cmd_down() -> int:
    state = State.load()
    survivors = stop_everything(state)
    shutil.rmtree(RUN_DIR / "etcd", ignore_errors=True)
    if survivors:
        log(f"processes still alive: {survivors}")
        return 1
    log("stopped; no process left")
    return 0


def cmd_status() -> int:
    state = State.load()
    if not state.pids:
        print("stopped")
        return 1
    for name in [
        *COMPONENTS,
        *(
            n
            for n in state.pids
            if n.startswith(("containerd-", "kubelet-", "fake-gpu-", "fake-dra-"))
        ),
    ]:
        pid = state.pids.get(name)
        if pid is None:
            print(f"{name:26} not started")
            continue
        print(f"{name:26} pid={pid} {'running' if ours(pid) else 'DEAD'}")
    ok = healthy(state)
    print(
        f"apiserver https://127.0.0.1:{state.ports.get('apiserver')} "
        f"{'ready' if ok else 'NOT READY'}"
    )
    print(f"KUBECONFIG={RUN_DIR / 'kubeconfig'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "env", "adopt", "start-scheduler", "load-images"],
    )
    parser.add_argument("images", nargs="*", help="load-images: python, pause, operator")
    parser.add_argument("--fresh", action="store_true", help="restart even if running")
    parser.add_argument(
        "--if-running", action="store_true", help="load-images: no real node is no error"
    )
    parser.add_argument(
        "--real-nodes",
        type=int,
        default=int(os.environ.get("EGPU_REAL_NODES", "0") or 0),
        help="up: also start N real kubelet nodes (containerd, runc; needs root)",
    )
    parser.add_argument(
        "--real-node-gpus",
        type=int,
        default=int(os.environ.get("EGPU_REAL_NODE_GPUS", "0") or 0),
        help="up: fake nvidia.com/gpu devices per real node, from a device plugin (default 0)",
    )
    parser.add_argument(
        "--real-node-dra",
        action="store_true",
        default=os.environ.get("EGPU_REAL_NODE_DRA", "") == "1",
        help="up: the real nodes' fake GPUs come from a DRA kubelet plugin (ResourceSlices of"
        " driver gpu.egpu.io) instead of the device plugin",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        default=os.environ.get("EGPU_AUDIT", "") not in ("", "0"),
        help=f"up: log ServiceAccounts' requests (audit level Metadata) to {AUDIT_LOG}",
    )
    parser.add_argument("--name", help="adopt: the process's name")
    parser.add_argument("--pid", type=int, help="adopt: a process that `down` must stop too")
    parser.add_argument(
        "--profile",
        choices=sorted(SCHEDULER_PROFILES),
        default="default",
        help="start-scheduler: the kube-scheduler profile (most-allocated: bin-packing)",
    )
    args = parser.parse_intermixed_args(argv)
    if args.command == "adopt":
        if not args.name or not args.pid or not ours(args.pid):
            parser.error("adopt needs --name and the --pid of a live process of this run dir")
        state = State.load()
        state.pids[args.name] = args.pid
        state.save()
        return 0
    if args.command == "up":
        if args.real_node_dra and not (args.real_nodes and args.real_node_gpus):
            parser.error("--real-node-dra needs --real-nodes N and --real-node-gpus N")
        return cmd_up(
            args.fresh, args.real_nodes, args.real_node_gpus, args.real_node_dra, args.audit
        )
    if args.command == "load-images":
        return load_images(args.images or ["operator"], args.if_running)
    if args.command == "down":
        return cmd_down()
    if args.command == "start-scheduler":
        state = State.load()
        if "kube-scheduler" in state.pids and ours(state.pids["kube-scheduler"]):
            return 0
        start_scheduler(state, profile=args.profile)
        return 0
    if args.command == "status":
        return cmd_status()
    print(f"export KUBECONFIG={RUN_DIR / 'kubeconfig'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
