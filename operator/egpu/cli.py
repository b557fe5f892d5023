"""The `egpu` command line: simulation helpers and, later, planning tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _sim_nodes(args: argparse.Namespace) -> int:
    from egpu.sim.nodes import ClusterShape, cached_node_indices, create_nodes

    shape = ClusterShape(
        blocks=args.blocks,
        leaves_per_block=args.leaves,
        nodes_per_leaf=args.nodes,
        gpus_per_node=args.gpus,
        nvlink_group_size=args.nvlink_group_size,
        gpu_models=tuple(args.models.split(",")),
        name_prefix=args.prefix,
        dra=args.dra,
        cached_artefacts=tuple(k.strip() for k in args.cached_artefacts.split(",") if k.strip()),
        cached_nodes=args.cached_nodes,
    )
    seconds = create_nodes(shape, kubeconfig=args.kubeconfig, workers=args.workers)
    if shape.dra:
        from egpu.domain.dra import GPU_DRIVER
        from egpu.sim.dra import create_resource_slices

        slices = create_resource_slices(shape, kubeconfig=args.kubeconfig)
        print(f"published {slices} ResourceSlices (driver {GPU_DRIVER})")
    if shape.cached_artefacts:
        held = len(cached_node_indices(shape))
        print(f"{held} of them hold {','.join(shape.cached_artefacts)} (egpu.io/cached-artefacts)")
    print(
        f"created {shape.node_count} simulated GPU nodes ({shape.gpu_count} GPUs: "
        f"{shape.blocks} blocks x {shape.leaves_per_block} leaves x {shape.nodes_per_leaf} "
        f"nodes x {shape.gpus_per_node} GPUs) in {seconds:.1f}s"
    )
    return 0


def _sim_delete(args: argparse.Namespace) -> int:
    from egpu.sim.dra import delete_resource_slices
    from egpu.sim.nodes import delete_nodes

    delete_resource_slices(kubeconfig=args.kubeconfig)
    print(f"deleted {delete_nodes(kubeconfig=args.kubeconfig)} simulated nodes")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from egpu.planning import MissingTopologyError, load_workload, plan

    try:
        ok, text = plan(load_workload(args.file), args.kubeconfig)
    except MissingTopologyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0 if ok else 1


def _topology(args: argparse.Namespace) -> int:
    from egpu.planning import topology_report

    print(topology_report(args.kubeconfig, args.topology, args.svg))
    if args.svg:
        print(f"wrote {args.svg}")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from egpu.agent.main import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="egpu", description=__doc__)
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="simulated GPU cluster (KWOK)")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    nodes = sim_sub.add_parser("nodes", help="create simulated GPU nodes")
    nodes.add_argument("--blocks", type=int, default=2)
    nodes.add_argument("--leaves", type=int, default=4, help="leaves per block")
    nodes.add_argument("--nodes", type=int, default=16, help="nodes per leaf")
    nodes.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    nodes.add_argument("--nvlink-group-size", type=int, default=4)
    nodes.add_argument(
        "--models",
        default="NVIDIA-H100-80GB-HBM3",
        help="comma-separated GPU products, one per block round robin",
    )
    nodes.add_argument("--prefix", default="gpu", help="node name prefix")
    nodes.add_argument("--workers", type=int, default=16, help="parallel API requests")
    nodes.add_argument(
        "--dra",
        action="store_true",
        help="publish the GPUs as DRA ResourceSlices (driver gpu.egpu.io), no device plugin",
    )
    nodes.add_argument(
        "--cached-artefacts",
        default="",
        metavar="KEYS",
        help="comma-separated artefact keys (images, models) some nodes hold "
        "(egpu.io/cached-artefacts)",
    )
    nodes.add_argument(
        "--cached-nodes",
        type=int,
        default=None,
        metavar="N",
        help="how many nodes hold them, spread evenly across leaves and blocks (default: all)",
    )
    nodes.set_defaults(func=_sim_nodes)
    delete = sim_sub.add_parser("delete-nodes", help="delete every simulated node")
    delete.set_defaults(func=_sim_delete)

    agent = sub.add_parser("agent", help="the node agent: GPU health through NVML (or simulated)")
    from egpu.agent.main import add_arguments

    add_arguments(agent)
    agent.set_defaults(func=_agent)

    plan = sub.add_parser("plan", help="where a GPUWorkload would go now (creates nothing)")
    plan.add_argument("-f", "--file", required=True, help="GPUWorkload YAML ('-': stdin)")
    plan.set_defaults(func=_plan)
    topo = sub.add_parser("topology", help="the topology with free/used GPUs per domain")
    topo.add_argument("--topology", default="default", help="GPUTopology name")
    topo.add_argument("--svg", default=None, help="also write an SVG picture here")
    topo.set_defaults(func=_topology)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ValueError as exc:
        print(f"egpu: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
