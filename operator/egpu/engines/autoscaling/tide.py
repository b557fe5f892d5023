"""Tidal memory: a time-of-cycle profile of observed demand, learned cycle by cycle.

A cycle is `period_s` long (a day; minutes in a compressed benchmark day), cut into
buckets. Each bucket keeps the peak demand seen in it during the current cycle and
what the earlier cycles taught: an exponentially weighted mean of their peaks (the
newest cycle weighs `learning_rate`), so the profile follows a tide that shifts and
forgets an old one. A bucket not seen for `forget_after_cycles` cycles is forgotten.

The profile is trusted only while what is observed agrees with it: within
`tolerance` (relative) plus a slack of one replica's worth of demand of what the
profile holds for the last moments. A surprise (a spike above it, or a calm far
below it) hands the service back to the reactive rules until it agrees again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class TidePolicy:
    period_s: float
    buckets: int = 288  # 5 minutes of a day
    learning_rate: float = 0.5
    tolerance: float = 0.25
    forget_after_cycles: int = 7

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            problems.append("tide period_s must be > 0")
        if self.buckets < 1:
            problems.append("tide buckets must be >= 1")
        if not 0.0 < self.learning_rate <= 1.0:
            problems.append("tide learning_rate must be in (0, 1]")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0.0):
            problems.append("tide tolerance must be >= 0")
        if self.forget_after_cycles < 1:
            problems.append("tide forget_after_cycles must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def bucket_s(self) -> float:
        return self.period_s / self.buckets

    def cycle_of(self, t: float) -> int:
        return math.floor(t / self.period_s)

    def bucket_of(self, t: float) -> int:
        return min(self.buckets - 1, math.floor((t % self.period_s) / self.bucket_s))


@dataclass(frozen=True)
class TideBucket:
    cycle: int  # the cycle `peak` belongs to
    peak: float  # the highest demand seen in this bucket during that cycle
    learned: float | None = None  # what the cycles before `cycle` taught
    cycles: int = 0  # how many cycles `learned` holds


@dataclass(frozen=True)
class TideProfile:
    buckets: tuple[TideBucket | None, ...]


def empty_profile(policy: TidePolicy) -> TideProfile:
    return TideProfile((None,) * policy.buckets)


def _fold(bucket: TideBucket, rate: float) -> tuple[float, int]:
    """`learned` with the bucket's cycle folded in: what it teaches the next cycles."""
    if bucket.learned is None:
        return bucket.peak, 1
    return (1.0 - rate) * bucket.learned + rate * bucket.peak, bucket.cycles + 1


def observe(profile: TideProfile, policy: TidePolicy, t: float, demand: float) -> TideProfile:
    """Record one observation of demand at time `t`."""
    if not math.isfinite(demand):
        return profile
    demand = max(0.0, demand)
    cycle, index = policy.cycle_of(t), policy.bucket_of(t)
    if len(profile.buckets) != policy.buckets:
        profile = empty_profile(policy)  # the policy's shape changed: start again
    old = profile.buckets[index]
    if old is None:
        new = TideBucket(cycle, demand)
    elif old.cycle == cycle:
        new = replace(old, peak=max(old.peak, demand))
    elif cycle - old.cycle > policy.forget_after_cycles:
        new = TideBucket(cycle, demand)  # what it knew is too old to teach anything
    elif old.cycle < cycle:
        learned, cycles = _fold(old, policy.learning_rate)
        new = TideBucket(cycle, demand, learned, cycles)
    else:  # a late observation from a cycle already left
        return profile
    buckets = list(profile.buckets)
    buckets[index] = new
    return TideProfile(tuple(buckets))


def taught(bucket: TideBucket | None, cycle: int, policy: TidePolicy) -> float | None:
    """What the cycles before `cycle` expect of this bucket; None when they have not
    seen it, or saw it longer ago than the policy remembers."""
    if bucket is None:
        return None
    if bucket.cycle < cycle:
        if cycle - bucket.cycle > policy.forget_after_cycles:
            return None
        return _fold(bucket, policy.learning_rate)[0]
    if bucket.cycle == cycle:
        return bucket.learned
    return None


def expected_between(
    profile: TideProfile, policy: TidePolicy, t0: float, t1: float
) -> tuple[float, float] | None:
    """(lowest, highest) the profile expects over [t0, t1]; None unless earlier cycles
    taught every bucket of that span."""
    if len(profile.buckets) != policy.buckets:
        return None
    step = policy.bucket_s
    count = max(1, math.ceil((t1 - t0) / step) + 1)
    values: list[float] = []
    for i in range(count):
        t = min(t1, t0 + i * step)
        value = taught(profile.buckets[policy.bucket_of(t)], policy.cycle_of(t), policy)
        if value is None:
            return None
        values.append(value)
    return min(values), max(values)


@dataclass(frozen=True)
class TideReading:
    """What the profile says at `now`: the peak it expects until a replica asked for
    now is ready, and whether the observation agrees with it."""

    ahead: float  # the highest demand expected over [now, now + lead]
    low: float  # what it held for the last moments (the observation's window)
    high: float
    observed: float
    agrees: bool

    def describe(self) -> str:
        verdict = "agrees" if self.agrees else "departs"
        return (
            f"tide profile expects {self.ahead:.4g} ahead; observed {self.observed:.4g} "
            f"{verdict} with its {self.low:.4g}-{self.high:.4g} of the last moments"
        )


def read_tide(
    profile: TideProfile,
    policy: TidePolicy,
    now: float,
    lead_s: float,
    observed: float,
    observed_window_s: float,
    slack: float,
) -> TideReading | None:
    """The profile's reading, or None where it has not learned the coming span.

    `observed` is the recent demand (over `observed_window_s`); `slack` an absolute
    allowance (one replica's worth) so a near-empty profile is not refuted by a request.
    """
    # The last moments of this cycle only: those of the one before taught nothing yet.
    since = max(now - observed_window_s, policy.cycle_of(now) * policy.period_s)
    recent = expected_between(profile, policy, since, now)
    ahead = expected_between(profile, policy, now, now + max(0.0, lead_s))
    if recent is None or ahead is None:
        return None
    low, high = recent
    lowest = low * (1.0 - policy.tolerance) - slack
    highest = high * (1.0 + policy.tolerance) + slack
    agrees = lowest <= observed <= highest
    return TideReading(ahead[1], low, high, observed, agrees)
