"""Leader election over a coordination.k8s.io Lease: the rules, pure.

As client-go's elector does: a standby takes the Lease only once it has watched the
same record stay unrenewed for a whole lease duration by its own clock (so clocks of
different machines never have to agree); the holder renews it every retry period and
stops leading once it could not renew within the renew deadline, which is shorter than
the lease duration, so it has stopped before anyone else may take over.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeaseTimings:
    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError(
                "lease timings must satisfy 0 < retry period < renew deadline < lease duration"
                f" (got {self.retry_s}s, {self.renew_deadline_s}s, {self.duration_s}s)"
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The parts of a Lease's spec that election reads."""

    holder: str | None
    renew_time: str | None
    duration_s: float | None
    transitions: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    """The record as this replica last saw it change, and when (its own monotonic clock)."""

    record: LeaseRecord | None
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord | None, now: float) -> Observation:
    """Keep the old timestamp while the record is unchanged."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def may_take(observed: Observation, me: str, timings: LeaseTimings, now: float) -> bool:
    """Whether this replica may write itself in as the holder now."""
    record = observed.record
    if record is None or not record.holder or record.holder == me:
        return True
    duration = record.duration_s or timings.duration_s
    return now - observed.seen_at >= duration


def still_leading(last_renewed: float, timings: LeaseTimings, now: float) -> bool:
    """The holder leads as long as its last successful renewal is recent enough."""
    return now - last_renewed < timings.renew_deadline_s
