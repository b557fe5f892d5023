"""Traces and the traffic simulator's per-tick model and exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from egpu.engines.autoscaling.simulate import ServiceModel
from egpu.sim.traces import (
    Jump,
    flash_crowd,
    noisy_plateau,
    ramp,
    recurring_crowds,
    sawtooth,
    spike_in_trough,
    steps,
    tidal_day,
    trace_from_spec,
)
from egpu.sim.traffic import PodView, ServiceTraffic, exposition, pod_view

pytestmark = pytest.mark.unit


def test_flash_crowd_is_twenty_times_within_one_second() -> None:
    trace = flash_crowd(base=5, factor=20, at_s=10, rise_s=1, hold_s=30, tail_s=10)
    assert trace.rate(9.99) == 5
    assert trace.rate(11) == 100
    assert trace.rate(10.5) == pytest.approx(52.5)
    assert trace.rate(41.5) == pytest.approx(52.5)  # and back down
    assert trace.rate(60) == 5
    assert trace.jumps == (Jump(10, 100),)


def test_tidal_day_has_a_night_trough_and_an_evening_peak() -> None:
    trace = tidal_day(night=2, peak=40, day_s=600)
    rates = [trace.rate(t) for t in range(600)]
    assert min(rates) == pytest.approx(2, abs=0.5)
    assert max(rates) == pytest.approx(40, rel=0.05)
    assert rates.index(max(rates)) == pytest.approx(0.82 * 600, abs=15)
    assert trace.rate(0) < trace.rate(270) < trace.rate(492)  # night < midday < evening


def test_recurring_crowds_are_jumps_a_gap_apart() -> None:
    trace = recurring_crowds(base=3, factor=20, at_s=30, hold_s=45, gap_s=90, crowds=3)
    assert trace.jumps == (Jump(30, 60), Jump(167, 60), Jump(304, 60))
    assert (trace.rate(29.9), trace.rate(31), trace.rate(76), trace.rate(78)) == (3, 60, 60, 3)
    assert trace.rate(168) == 60 and trace.rate(120) == 3
    assert trace.duration_s == pytest.approx(304 + 47 + 60)


def test_a_spike_in_the_trough_is_twice_the_days_peak() -> None:
    day = tidal_day(night=2, peak=48, day_s=600)
    trace = spike_in_trough(night=2, peak=48, day_s=600, spike_at=0.12, spike_s=30)
    assert trace.rate(73) == 96 and trace.rate(100) == 96
    assert trace.rate(60) == pytest.approx(day.rate(60))
    assert trace.rate(400) == pytest.approx(day.rate(400))
    assert trace.jumps == (Jump(72, 96),)


def test_noisy_plateau_and_sawtooth() -> None:
    plateau = noisy_plateau(base=3, level=40, at_s=30, hold_s=60, noise=0.2)
    held = [plateau.rate(t + 0.5) for t in range(32, 90)]
    assert min(held) >= 32 - 1e-9 and max(held) <= 48 + 1e-9 and len(set(held)) > 10
    assert noisy_plateau(base=3, level=40).points == noisy_plateau(base=3, level=40).points
    saw = sawtooth(low=6, high=48, period_s=60, teeth=2)
    assert (saw.rate(0), saw.rate(59), saw.rate(60), saw.rate(119)) == (6, 48, 6, 48)


def test_ramp_and_steps() -> None:
    r = ramp(base=2, peak=22, at_s=10, ramp_s=20, hold_s=5)
    assert (r.rate(10), r.rate(20), r.rate(30), r.duration_s) == (2, 12, 22, 35)
    assert r.jumps == (Jump(30, 22),)  # the moment the load reaches the peak
    s = steps([(0, 1), (5, 4), (9, 0)])
    assert (s.rate(4.9), s.rate(5), s.rate(9.5)) == (1, 4, 0)
    assert s.jumps == (Jump(5, 4),)
    assert trace_from_spec({"kind": "ramp", "base": 1, "peak": 2}).rate(1000) == 2
    with pytest.raises(ValueError, match="unknown trace"):
        trace_from_spec({"kind": "sine"})


def serving(n: int, ready: bool = True) -> list[PodView]:
    return [PodView(f"p{i}", True, ready, True, 1) for i in range(n)]


def service(trace_levels: list[tuple[float, float]], target: float = 2.0) -> ServiceTraffic:
    return ServiceTraffic(
        namespace="ns",
        name="chat",
        trace=steps(trace_levels),
        model=ServiceModel(service_time_s=1.0, slots_per_replica=4),
        latency_target_s=target,
    )


def test_enough_ready_replicas_meet_the_slo_and_count_gpu_time() -> None:
    s = service([(0, 8)])
    for i in range(40):
        s.advance(i * 0.25, 0.25, serving(3))
    result = s.result()
    assert result["slo_pct"] == 100.0
    assert result["gpu_hours"] == pytest.approx(3 * 10 / 3600)
    assert s.queue == 0


def test_requests_in_time_are_counted_per_second_too() -> None:
    s = service([(0, 8)])
    for i in range(8):
        s.advance(i * 0.25, 0.25, serving(3 if i < 4 else 0))
    seconds = s.result()["seconds"]
    assert [row[0] for row in seconds] == [0, 1]
    assert seconds[0][1:] == [pytest.approx(8.0), pytest.approx(8.0)]
    assert seconds[1][1] == pytest.approx(8.0) and seconds[1][2] == 0.0


def test_too_few_replicas_build_a_queue_and_miss_the_slo() -> None:
    s = service([(0, 8)])
    for i in range(40):
        s.advance(i * 0.25, 0.25, serving(1))  # 4 rps of capacity for 8 offered
    assert s.queue == pytest.approx(40, rel=0.01)
    assert s.result()["slo_pct"] < 30
    assert s.under_capacity_s == pytest.approx(10)


def test_warm_and_starting_pods_hold_gpus_but_serve_nothing() -> None:
    s = service([(0, 2)])
    pods = [*serving(1), PodView("w", False, True, True, 1), PodView("s", True, False, True, 1)]
    s.advance(0, 1.0, pods)
    assert s.gpu_seconds == 3
    assert set(s.per_pod) == {"p0"}


def test_time_to_capacity_is_measured_from_the_jump() -> None:
    s = service([(0, 2), (5, 12), (20, 12)])
    for i in range(40):
        t = i * 0.5
        s.advance(t, 0.5, serving(1 if t < 9 else 3))
    assert s.result()["capacity_lag_s"] == [4.0]


def test_the_router_holds_the_queue_while_nothing_is_ready() -> None:
    s = service([(0, 3)])
    s.advance(0, 1.0, [])
    assert s.router_queue == 3 and s.per_pod == {}
    s.advance(1, 1.0, serving(2))
    assert s.router_queue == 0


def test_exposition_is_valid_prometheus_text_with_pod_labels() -> None:
    s = service([(0, 6)])
    s.advance(0, 1.0, serving(2))
    families = {f.name: f for f in text_string_to_metric_families(exposition([s]))}
    inflight = families["egpu_inflight_requests"].samples
    assert {x.labels["pod"] for x in inflight} == {"p0", "p1"}
    assert sum(x.value for x in inflight) == pytest.approx(6)
    assert families["egpu_router_arrival_rate"].samples[0].value == 6
    assert families["egpu_router_arrival_rate"].samples[0].labels == {
        "namespace": "ns",
        "service": "chat",
    }


def test_pod_view_reads_role_readiness_binding_and_gpus() -> None:
    raw = {
        "metadata": {"name": "a", "labels": {"egpu.io/role": "warm"}},
        "spec": {
            "nodeName": "n1",
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert pod_view(raw) == PodView("a", False, True, True, 2)


def test_only_the_services_own_trace_is_scored() -> None:
    # A 10 s trace in a run that goes on: the last rate is still offered (the
    # autoscaler sees no cliff) but the scorecard covers the trace, as the oracle does.
    s = service([(0, 8), (10, 8)])
    for i in range(80):
        s.advance(i * 0.25, 0.25, serving(3))
    result = s.result()
    assert result["gpu_hours"] == pytest.approx(3 * 10 / 3600)
    assert s.offered == pytest.approx(80)
    assert len(s.timeline) == 10
    assert s.arrival_rps == 8, "the exporter still reports the last rate"
