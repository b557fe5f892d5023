"""Real kubelet nodes for the local control plane (localcluster.py up --real-nodes N).

Each node is a containerd and a kubelet, with everything they write under
$EGPU_RUN_DIR/nodes/<name>: containerd's root, state, socket and network
namespaces; the kubelet's root, certificates and pod logs; the CNI configuration
and IP allocations. containerd and its runc shim are the ones pinned in
hack/versions.env (hack/build-binaries.sh); containers run with Debian's runc,
pods are wired with Debian's CNI `bridge` plugin on a bridge of their own (a /24
chosen from the run directory, so two run directories on one machine do not
collide), their cgroups live under a cgroup root of their own. Images come from
hack/images.py (no registry).

Pods reach the API server the way they do in a cluster, at the `kubernetes`
Service's ClusterIP: one iptables DNAT rule for the node's pod subnet sends
10.96.0.1:443 to the API server, which listens on the bridge's gateway too.
That rule is what kube-proxy would program for this one Service; kube-proxy
itself owns machine-wide chains that two local clusters would fight over.

`teardown` undoes all of it: pod processes (by cgroup), containerd shims (by
their socket path), mounts under the node directory, the bridge, the DNAT rule,
the cgroups. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")
SERVICE_IP = "10.96.0.1"
NODE_LABEL = "egpu.io/real-node"
# Real nodes are tainted: only pods meant for them (the operator, the real-node
# tests) tolerate it, so nothing scheduled for the simulated nodes lands here.
TAINT = f"{NODE_LABEL}=true:NoSchedule"
PAUSE_REF = "egpu.local/pause:1"
# Where every kubelet listens for device plugins (hard-coded in the kubelet).
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")


@dataclass(frozen=True)
class Node:
    run_dir: Path
    index: int

    @property
    def tag(self) -> str:
        """Short and unique per run directory: names the bridge, cgroups, rules."""
        return hashlib.sha1(str(self.run_dir).encode()).hexdigest()[:6]

    @property
    def name(self) -> str:
        return f"egpu-real-{self.index}"

    @property
    def dir(self) -> Path:
        return self.run_dir / "nodes" / self.name

    @property
    def dra_state_dir(self) -> Path:
        """The fake DRA plugin's records: prepared/<claim uid>.json, events.jsonl."""
        return self.dir / "dra"

    @property
    def cdi_dir(self) -> Path:
        """CDI specs the fake DRA plugin writes per prepared claim; containerd reads them."""
        return self.dra_state_dir / "cdi"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def bridge(self) -> str:
        return f"egpu{self.tag}n{self.index}"  # at most 15 characters

    @property
    def subnet_prefix(self) -> str:
        # 10.200.0.0 - 10.249.255.0: clear of the service (10.96/16) and
        # simulated pod (10.128/14) ranges and of kwok's node IP (10.255.0.1).
        return f"10.{200 + int(self.tag, 16) % 50}.{self.index}"

    @property
    def subnet(self) -> str:
        return f"{self.subnet_prefix}.0/24"

    @property
    def gateway(self) -> str:
        return f"{self.subnet_prefix}.1"

    @property
    def cgroup_root(self) -> str:
        return f"egpu-{self.tag}-{self.index}"

    @property
    def network(self) -> str:
        return f"egpu-{self.tag}-{self.index}"

    @property
    def rule_comment(self) -> str:
        return f"egpu-{self.tag}-{self.index} kubernetes service"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def missing_tools() -> list[str]:
    return [
        t
        # containerd itself is built (hack/build-binaries.sh); Debian's package
        # is kept for its `ctr`, which imports the images.
        for t in ("runc", "ctr", "iptables", "ip", "mmdebstrap")
        if not shutil.which(t)
    ] + ([] if (CNI_BIN / "bridge").exists() else ["containernetworking-plugins"])


# --- configuration ------------------------------------------------------------


