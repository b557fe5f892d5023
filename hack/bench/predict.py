#!/usr/bin/env python3
"""The risk score against a fault trace with published-model precursors: precision,
recall, lead time, false alarms per 1,000 GPU-days. Engine only, no cluster.

    .venv/bin/python hack/bench/predict.py [--gpus 2000] [--days 30] [--seed 1]
        [--horizon-h 168] [--thresholds 0.4,0.6]

The trace (egpu.sim.precursors: Llama 3's GPU fault rate, Schroeder et al.'s
correctable-before-uncorrectable model, stated noise) is sampled each minute per GPU
and scored by egpu.engines.health.risk, the code the node agent runs, at its defaults
(the operator's threshold 0.5 first, then the sweep). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from egpu.engines.health.risk import RiskPolicy
from egpu.sim.precursors import generate
from egpu.sim.risk_eval import evaluate, quiet_scores_zero


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=2000)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--horizon-h", type=float, default=168.0)
    p.add_argument("--thresholds", default="0.4,0.6")
    args = p.parse_args()
    start = time.monotonic()
    default = RiskPolicy()
    if not quiet_scores_zero(default):
        raise SystemExit("a quiet window scores above 0: polls outside episodes cannot be skipped")
    trace = generate(args.gpus, args.days, args.seed)
    results = []
    thresholds = [default.threshold] + [
        t for t in (float(x) for x in args.thresholds.split(",")) if t != default.threshold
    ]
    for threshold in thresholds:
        out = evaluate(trace, replace(default, threshold=threshold), args.horizon_h * 3600)
        row = {
            "threshold": threshold,
            "alarms": out.alarms,
            "true_alarms": out.true_alarms,
            "faults": out.faults,
            "foreseen": out.foreseen,
            "precision": out.precision,
            "recall": out.recall,
            "lead_p50_h": None if out.lead_quantile(0.5) is None else out.lead_quantile(0.5) / 3600,
            "lead_p10_h": None if out.lead_quantile(0.1) is None else out.lead_quantile(0.1) / 3600,
            "false_per_1000_gpu_days": round(out.false_per_1000_gpu_days, 3),
            "scored_polls": out.scored_polls,
        }
        results.append(row)
        print(
            f"threshold {threshold}: {out.alarms} alarms ({out.true_alarms} true), "
            f"{out.foreseen}/{out.faults} faults foreseen, lead p50 {row['lead_p50_h']} h "
            f"p10 {row['lead_p10_h']} h, {row['false_per_1000_gpu_days']} false / 1,000 GPU-days"
        )
    with_pre = sum(f.has_precursor for f in trace.faults)
    print(
        json.dumps(
            {
                "gpus": args.gpus,
                "days": args.days,
                "seed": args.seed,
                "gpu_days": trace.gpu_days,
                "faults": len(trace.faults),
                "faults_with_precursor": with_pre,
                "horizon_h": args.horizon_h,
                "results": results,
                "wall_s": round(time.monotonic() - start, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
