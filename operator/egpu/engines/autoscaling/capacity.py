"""Cap a plan at what the cluster can place now."""

from __future__ import annotations

from dataclasses import dataclass

from egpu.engines.autoscaling.warm_pool import PoolPlan


@dataclass(frozen=True)
class CapacityOutcome:
    plan: PoolPlan
    serving_short: int
    warm_short: int

    @property
    def limited(self) -> bool:
        return self.serving_short > 0 or self.warm_short > 0


def cap_to_capacity(
    plan: PoolPlan, current_serving: int, current_warm: int, free_pod_slots: int | None
) -> CapacityOutcome:
    """Serving replicas get the free slots first, the warm pool what is left.

    Promotions and demotions need no new placement, so they are never capped.
    None means the capacity is unknown: nothing is capped.
    """
    if free_pod_slots is None:
        return CapacityOutcome(plan, 0, 0)
    free = max(0, free_pod_slots)
    serving_new = plan.new_serving_pods(current_serving)
    serving_short = max(0, serving_new - free)
    free -= serving_new - serving_short
    warm_new = plan.new_warm_pods(current_warm)
    warm_short = max(0, warm_new - free)
    capped = PoolPlan(
        serving=plan.serving - serving_short,
        warm=plan.warm - warm_short,
        promotions=plan.promotions,
        demotions=plan.demotions,
    )
    return CapacityOutcome(capped, serving_short, warm_short)