def write_config(node: Node, pki: Path, server: str, ports: dict[str, int], shim: Path) -> None:
    """`shim`: the containerd-shim-runc-v2 built with the node's containerd."""
    d = node.dir
    for sub in ("containerd/root", "containerd/state", "cni/conf", "cni/ipam", "kubelet", "logs"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    (d / "containerd.toml").write_text(
        f"""version = 2
root = "{d / "containerd/root"}"
state = "{d / "containerd/state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd/opt"}"
[{cri}]
  sandbox_image = "{PAUSE_REF}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Raising a process's OOM priority is refused on this kind of machine: keep
  # every container's oom_score_adj at or above containerd's own.
  restrict_oom_score_adj = true
  # Network namespaces under the state directory, not /var/run/netns: the
  # node's teardown finds every one of them there.
  netns_mounts_under_state_dir = true
  # The devices a DRA claim's CDI ids name reach the container (hack/fakedra).
  enable_cdi = true
  cdi_spec_dirs = ["{node.cdi_dir}"]
[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{d / "cni/conf"}"
  max_conf_num = 1
[{cri}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "{shim}"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
"""
    )
    (d / "cni/conf/10-egpu.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": node.network,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": node.bridge,
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": node.subnet, "gateway": node.gateway}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(d / "cni/ipam"),
                        },
                    }
                ],
            },
            indent=2,
        )
    )
    # The kubelet's client certificate: the Node authorizer's user for this node.
    key, csr, crt = (d / f"kubelet.{ext}" for ext in ("key", "csr", "crt"))
    if not crt.exists():
        ext = d / "kubelet.ext"
        ext.write_text("extendedKeyUsage=clientAuth\n")
        for argv in (
            ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
            ["req", "-new", "-key", str(key), "-subj",
             f"/O=system:nodes/CN=system:node:{node.name}", "-out", str(csr)],
            ["x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey",
             str(pki / "ca.key"), "-CAcreateserial", "-days", "3650", "-extfile", str(ext),
             "-out", str(crt)],
        ):  # fmt: skip
            run("openssl", *argv)
    (d / "kubeconfig").write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: egpu-local
  cluster: {{server: "{server}", certificate-authority: "{pki / "ca.crt"}"}}
users:
- name: {node.name}
  user: {{client-certificate: "{crt}", client-key: "{key}"}}
contexts:
- name: egpu-local
  context: {{cluster: egpu-local, user: {node.name}}}
current-context: egpu-local
"""
    )
    # EGPU_REAL_NODE_CRI_STATS=0: the kubelet's default stats, to compare (benchmarks).
    cri_stats = "false" if os.environ.get("EGPU_REAL_NODE_CRI_STATS") == "0" else "true"
    (d / "kubelet.yaml").write_text(
        f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {node.gateway}
port: {ports["kubelet"]}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {ports["kubelet-healthz"]}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: "{pki / "ca.crt"}"}}
authorization: {{mode: Webhook}}
containerRuntimeEndpoint: unix://{node.socket}
cgroupDriver: cgroupfs
cgroupRoot: /{node.cgroup_root}
failCgroupV1: false
failSwapOn: false
enforceNodeAllocatable: []
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 32
podLogsDir: "{d / "logs"}"
volumePluginDir: "{d / "kubelet/volume-plugins"}"
registerWithTaints:
- {{key: {NODE_LABEL}, value: "true", effect: NoSchedule}}
serializeImagePulls: false
# Container CPU and memory in /metrics/resource read by containerd from the cgroups
# when asked, instead of cAdvisor's copy refreshed every 10-30 s (docs/resize.md;
# containerd before 1.6.22 can crash on concurrent stats calls: the node runs the
# one pinned in hack/versions.env).
featureGates: {{PodAndContainerStatsFromCRI: {cri_stats}}}
"""
    )


