"""Time-of-day replica floors for known tidal load."""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Iterable

from egpu.engines.autoscaling.model import ScheduleEntry


def local_time(now: float, timezone: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(timezone))


def seconds_of_day(moment: datetime.datetime) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


def entry_active(entry: ScheduleEntry, weekday: int, second_of_day: int) -> bool:
    """Whether the range covers this local moment.

    A range that wraps past midnight (end < start; end == start is 24 hours) belongs
    to the day it starts on, so its early-morning part checks yesterday's weekday.
    """
    days = entry.weekdays
    if entry.start_s < entry.end_s:
        return entry.start_s <= second_of_day < entry.end_s and (days is None or weekday in days)
    if second_of_day >= entry.start_s:
        return days is None or weekday in days
    if second_of_day < entry.end_s:
        return days is None or (weekday - 1) % 7 in days
    return False


def schedule_floor(entries: Iterable[ScheduleEntry], now: float, timezone: str) -> int:
    """Highest floor among the entries active now (0 when none is)."""
    moment = local_time(now, timezone)
    weekday, second = moment.weekday(), seconds_of_day(moment)
    return max(
        (e.min_replicas for e in entries if entry_active(e, weekday, second)),
        default=0,
    )
