"""One trace through the autoscaling engine alone: no cluster, no Prometheus.

The fluid simulation of `egpu.engines.autoscaling.simulate` drives `decide` with the
trace's offered load; the result has the traffic simulator's shape (`seconds`,
`timeline`, `slo_pct`, `gpu_hours`, ...), so the benchmark's windows and targets read
it unchanged, plus the warm pool's share of the GPU-hours (`warm_gpu_hours`). What
it leaves out is the pipeline: scrapes, the controller's pass, the binder and the
kubelet, so its figures are what the engine's rules can reach.
"""

from __future__ import annotations

import math
from typing import Any

from egpu.engines.autoscaling.model import ScalingPolicy
from egpu.engines.autoscaling.simulate import ServiceModel, SimConfig, run
from egpu.sim.traces import Trace


def engine_result(
    name: str,
    trace: Trace,
    policy: ScalingPolicy,
    model: ServiceModel,
    latency_target_s: float,
    config: SimConfig,
) -> dict[str, Any]:
    """Run the engine over the trace; per-second counts and a one-second timeline."""
    tick_s = config.tick_s
    count = math.ceil(trace.duration_s / tick_s)
    loads = [trace.mean_rate(i * tick_s, (i + 1) * tick_s) for i in range(count)]
    result = run(policy, loads, model, config, initial_serving=1)
    seconds: dict[int, list[float]] = {}
    timeline: list[dict[str, float]] = []
    capacity_at: dict[int, float] = {}
    offered = met = gpu_seconds = warm_seconds = under = 0.0
    peak = 0
    for tick in result.ticks:
        arrived = tick.offered_rps * tick_s
        second = seconds.setdefault(int(tick.time + 1e-9), [0.0, 0.0])
        second[0] += arrived
        offered += arrived
        if tick.latency_s <= latency_target_s:
            second[1] += arrived
            met += arrived
        capacity = tick.ready * model.replica_rps
        if tick.offered_rps > capacity + 1e-9:
            under += tick_s
        pods = tick.serving + tick.warm
        gpu_seconds += pods * tick_s
        warm_seconds += tick.warm * tick_s
        peak = max(peak, pods)
        for i, jump in enumerate(trace.jumps):
            if i not in capacity_at and tick.time >= jump.at_s and capacity >= jump.to_rps - 1e-9:
                capacity_at[i] = tick.time - jump.at_s
        end = tick.time + tick_s
        if not timeline or end - timeline[-1]["t"] >= 1.0 - 1e-9:
            timeline.append({"t": round(end, 3), "pods": pods, "ready": tick.ready})
    return {
        "name": name,
        "trace": trace.name,
        "slo_pct": 100.0 * (met / offered if offered else 1.0),
        "gpu_hours": gpu_seconds / 3600.0,
        "warm_gpu_hours": warm_seconds / 3600.0,  # of those, the warm pool's
        "capacity_lag_s": [capacity_at.get(i) for i in range(len(trace.jumps))],
        "under_capacity_s": under,
        "peak_pods": peak,
        "timeline": timeline,
        "seconds": [[s, round(o, 3), round(m, 3)] for s, (o, m) in sorted(seconds.items())],
        "decisions": [(t, d.reason.code.value, d.reason.message) for t, d in result.decisions],
    }