def make_cgroup_root(node: Node) -> None:
    """The kubelet refuses a cgroup root that does not exist in every hierarchy."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / node.cgroup_root
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":  # an empty cpuset admits no task
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (path / f).read_text().strip():
                    (path / f).write_text((hierarchy / f).read_text())


def cgroup_hierarchies() -> list[Path]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] in ("cgroup", "cgroup2") and parts[1].startswith(str(CGROUP_FS)):
            out.append(Path(parts[1]))
    return out


def add_service_rule(node: Node, apiserver_port: int) -> None:
    spec = [
        "-s", node.subnet, "-d", f"{SERVICE_IP}/32", "-p", "tcp", "--dport", "443",
        "-m", "comment", "--comment", node.rule_comment,
        "-j", "DNAT", "--to-destination", f"{node.gateway}:{apiserver_port}",
    ]  # fmt: skip
    if run("iptables", "-w", "-t", "nat", "-C", "PREROUTING", *spec, check=False).returncode:
        run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", *spec)


def make_bridge(node: Node) -> None:
    """The bridge with its gateway address, before the first pod: the API server
    is reached there (the CNI plugin would create it only with the first pod)."""
    if run("ip", "link", "show", node.bridge, check=False).returncode:
        run("ip", "link", "add", node.bridge, "type", "bridge")
    addrs = run("ip", "-o", "addr", "show", "dev", node.bridge).stdout
    if f" {node.gateway}/" not in addrs:
        run("ip", "addr", "add", f"{node.gateway}/24", "dev", node.bridge)
    run("ip", "link", "set", node.bridge, "up")


# --- teardown -----------------------------------------------------------------


def _cgroup_dirs(node: Node) -> list[Path]:
    dirs: list[Path] = []
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / node.cgroup_root
        if root.is_dir():
            dirs.extend(p for p in root.rglob("*") if p.is_dir())
            dirs.append(root)
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(node: Node) -> set[int]:
    pids: set[int] = set()
    for d in _cgroup_dirs(node):
        with contextlib.suppress(OSError):
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
    return pids


def kill_pods(node: Node, timeout: float = 10.0) -> None:
    """SIGKILL every process in the node's cgroups (the pods' containers)."""
    deadline = time.monotonic() + timeout
    while (pids := _cgroup_pids(node)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def processes_mentioning(text: str) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            out.append(int(proc.name))
    return out


def kill_mentioning(text: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL the processes whose command line names `text` (containerd's shims
    name the socket); returns the ones still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while (pids := processes_mentioning(text)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return processes_mentioning(text)


def unmount_under(path: Path) -> None:
    prefix = str(path)
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        if run("umount", point, check=False).returncode:
            run("umount", "-l", point, check=False)


def teardown(node: Node) -> list[str]:
    """Undo everything the node made (after its kubelet and containerd stopped).
    Returns what could not be removed."""
    problems = []
    kill_pods(node)
    left = kill_mentioning(str(node.dir))
    if left:
        problems.append(f"processes {left}")
    unmount_under(node.dir)
    if run("ip", "link", "show", node.bridge, check=False).returncode == 0:
        run("ip", "link", "del", node.bridge, check=False)
    rules = run("iptables", "-w", "-t", "nat", "-S", "PREROUTING", check=False).stdout
    for rule in rules.splitlines():
        if node.rule_comment in rule:
            argv = rule.replace("-A PREROUTING", "-D PREROUTING", 1)
            # The comment holds spaces: re-split around its quotes.
            before, quoted, after = argv.partition(f'"{node.rule_comment}"')
            run("iptables", "-w", "-t", "nat", *before.split(), quoted.strip('"'), *after.split(),
                check=False)  # fmt: skip
    for d in _cgroup_dirs(node):
        with contextlib.suppress(OSError):
            d.rmdir()
    if any(p.exists() for p in _cgroup_dirs(node)):
        problems.append("cgroups")
    # CNI result cache entries (libcni keeps them in /var/lib/cni, by network name).
    for cache in Path("/var/lib/cni/results").glob(f"{node.network}-*"):
        cache.unlink(missing_ok=True)
    for sub in ("containerd", "kubelet"):
        shutil.rmtree(node.dir / sub, ignore_errors=True)
    if (node.dir / "containerd").exists() or (node.dir / "kubelet").exists():
        problems.append(f"files under {node.dir}")
    return problems


def nodes_of(run_dir: Path) -> list[Node]:
    base = run_dir / "nodes"
    if not base.is_dir():
        return []
    return sorted(
        (Node(run_dir, int(p.name.rsplit("-", 1)[1])) for p in base.glob("egpu-real-*")),
        key=lambda n: n.index,
    )
