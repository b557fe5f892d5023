"""The clairvoyant-reactive bound and the oracle the benchmark reads its figures against."""

from __future__ import annotations

import pytest

from egpu.engines.autoscaling.simulate import ServiceModel
from egpu.sim.bounds import (
    clairvoyant_reactive,
    clairvoyant_sized_replica_seconds,
    oracle_replica_seconds,
    replicas_for,
)
from egpu.sim.traces import flash_crowd, recurring_crowds, steps

pytestmark = pytest.mark.unit

MODEL = ServiceModel(service_time_s=1.0, slots_per_replica=4, cold_start_s=10.0, warm_start_s=0.0)


def test_the_oracle_holds_exactly_enough_replicas_each_second() -> None:
    trace = steps([(0, 4), (10, 40), (20, 4), (30, 4)])
    assert oracle_replica_seconds(trace, MODEL, 0, 30) == 10 * 1 + 10 * 10 + 10 * 1


def test_a_perfect_forecast_still_holds_each_pod_a_cold_start_early() -> None:
    trace = steps([(0, 4), (10, 40), (20, 4), (30, 4)])

    def size(rate: float) -> int:
        return replicas_for(rate, MODEL)

    # Ten pods from 5 s before the rise (started in time) until it ends; one warm pod.
    held = clairvoyant_sized_replica_seconds(trace, size, 5.0, 1, 0, 30)
    assert held == 5 * 1 + 15 * 10 + 10 * 1 + 30 * 1
    # With no lead and no pool it is the oracle.
    assert clairvoyant_sized_replica_seconds(trace, size, 0.0, 0, 0, 30) == (
        oracle_replica_seconds(trace, MODEL, 0, 30)
    )


def test_steady_load_within_capacity_is_all_in_time() -> None:
    trace = steps([(0, 3), (120, 3)])
    bound = clairvoyant_reactive(trace, MODEL, 2.0, 40)
    assert bound.slo_pct == 100.0
    assert bound.replica_seconds == pytest.approx(120 * 2)  # one serving, one warm


def test_a_flash_crowd_still_waits_the_cold_start() -> None:
    trace = flash_crowd(base=3, factor=20, at_s=30, hold_s=45, tail_s=30)
    bound = clairvoyant_reactive(trace, MODEL, 2.0, 40)
    crowd = bound.slo_pct_between(30, 77)
    # Nothing arriving in the first ~cold start can be served in time...
    assert crowd < 100 * (1 - 9 / 47)
    # ...but all the max replicas drain the backlog within seconds of being ready.
    assert crowd > 100 * (1 - 16 / 47)
    assert bound.slo_pct_between(0, 30) == 100.0


def test_a_second_crowd_after_a_long_gap_is_as_much_a_surprise() -> None:
    trace = recurring_crowds(base=3, factor=20, at_s=30, hold_s=45, gap_s=90, crowds=2)
    bound = clairvoyant_reactive(trace, MODEL, 2.0, 40)
    first, second = (bound.slo_pct_between(s, s + 47) for s in (30, 167))
    assert first == pytest.approx(second, abs=1.0)
