"""Unschedulable gangs wait ("park") until capacity comes back or their backoff ends,
so thousands of waiting gangs do not cost thousands of decisions per cycle."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

PARK_MIN_SECONDS = 1.0
PARK_MAX_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Parked:
    epoch: int
    retry_at: float
    backoff: float


class Parking:
    """Backoff doubles from `min_s` to `max_s` per gang; any capacity change (a node
    changes, a pod goes) lets every parked gang try again at once."""

    def __init__(self, min_s: float = PARK_MIN_SECONDS, max_s: float = PARK_MAX_SECONDS) -> None:
        self.min_s, self.max_s = min_s, max_s
        self.epoch = 0
        self._parked: dict[str, _Parked] = {}

    def capacity_changed(self) -> None:
        self.epoch += 1

    def parked(self, gang_id: str, now: float) -> bool:
        entry = self._parked.get(gang_id)
        return entry is not None and entry.epoch == self.epoch and now < entry.retry_at

    def park(self, gang_id: str, now: float) -> float:
        """Park the gang; returns how long until it tries again without a change."""
        entry = self._parked.get(gang_id)
        backoff = self.min_s if entry is None else min(entry.backoff * 2, self.max_s)
        self._parked[gang_id] = _Parked(self.epoch, now + backoff, backoff)
        return backoff

    def release(self, gang_id: str) -> None:
        self._parked.pop(gang_id, None)

    def keep_only(self, live: Container[str]) -> None:
        """Forget gangs that no longer wait (bounded memory)."""
        self._parked = {g: p for g, p in self._parked.items() if g in live}

    def __len__(self) -> int:
        return len(self._parked)
