"""Warm pool: standby replicas placed but not serving, promoted first on scale-up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolPlan:
    """Desired serving and warm counts, and how to get there from the current ones."""

    serving: int
    warm: int
    promotions: int
    demotions: int

    def new_serving_pods(self, current_serving: int) -> int:
        """Serving replicas that need a freshly placed pod (not a promotion)."""
        return max(0, self.serving - current_serving - self.promotions)

    def new_warm_pods(self, current_warm: int) -> int:
        """Warm replicas that need a freshly placed pod (refill beyond demotions)."""
        kept = current_warm - self.promotions + self.demotions
        return max(0, self.warm - kept)


def warm_target(pool_size: int, serving: int, max_replicas: int) -> int:
    """The pool refills to its size, but serving + warm never exceeds max_replicas."""
    return max(0, min(pool_size, max_replicas - serving))


def plan_pool(
    current_serving: int,
    current_warm: int,
    desired_serving: int,
    pool_size: int,
    max_replicas: int,
) -> PoolPlan:
    """Promote warm replicas on scale-up; park removed serving replicas in the pool
    on scale-down while it is short (cheaper than deleting one pod and placing another)."""
    warm = warm_target(pool_size, desired_serving, max_replicas)
    promotions = demotions = 0
    if desired_serving > current_serving:
        promotions = min(current_warm, desired_serving - current_serving)
    elif desired_serving < current_serving:
        demotions = min(current_serving - desired_serving, max(0, warm - current_warm))
    return PoolPlan(desired_serving, warm, promotions, demotions)
