"""The resize rules, one small pure function each. Values are millicores or bytes."""

from __future__ import annotations

import math

from egpu.engines.resize.model import NodeRoom

# Usage / utilisation is float arithmetic: 700 / 0.7 is 1000.0000000000001, which
# must not cost a whole step. Integers round exactly.
_RELATIVE_SLACK = 1e-12


def round_up_to_step(value: float, step: int) -> int:
    """The smallest multiple of `step` that is >= value (never below one step)."""
    if isinstance(value, int):
        steps = -(-value // step)
    else:
        steps = math.ceil(value / step)
        if steps > 1 and value - (steps - 1) * step <= abs(value) * _RELATIVE_SLACK:
            steps -= 1
    return max(1, steps) * step


def clamp(value: int, lower: int, upper: int) -> int:
    return max(lower, min(upper, value))


def wanted_request(peak_usage: float, target_utilization: float) -> float:
    """The request at which the peak would run at the target utilisation."""
    return peak_usage / target_utilization


def grows_beyond_band(current: int, wanted: float, band: float) -> bool:
    return wanted > current * (1 + band)


def shrinks_beyond_band(current: int, wanted: float, band: float) -> bool:
    return wanted < current * (1 - band)


def memory_under_pressure(peak_usage: float, limit: int | None, ratio: float) -> bool:
    """Working set close to the memory limit: the OOM killer is near."""
    return limit is not None and peak_usage >= ratio * limit


def cpu_under_pressure(
    throttled_fraction: float | None,
    peak_usage: float,
    limit: int | None,
    *,
    throttling_threshold: float,
    usage_ratio: float,
) -> bool:
    """Throttled above the threshold; without throttling data, usage near the limit."""
    if limit is None:
        return False  # nothing throttles a container without a cpu limit
    if throttled_fraction is not None:
        return throttled_fraction >= throttling_threshold
    return peak_usage >= usage_ratio * limit


def pressure_growth(current: int, wanted: float, step: int) -> int:
    """Grow now: at least one whole step above the current value, more if usage says."""
    return round_up_to_step(max(wanted, current + step), step)


def stabilised_shrink(current: int, window_wanted: float, step: int, max_steps: int) -> int:
    """Shrink toward the window's peak wish, at most `max_steps` steps at once, never up."""
    floor_by_rate = round_up_to_step(current - max_steps * step, step)
    return min(current, max(round_up_to_step(window_wanted, step), floor_by_rate))


def scale_limit(
    new_request: int, current_request: int, current_limit: int | None, step: int
) -> int | None:
    """Keep the limit/request ratio: an absent limit stays absent, equal stays equal."""
    if current_limit is None:
        return None
    if new_request == current_request:
        return current_limit
    if current_limit == current_request:
        return new_request
    scaled = -(-new_request * current_limit // current_request)  # exact ceiling
    return round_up_to_step(scaled, step)


def memory_limit_floor(peak_usage: float, margin: float, step: int) -> int:
    """The lowest memory limit that leaves `margin` above the peak working set."""
    return round_up_to_step(peak_usage * (1 + margin), step)


def protect_memory_limit(new_limit: int, current_limit: int, floor: int) -> int:
    """A lowered memory limit stops at the floor (and never rises above the current)."""
    if new_limit >= current_limit:
        return new_limit
    return min(current_limit, max(new_limit, floor))


def fits_node(cpu_delta: int, memory_delta: int, node: NodeRoom) -> bool:
    """Growth must fit in the node's free allocatable; shrinking always fits."""
    return cpu_delta <= node.free_cpu_millicores and memory_delta <= node.free_memory_bytes
