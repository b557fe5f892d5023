"""The operator's entry point: `egpu-operator` (kopf underneath)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import kopf

from egpu.controllers.health import Health, serve_health
from egpu.controllers.registry import OperatorOptions, build_registry
from egpu.domain.duration import parse_duration
from egpu.engines.leadership import LeaseTimings
from egpu.observability.logging import configure_logging, get_logger
from egpu.observability.metrics import serve_metrics

# After leadership is lost, the operator stops its loops at once and exits; if a clean
# stop takes longer than this, it exits anyway.
EXIT_GRACE_S = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="egpu-operator", description=__doc__)
    p.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or in-cluster")
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only these namespaces (repeatable); default: the whole cluster",
    )
    p.add_argument(
        "--bind-address",
        default=env("EGPU_BIND_ADDRESS", "0.0.0.0"),
        help="address of the /healthz, /readyz and /metrics servers",
    )
    p.add_argument("--health-port", type=int, default=8081, help="/healthz and /readyz")
    p.add_argument("--metrics-port", type=int, default=8080)
    p.add_argument(
        "--topology",
        default=env("EGPU_TOPOLOGY", "default"),
        help="the GPUTopology that drives placement (default: 'default'; without "
        "it, gangs are placed by node only)",
    )
    p.add_argument("--log-level", default=env("EGPU_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=env("EGPU_LEADER_ELECT", "true").lower() != "false",
        help="elect one leader among replicas through a Lease (default: on)",
    )
    p.add_argument("--lease-name", default=env("EGPU_LEASE_NAME", "egpu-operator"))
    p.add_argument(
        "--lease-namespace",
        default=env("EGPU_LEASE_NAMESPACE") or env("POD_NAMESPACE") or "default",
        help="namespace of the Lease (default: $POD_NAMESPACE, else 'default')",
    )
    p.add_argument("--lease-duration", default=env("EGPU_LEASE_DURATION", "15s"))
    p.add_argument("--renew-deadline", default=env("EGPU_RENEW_DEADLINE", "10s"))
    p.add_argument("--retry-period", default=env("EGPU_RETRY_PERIOD", "2s"))
    return p.parse_args(argv)


def lease_timings(args: argparse.Namespace) -> LeaseTimings:
    try:
        return LeaseTimings(
            duration_s=parse_duration(args.lease_duration),
            renew_deadline_s=parse_duration(args.renew_deadline),
            retry_s=parse_duration(args.retry_period),
        )
    except ValueError as exc:
        raise SystemExit(f"egpu-operator: {exc}") from None


async def serve(args: argparse.Namespace) -> int:
    log = get_logger("egpu.operator")
    health = Health()
    runner = await serve_health(health, args.bind_address, args.health_port)
    stop = asyncio.Event()
    lost = asyncio.Event()

    def on_lost() -> None:
        lost.set()
        stop.set()
        asyncio.get_running_loop().call_later(EXIT_GRACE_S, os._exit, 1)

    options = OperatorOptions(
        kubeconfig=args.kubeconfig,
        topology_name=args.topology,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        lease_timings=lease_timings(args),
        namespaces=frozenset(args.namespace),
    )
    log.info(
        "starting",
        namespaces=args.namespace or "all",
        health=f"http://{args.bind_address}:{args.health_port}/healthz",
        metrics=f"http://{args.bind_address}:{args.metrics_port}/metrics",
        lease=f"{args.lease_namespace}/{args.lease_name}" if args.leader_elect else None,
    )
    try:
        await kopf.operator(
            registry=build_registry(options, health, on_lost),
            memo=kopf.Memo(),
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=True,  # one leader by the Lease, not kopf's peering
            stop_flag=stop,
        )
    finally:
        await runner.cleanup()
    return 1 if lost.is_set() else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # read by kopf's login handlers
    configure_logging(args.log_level)
    lease_timings(args)  # refuse bad timings before anything starts
    serve_metrics(args.metrics_port, args.bind_address)
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(serve(args))
    return code


if __name__ == "__main__":
    sys.exit(main())
