"""The pure parts of the end-to-end benchmarks: the kube-scheduler profiles they start,
how placement quality is counted, and how bench-scale shapes its cluster."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def load(name: str, path: Path) -> ModuleType:
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


localcluster = load("localcluster", ROOT / "hack" / "localcluster.py")
kubebench = load("kubebench", ROOT / "hack" / "bench" / "kubebench.py")
scale = load("bench_scale", ROOT / "hack" / "bench" / "scale.py")


def test_the_default_scheduler_profile_is_the_stock_one() -> None:
    config = yaml.safe_load(localcluster.scheduler_config(Path("/k"), "default"))
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert config["clientConnection"]["kubeconfig"] == "/k"
    assert "profiles" not in config


def test_the_bin_packing_profile_scores_most_allocated_with_gpus_weighted() -> None:
    config = yaml.safe_load(localcluster.scheduler_config(Path("/k"), "most-allocated"))
    (profile,) = config["profiles"]
    assert profile["schedulerName"] == "default-scheduler"
    (plugin,) = profile["pluginConfig"]
    assert plugin["name"] == "NodeResourcesFit"
    strategy = plugin["args"]["scoringStrategy"]
    assert strategy["type"] == "MostAllocated"
    weights = {r["name"]: r["weight"] for r in strategy["resources"]}
    assert weights["nvidia.com/gpu"] > weights["cpu"] == weights["memory"]


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scheduler profile"):
        localcluster.scheduler_config(Path("/k"), "binpack")


def gpu_pod(node: str | None, gpus: int) -> dict[str, object]:
    pod = kubebench.gpu_pod("p", "x", gpus)
    pod["spec"]["nodeName"] = node  # type: ignore[index]
    return pod


def test_stranded_gpus_are_the_free_ones_on_used_nodes_with_less_than_eight_free() -> None:
    pods = [gpu_pod("a", 1)] * 12 + [gpu_pod("b", 8)] + [gpu_pod("c", 1)] + [gpu_pod(None, 1)]
    used = kubebench.used_gpus(pods)
    assert used == {"a": 12, "b": 8, "c": 1}
    quality = kubebench.placement_quality(used, nodes=5, gpus_per_node=16)
    # a: 4 free (stranded); b: 8 free (usable); c: 15 free (usable); two nodes untouched
    assert quality == {"nodes_used": 3, "nodes_whole": 2, "stranded_gpus": 4}


def test_scale_shapes_leaves_of_twenty_nodes() -> None:
    shape = scale.shape_for(5000)
    assert (shape.blocks, shape.leaves_per_block, shape.nodes_per_leaf) == (10, 25, 20)
    assert shape.gpu_count == 40000
    assert scale.shape_for(100).node_count == 100
    with pytest.raises(ValueError):
        scale.shape_for(1010)


def test_scale_leaves_a_tenth_of_the_gpus_free_and_gives_the_rest_of_the_pods_no_gpu() -> None:
    assert scale.split(50000, 40000, 1000) == (14000, 35000, 1000)
    assert scale.split(1000, 40000, 10) == (0, 990, 10)
    assert scale.split(1000, 800, 100) == (300, 600, 100)  # room for the 100-pod probe
    with pytest.raises(ValueError):
        scale.split(100, 80, 100)


def test_autoscale_sim_declares_the_day_as_the_tide_of_the_day_traces_only() -> None:
    autoscale = load("bench_autoscale", ROOT / "hack" / "bench" / "autoscale.py")
    args = argparse.Namespace(
        scrape_interval="500ms",
        learn_ceiling=40,
        burst_memory="2m",
        scale_up_max_rate=40.0,
        no_tide=False,
        quick=True,
        cold_start=10.0,
        budget_percentile=90.0,
        cached_start=None,
        cached_pods=0,
        one_path=False,
        warm_budget_gpu_hours=None,
    )
    assert autoscale.egpu_options(args, "tide2")["tide_period"] == "180s"
    # The error budget is counted over one compressed day, on every trace.
    budget = {"window": "180s", "loosestPercentile": 90.0}
    assert autoscale.egpu_options(args, "crowds")["error_budget"] == budget
    assert autoscale.egpu_options(args, "crowds")["tide_period"] is None
    args.no_tide = True
    assert autoscale.egpu_options(args, "tide2")["tide_period"] is None
    # The engine alone on a trace, scored with the bench's windows and targets.
    trace_set = {"tide2": autoscale.traces(True)["tide2"]}
    args.no_tide = False
    summary = autoscale.summarize(autoscale.simulated(trace_set, args), trace_set, 10.0)
    row = summary["tide2"]
    assert row["egpu_day2_slo_pct"] >= 99.0
    assert row["oracle_day2_gpu_hours"] < row["sized_day2_gpu_hours"] <= row["egpu_day2_gpu_hours"]
    assert row["sized_loosest_day2_gpu_hours"] < row["sized_day2_gpu_hours"]


def test_autoscale_start_paths_give_each_service_its_model_and_cached_ready_delay() -> None:
    autoscale = load("bench_autoscale", ROOT / "hack" / "bench" / "autoscale.py")
    body = autoscale.egpu_service("ns", "egpu-crowds", "http://p", 40.0, cached_start_s=10.0)
    assert body["spec"]["startup"] == {"artefacts": ["models/egpu-crowds@1"]}
    assert body["spec"]["template"]["metadata"]["annotations"] == {
        "egpu.io/sim-ready-after": "40s",
        "egpu.io/sim-ready-after-cached": "10s",
    }
    plain = autoscale.hpa_service("ns", "hpa-crowds", 40.0)
    assert "startup" not in plain["spec"]
    calls: list[tuple[str, ...]] = []
    autoscale.kubectl = lambda *a, **_: calls.append(a)
    services = [f"{who}-{t}" for t in ("crowds", "plateau") for who in ("egpu", "hpa", "tuned")]
    autoscale.cache_models(services, 24)
    marked = {c[2]: c[4] for c in calls}
    assert len(marked) == 18  # three nodes of eight GPUs per service, none shared
    assert sorted(marked.values()).count("egpu.io/cached-artefacts=models/egpu-crowds@1") == 3


def test_autoscale_egpu_services_carry_the_burst_memory_they_are_given() -> None:
    autoscale = load("bench_autoscale", ROOT / "hack" / "bench" / "autoscale.py")
    body = autoscale.egpu_service(
        "ns", "egpu-crowds", "http://p", 10.0, learn_ceiling=40, burst_memory="2m"
    )
    assert body["spec"]["warmPool"] == {"size": 1, "maxSize": 40, "burstMemory": "2m"}
