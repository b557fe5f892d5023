"""The operator's entry point: `egpu-operator` (kopf underneath)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import kopf

from egpu.controllers.registry import build_registry
from egpu.observability.logging import configure_logging, get_logger
from egpu.observability.metrics import serve_metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
        default=os.environ.get("EGPU_BIND_ADDRESS", "0.0.0.0"),
        help="address of the /healthz and /metrics servers",
    )
    p.add_argument("--health-port", type=int, default=8081)
    p.add_argument("--metrics-port", type=int, default=8080)
    p.add_argument(
        "--topology",
        default=os.environ.get("EGPU_TOPOLOGY", "default"),
        help="the GPUTopology that drives placement (default: 'default'; without "
        "it, gangs are placed by node only)",
    )
    p.add_argument("--log-level", default=os.environ.get("EGPU_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--peering",
        default=None,
        help="kopf peering object for active/standby replicas; default: standalone",
    )
    p.add_argument("--priority", type=int, default=0, help="peering priority (unique per replica)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # read by kopf's login handlers
    configure_logging(args.log_level)
    log = get_logger("egpu.operator")
    serve_metrics(args.metrics_port, args.bind_address)
    log.info(
        "starting",
        namespaces=args.namespace or "all",
        health=f"http://{args.bind_address}:{args.health_port}/healthz",
        metrics=f"http://{args.bind_address}:{args.metrics_port}/metrics",
    )
    registry = build_registry(args.kubeconfig, args.topology)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            kopf.operator(
                registry=registry,
                memo=kopf.Memo(),
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=args.peering is None,
                peering_name=args.peering,
                priority=args.priority,
                liveness_endpoint=f"http://{args.bind_address}:{args.health_port}/healthz",
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
