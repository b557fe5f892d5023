"""The serving pod plan: scale, warm pool (promote, demote, refill), rolling update."""

from __future__ import annotations

import pytest

from egpu.engines.inference.rollout import (
    SERVING,
    WARM,
    NewPod,
    PodPlan,
    Relabel,
    ServingPod,
    count_pods,
    plan_pods,
)

pytestmark = pytest.mark.unit

REV, OLD = "new", "old"


def pod(
    index: int,
    role: str = SERVING,
    revision: str = REV,
    ready: bool = True,
    bound: bool = True,
    **extra: object,
) -> ServingPod:
    return ServingPod(
        name=f"svc-{revision}-{index}",
        index=index,
        revision=revision,
        role=role,  # type: ignore[arg-type]
        ready=ready,
        bound=bound,
        created=float(index),
        **extra,  # type: ignore[arg-type]
    )


def apply(pods: list[ServingPod], plan: PodPlan, ready_new: bool = True) -> list[ServingPod]:
    """The world after the plan: new pods start (ready or not), relabels take effect."""
    by_name = {p.name: p for p in pods if p.name not in plan.delete}
    for change in plan.relabel:
        p = by_name[change.name]
        by_name[change.name] = ServingPod(
            p.name, p.index, p.revision, change.role, p.ready, p.bound, created=p.created
        )
    for new in plan.create:
        created = pod(new.index, new.role, REV, ready=ready_new)
        by_name[created.name] = created
    return list(by_name.values())


def test_scale_up_creates_the_missing_pods_with_fresh_indices() -> None:
    plan = plan_pods([pod(0), pod(2)], REV, serving_wanted=4, warm_wanted=0)
    assert plan.create == [NewPod(1, SERVING), NewPod(3, SERVING)]
    assert plan.delete == [] and plan.relabel == []


def test_scale_down_removes_unplaced_then_starting_then_newest_ready() -> None:
    pods = [pod(0), pod(1), pod(2), pod(3, ready=False), pod(4, ready=False, bound=False)]
    plan = plan_pods(pods, REV, serving_wanted=2, warm_wanted=0)
    assert plan.delete == ["svc-new-4", "svc-new-3", "svc-new-2"]


def test_scale_up_promotes_ready_warm_pods_before_creating_any() -> None:
    pods = [pod(0), pod(1, WARM, ready=False), pod(2, WARM)]
    plan = plan_pods(pods, REV, serving_wanted=2, warm_wanted=2)
    assert plan.relabel == [Relabel("svc-new-2", SERVING)]
    # The pool refills behind the promotion: one warm left, one new warm pod.
    assert plan.create == [NewPod(3, WARM)]


def test_scale_down_parks_ready_pods_in_a_short_pool_instead_of_deleting() -> None:
    pods = [pod(0), pod(1), pod(2), pod(3)]
    plan = plan_pods(pods, REV, serving_wanted=1, warm_wanted=2)
    assert sorted(c.role for c in plan.relabel) == [WARM, WARM]
    assert len(plan.delete) == 1 and plan.create == []
    after = apply(pods, plan)
    counts = count_pods(after, REV)
    assert (counts.serving, counts.warm) == (1, 2)


def test_warm_pool_refills_and_trims() -> None:
    assert plan_pods([pod(0)], REV, 1, 2).create == [NewPod(1, WARM), NewPod(2, WARM)]
    pods = [pod(0), pod(1, WARM), pod(2, WARM, ready=False)]
    assert plan_pods(pods, REV, 1, 1).delete == ["svc-new-2"]


def test_failed_pods_are_replaced() -> None:
    pods = [pod(0), pod(1, failed=True)]
    plan = plan_pods(pods, REV, 2, 0)
    assert plan.delete == ["svc-new-1"]
    assert plan.create == [NewPod(2, SERVING)]  # index 1 is still held by the failed pod


def test_scale_to_zero_removes_every_serving_pod_but_keeps_the_pool() -> None:
    pods = [pod(0), pod(1), pod(2, WARM)]
    plan = plan_pods(pods, REV, 0, 1)
    assert sorted(plan.delete) == ["svc-new-0", "svc-new-1"]


def test_old_warm_pods_are_replaced_on_a_template_change() -> None:
    plan = plan_pods([pod(0), pod(1, WARM, OLD)], REV, 1, 1)
    assert plan.delete == ["svc-old-1"]
    assert plan.create == [NewPod(2, WARM)]


def test_rolling_update_never_drops_below_the_ready_count_in_use() -> None:
    pods = [pod(i, revision=OLD) for i in range(4)]
    in_use = 4
    for _ in range(20):
        plan = plan_pods(pods, REV, serving_wanted=4, warm_wanted=0, max_surge=1)
        # New pods start unready; they turn ready on the next round.
        pods = apply(pods, plan, ready_new=False)
        ready = sum(p.ready for p in pods if p.role == SERVING)
        assert ready >= in_use
        serving = [p for p in pods if p.role == SERVING]
        assert len(serving) <= 4 + 1  # the surge
        pods = [
            ServingPod(p.name, p.index, p.revision, p.role, True, True, created=p.created)
            for p in pods
        ]
        if all(p.revision == REV for p in pods) and len(pods) == 4:
            break
    assert sorted(p.revision for p in pods) == [REV] * 4


def test_rolling_update_while_scaling_down_keeps_only_what_is_wanted() -> None:
    pods = [pod(0), *(pod(i, revision=OLD) for i in range(1, 5))]
    plan = plan_pods(pods, REV, serving_wanted=2, warm_wanted=0, max_surge=1)
    after = apply(pods, plan, ready_new=False)
    ready = [p for p in after if p.ready and p.role == SERVING]
    assert len(ready) == 2
    assert sum(p.revision == OLD for p in after) == 1  # goes once the new one is ready


def test_unready_old_pods_go_at_once() -> None:
    pods = [pod(0, revision=OLD), pod(1, revision=OLD, ready=False)]
    plan = plan_pods(pods, REV, 2, 0, max_surge=1)
    assert "svc-old-1" in plan.delete and "svc-old-0" not in plan.delete


def test_counts_for_the_status() -> None:
    pods = [
        pod(0),
        pod(1, ready=False, bound=False),
        pod(2, revision=OLD),
        pod(3, WARM),
        pod(4, WARM, ready=False),
        pod(5, deleting=True),
    ]
    counts = count_pods(pods, REV)
    assert (counts.serving, counts.ready, counts.updated) == (3, 2, 2)
    assert (counts.warm, counts.warm_ready, counts.pending) == (2, 1, 1)
