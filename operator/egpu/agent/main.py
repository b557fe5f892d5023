"""`egpu agent`: the node agent's command line and loop."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from egpu.agent.node import NodeAgent
from egpu.agent.simulate import SimulatedGpus, load_recording, parse_fault, synthetic_frame
from egpu.domain.duration import parse_duration
from egpu.domain.gpu import parse_interconnect
from egpu.domain.labels import (
    GPU_COUNT_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    INTERCONNECT_ANNOTATION,
)
from egpu.engines.health.report import report_text
from egpu.engines.health.risk import RiskPolicy
from egpu.engines.health.rules import DEFAULT_IGNORED_XIDS, HealthPolicy
from egpu.kube.client import ApiError, Credentials, KubeClient, path_for

log = logging.getLogger("egpu.agent")


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--node",
        action="append",
        default=[],
        help="the node (default $NODE_NAME); repeatable with --simulate",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="simulated GPUs (KWOK nodes): replay --recording, or healthy GPUs shaped "
        "as the node's labels and annotations say",
    )
    p.add_argument("--recording", default=None, help="NVML-shaped JSON recording to replay")
    p.add_argument(
        "--inject",
        action="append",
        default=[],
        help="a fault AT[+FOR]:NODE:GPU:KIND[=VALUE] (repeatable; see egpu.agent.simulate)",
    )
    p.add_argument(
        "--epoch",
        type=float,
        default=None,
        help="with --simulate: the Unix time fault times count from (default: the start)",
    )
    p.add_argument("--interval", default=env("EGPU_AGENT_INTERVAL", "10s"), help="poll period")
    p.add_argument(
        "--heartbeat",
        default=env("EGPU_AGENT_HEARTBEAT", "60s"),
        help="write the Node at least this often",
    )
    p.add_argument(
        "--quiet-period",
        default=env("EGPU_AGENT_QUIET_PERIOD", "5m"),
        help="how long after its last fault a GPU may be healthy again",
    )
    p.add_argument(
        "--passes",
        type=int,
        default=int(env("EGPU_AGENT_PASSES", "3")),
        help="passing checks in a row before a GPU is healthy again",
    )
    p.add_argument("--stall-after", default=env("EGPU_AGENT_STALL_AFTER", "60s"))
    p.add_argument(
        "--ignore-xids",
        default=env(
            "EGPU_AGENT_IGNORE_XIDS", ",".join(str(x) for x in sorted(DEFAULT_IGNORED_XIDS))
        ),
        help="XIDs that are application errors, not GPU faults ('' for none)",
    )
    p.add_argument("--max-temperature", type=int, default=90)
    p.add_argument(
        "--sbe-fault-delta",
        type=int,
        default=0,
        help="correctable ECC errors in one poll that make a fault (0: never)",
    )
    p.add_argument("--retired-dbe-limit", type=int, default=0)
    p.add_argument("--nvlink-error-delta", type=int, default=1000)
    p.add_argument("--throttle-is-fault", action="store_true")
    p.add_argument(
        "--risk-threshold",
        type=float,
        default=0.5,
        help="risk score (0..1) from which a healthy GPU is reported at risk",
    )
    p.add_argument(
        "--risk-sample-every",
        default="60s",
        help="spacing of the samples the risk score is computed from (window: 1h)",
    )
    p.add_argument(
        "--no-interconnect",
        dest="interconnect",
        action="store_false",
        help="do not publish the egpu.io/gpu-interconnect annotation",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("EGPU_AGENT_METRICS_PORT", "9400")),
        help="Prometheus metrics (0: off)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="read once, print the reading and the report as JSON, write nothing",
    )


def policy_of(args: argparse.Namespace) -> HealthPolicy:
    xids = frozenset(int(x) for x in args.ignore_xids.split(",") if x.strip())
    return HealthPolicy(
        ignored_xids=xids,
        max_temperature_c=args.max_temperature,
        sbe_fault_delta=args.sbe_fault_delta,
        retired_dbe_limit=args.retired_dbe_limit,
        nvlink_error_delta=args.nvlink_error_delta,
        throttle_is_fault=args.throttle_is_fault,
        stall_after_s=parse_duration(args.stall_after),
        quiet_period_s=parse_duration(args.quiet_period),
        passes_needed=args.passes,
    )


def simulated_source(
    node: dict[str, Any], args: argparse.Namespace, start: float, interval: float
) -> Callable[[float], dict[str, Any]]:
    meta, status = node["metadata"], node.get("status") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    count = int(
        (status.get("allocatable") or {}).get(GPU_RESOURCE) or labels.get(GPU_COUNT_LABEL) or 0
    )
    if args.recording:
        frames = load_recording(args.recording)
    else:
        wiring = parse_interconnect(annotations.get(INTERCONNECT_ANNOTATION), count)
        frames = [
            synthetic_frame(
                count,
                [list(g) for g in wiring.nvlink_groups],
                list(wiring.numa),
                labels.get(GPU_PRODUCT_LABEL) or "NVIDIA H100 80GB HBM3",
                seed=meta["name"],
            )
        ]
    faults = [parse_fault(f) for f in args.inject]
    return SimulatedGpus(meta["name"], frames, faults, start, interval).read


async def run(args: argparse.Namespace) -> int:
    policy = policy_of(args)
    interval = parse_duration(args.interval)
    nodes = args.node or ([os.environ["NODE_NAME"]] if os.environ.get("NODE_NAME") else [])
    if args.once and not args.simulate:
        from egpu.agent.nvml import NvmlReader

        reader = NvmlReader()
        agent = NodeAgent(nodes[0] if nodes else "local", lambda _now: reader.read(), policy)
        raw = reader.read()
        report, found = agent.judge(raw, time.time())
        print(
            json.dumps(
                {
                    "reading": raw,
                    "report": json.loads(report_text(report)),
                    "findings": [f"{f.gpu} {f.severity} {f.check}: {f.message}" for f in found],
                },
                indent=1,
            )
        )
        reader.close()
        return 0
    if not nodes:
        raise SystemExit("egpu agent: --node or $NODE_NAME is required")
    if len(nodes) > 1 and not args.simulate:
        raise SystemExit("egpu agent: several --node need --simulate")
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    start = args.epoch if args.epoch is not None else time.time()
    async with KubeClient(Credentials.load(args.kubeconfig)) as client:
        agents = []
        for name, node in (await read_nodes(client, nodes)).items():
            if args.simulate:
                source = simulated_source(node, args, start, interval)
            else:
                from egpu.agent.nvml import NvmlReader

                source = (lambda reader: lambda _now: reader.read())(NvmlReader())
            agent = NodeAgent(
                name,
                source,
                policy,
                publish_interconnect=args.interconnect,
                heartbeat_s=parse_duration(args.heartbeat),
                count_from_node=args.simulate,
                risk_policy=RiskPolicy(
                    threshold=args.risk_threshold,
                    sample_every_s=parse_duration(args.risk_sample_every),
                ),
                read_in_thread=not args.simulate,  # a simulated read never blocks
            )
            agent.restore(node)
            agents.append(agent)
        log.info(
            "agent started for %s (%s)", ",".join(nodes), "simulated" if args.simulate else "NVML"
        )
        await serve(agents, client, interval)
    return 0


async def read_nodes(client: KubeClient, names: list[str]) -> dict[str, dict[str, Any]]:
    """The Nodes to serve: one GET for one node, one LIST for many (a simulated agent
    serving hundreds of nodes would otherwise start with hundreds of requests)."""
    if len(names) == 1:
        try:
            return {names[0]: await client.get(path_for("v1", "nodes", None, names[0]))}
        except ApiError as exc:
            raise SystemExit(f"egpu agent: node {names[0]}: {exc}") from None
    items, _ = await client.list_all(path_for("v1", "nodes", None))
    found = {n["metadata"]["name"]: n for n in items}
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"egpu agent: nodes not found: {', '.join(missing[:10])}")
    return {n: found[n] for n in names}


async def serve(agents: list[NodeAgent], client: KubeClient, interval: float) -> None:
    """Every node on its own clock, its polls spread evenly over the interval: each
    one publishes as soon as its own reading changed the report, never behind the other
    nodes' readings (one process serving many simulated nodes behaves as one agent per
    node would)."""
    await asyncio.gather(
        *(serve_one(a, client, interval, interval * k / len(agents)) for k, a in enumerate(agents))
    )


async def serve_one(agent: NodeAgent, client: KubeClient, interval: float, offset: float) -> None:
    await asyncio.sleep(offset)
    next_at = time.time()
    while True:
        now = time.time()
        report = await agent.poll(now)
        if agent.due(report, now):
            await agent.publish(client, report, now)
        next_at = max(next_at + interval, time.time())  # fallen behind: the next at once
        await asyncio.sleep(next_at - time.time())


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=os.environ.get("EGPU_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
