"""Erlang C and latency-SLO sizing, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from egpu.engines.autoscaling.model import ServiceStats
from egpu.engines.autoscaling.queueing import (
    erlang_c,
    replicas_for_latency_slo,
    slots_and_rate,
    wait_exceedance,
    wait_percentile,
)

pytestmark = pytest.mark.unit


def test_erlang_c_two_servers_half_loaded_is_one_third() -> None:
    # M/M/2, a = 1: B(2,1) = (1/2)/(1 + 1 + 1/2) = 0.2; C = 0.2 / (1 - 0.5 * 0.8) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_erlang_c_against_the_closed_form_by_hand() -> None:
    # a = 4. sum_{k<5} 4^k/k! = 1 + 4 + 8 + 32/3 + 32/3 = 103/3;
    # tail(5) = 4^5/5! * 5/(5-4) = 128/3, so C(5,4) = (128/3)/(103/3 + 128/3) = 128/231.
    assert erlang_c(5, 4.0) == pytest.approx(128 / 231)
    # tail(6) = 4^6/6! * 6/(6-4) = 256/15; sum_{k<6} = 103/3 + 128/15 = 643/15;
    # C(6,4) = 256/(643 + 256) = 256/899.
    assert erlang_c(6, 4.0) == pytest.approx(256 / 899)


def test_erlang_c_edges() -> None:
    assert erlang_c(3, 0.0) == 0.0
    assert erlang_c(4, 4.0) == 1.0  # unstable: everyone waits
    assert erlang_c(4, 9.0) == 1.0


def test_wait_percentile_by_hand() -> None:
    # c = 6, lambda = 8, mu = 2: P(W > t) = (256/899) e^{-4t}; p95 -> t = ln((256/899)/0.05)/4.
    expected = math.log((256 / 899) / 0.05) / 4
    assert wait_percentile(6, 8.0, 2.0, 0.95) == pytest.approx(expected)
    assert wait_exceedance(6, 8.0, 2.0, expected) == pytest.approx(0.05)
    assert wait_percentile(4, 8.0, 2.0, 0.95) == math.inf
    assert wait_percentile(50, 8.0, 2.0, 0.95) == 0.0  # almost nobody waits at all


def test_slo_sizing_picks_the_erlang_c_count_not_the_ratio() -> None:
    # lambda = 8 req/s, service 0.5 s (mu = 2), p95 latency <= 1.0 s -> wait budget 0.5 s.
    # 5 servers: (128/231) e^{-(10-8)0.5} = 0.2038 > 0.05.  6 servers: (256/899) e^{-2} = 0.0385.
    # The plain ratio lambda/mu would say 4 replicas.
    sized = replicas_for_latency_slo(8.0, ServiceStats(service_time_s=0.5), 1.0, 0.95, 100)
    assert sized is not None
    assert (sized.replicas, sized.slots_per_replica, sized.reachable) == (6, 1, True)
    assert sized.wait_budget_s == pytest.approx(0.5)


def test_slo_sizing_with_batching_slots_per_replica() -> None:
    # throughput 4 req/s x 0.5 s service = 2 requests at once per replica (Little's law):
    # the same 6 servers are 3 replicas.
    stats = ServiceStats(service_time_s=0.5, replica_throughput_rps=4.0)
    assert slots_and_rate(stats) == (2, 2.0)
    sized = replicas_for_latency_slo(8.0, stats, 1.0, 0.95, 100)
    assert sized is not None and sized.replicas == 3


def test_tighter_percentile_needs_more_replicas() -> None:
    stats = ServiceStats(service_time_s=0.5)
    p95 = replicas_for_latency_slo(8.0, stats, 1.0, 0.95, 100)
    p999 = replicas_for_latency_slo(8.0, stats, 1.0, 0.999, 100)
    assert p95 is not None and p999 is not None
    assert p999.replicas > p95.replicas


def test_unreachable_slo_falls_back_to_no_waiting_for_the_percentile() -> None:
    # The service time (0.5 s) alone exceeds the 0.4 s target: no count meets it, so the
    # sizing keeps P(wait > 0) <= 5 %.
    sized = replicas_for_latency_slo(8.0, ServiceStats(service_time_s=0.5), 0.4, 0.95, 100)
    assert sized is not None and not sized.reachable
    assert erlang_c(sized.replicas, 4.0) <= 0.05 < erlang_c(sized.replicas - 1, 4.0)


def test_slo_sizing_stops_at_the_limit_and_needs_measurements() -> None:
    sized = replicas_for_latency_slo(1000.0, ServiceStats(service_time_s=1.0), 2.0, 0.95, 10)
    assert sized is not None and sized.replicas == 10
    assert replicas_for_latency_slo(8.0, ServiceStats(), 1.0, 0.95, 10) is None
    zero = replicas_for_latency_slo(0.0, ServiceStats(service_time_s=1.0), 2.0, 0.95, 10)
    assert zero is not None and zero.replicas == 0
