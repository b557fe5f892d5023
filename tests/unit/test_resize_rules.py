"""Each resize rule on its own."""

from __future__ import annotations

import pytest

from egpu.engines.resize import GIB, NodeRoom, rules

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        (1.0, 500, 500),
        (500.0, 500, 500),
        (501.0, 500, 1000),
        (1400.0, 500, 1500),
        (700 / 0.7, 500, 1000),  # float noise above 1000 must not cost a step
        (0.0, 500, 500),  # never below one step
        (1.5 * GIB, GIB, 2 * GIB),
        (4 * GIB, GIB, 4 * GIB),
        (4 * GIB + 1, GIB, 5 * GIB),
    ],
)
def test_round_up_to_step(value: float, step: int, expected: int) -> None:
    assert rules.round_up_to_step(value, step) == expected


def test_clamp_to_bounds() -> None:
    assert rules.clamp(100, 500, 4000) == 500
    assert rules.clamp(9000, 500, 4000) == 4000
    assert rules.clamp(2500, 500, 4000) == 2500


def test_wanted_request_sizes_peak_at_target_utilisation() -> None:
    assert rules.wanted_request(1400.0, 0.7) == pytest.approx(2000.0)


def test_hysteresis_band_is_exclusive_both_ways() -> None:
    assert not rules.grows_beyond_band(2000, 2200.0, 0.1)
    assert rules.grows_beyond_band(2000, 2201.0, 0.1)
    assert not rules.shrinks_beyond_band(2000, 1800.0, 0.1)
    assert rules.shrinks_beyond_band(2000, 1799.0, 0.1)


def test_memory_pressure_needs_a_limit_and_a_near_full_working_set() -> None:
    assert rules.memory_under_pressure(0.9 * 4 * GIB, 4 * GIB, 0.9)
    assert not rules.memory_under_pressure(0.89 * 4 * GIB, 4 * GIB, 0.9)
    assert not rules.memory_under_pressure(100 * GIB, None, 0.9)


def test_cpu_pressure_prefers_throttling_data_over_usage() -> None:
    kwargs = {"throttling_threshold": 0.1, "usage_ratio": 0.9}
    assert rules.cpu_under_pressure(0.25, 100.0, 2000, **kwargs)
    # Near the limit but barely throttled: the throttling data wins.
    assert not rules.cpu_under_pressure(0.01, 1990.0, 2000, **kwargs)
    # No throttling data: usage near the limit counts.
    assert rules.cpu_under_pressure(None, 1800.0, 2000, **kwargs)
    assert not rules.cpu_under_pressure(None, 1700.0, 2000, **kwargs)
    # Without a limit nothing throttles.
    assert not rules.cpu_under_pressure(0.9, 5000.0, None, **kwargs)


def test_pressure_growth_is_at_least_one_step_and_more_when_usage_says() -> None:
    assert rules.pressure_growth(2000, 1500.0, 500) == 2500
    assert rules.pressure_growth(2000, 3600.0, 500) == 4000
    # From an off-grid value: one full step, then up to the grid.
    assert rules.pressure_growth(1300, 0.0, 500) == 2000


def test_stabilised_shrink_goes_one_step_at_a_time_and_never_up() -> None:
    assert rules.stabilised_shrink(4000, 1000.0, 500, max_steps=1) == 3500
    assert rules.stabilised_shrink(4000, 1000.0, 500, max_steps=3) == 2500
    assert rules.stabilised_shrink(1500, 1000.0, 500, max_steps=5) == 1000
    assert rules.stabilised_shrink(1500, 1600.0, 500, max_steps=1) == 1500


def test_scale_limit_keeps_the_ratio() -> None:
    assert rules.scale_limit(3000, 2000, 4000, 500) == 6000
    assert rules.scale_limit(3000, 2000, None, 500) is None
    assert rules.scale_limit(3000, 2000, 2000, 500) == 3000
    # 1000 * 1.5 = 1500 exactly; 1500 * 1.5 = 2250 rounds up to 2500.
    assert rules.scale_limit(1000, 2000, 3000, 500) == 1500
    assert rules.scale_limit(1500, 2000, 3000, 500) == 2500
    # An unchanged request keeps the limit exactly, on the grid or not.
    assert rules.scale_limit(2000, 2000, 3300, 500) == 3300


def test_memory_limit_never_lowered_below_usage_plus_margin() -> None:
    floor = rules.memory_limit_floor(5 * GIB, 0.25, GIB)
    assert floor == 7 * GIB  # 6.25 GiB rounded up
    assert rules.protect_memory_limit(6 * GIB, 8 * GIB, floor) == 7 * GIB
    assert rules.protect_memory_limit(7 * GIB, 8 * GIB, 9 * GIB) == 8 * GIB  # not above current
    assert rules.protect_memory_limit(10 * GIB, 8 * GIB, floor) == 10 * GIB  # growth untouched


def test_fits_node_checks_both_resources_and_shrink_always_fits() -> None:
    node = NodeRoom(free_cpu_millicores=1000, free_memory_bytes=2 * GIB)
    assert rules.fits_node(1000, 2 * GIB, node)
    assert not rules.fits_node(1500, 0, node)
    assert not rules.fits_node(0, 3 * GIB, node)
    assert rules.fits_node(-500, -GIB, NodeRoom(0, 0))
