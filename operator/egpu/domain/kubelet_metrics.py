"""The kubelet's resource metrics (`/metrics/resource`, Prometheus text format), read
into per-container CPU counters and memory working sets, and CPU use from two
readings of a counter.

Only the two series the resize loop needs are read:

    container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 12.5 1764745200123
    container_memory_working_set_bytes{container="c",namespace="ns",pod="p"} 1.0e+06 1764745200123

The trailing number is the time of the kubelet's stats, in milliseconds; the kubelet
refreshes its stats on its own schedule, so two scrapes can carry the same reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CPU_SERIES = "container_cpu_usage_seconds_total"
MEMORY_SERIES = "container_memory_working_set_bytes"

ContainerKey = tuple[str, str, str]
"""(namespace, pod name, container name)."""

_LINE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)(?:\s+(?P<ts>-?\d+))?\s*$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """One container's series of one scrape; None where the scrape had no such line.
    `at` is the stats time in seconds (None when the lines carried no timestamp)."""

    cpu_seconds: float | None
    memory_bytes: float | None
    at: float | None


def _labels(text: str) -> dict[str, str]:
    return {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(text)}


def parse_resource_metrics(text: str) -> dict[ContainerKey, ContainerReading]:
    """The containers' readings in one scrape. Lines that do not parse, other series
    and series without the three labels are skipped: a kubelet of another version may
    add series or labels, and one odd line must not hide the others."""
    cpu: dict[ContainerKey, tuple[float, float | None]] = {}
    memory: dict[ContainerKey, tuple[float, float | None]] = {}
    for line in text.splitlines():
        if not line.startswith((CPU_SERIES, MEMORY_SERIES)):
            continue
        match = _LINE.match(line)
        if match is None or match["name"] not in (CPU_SERIES, MEMORY_SERIES):
            continue
        labels = _labels(match["labels"])
        try:
            key = (labels["namespace"], labels["pod"], labels["container"])
            value = float(match["value"])
        except (KeyError, ValueError):
            continue
        if value != value or value < 0:  # NaN or nonsense
            continue
        at = int(match["ts"]) / 1000 if match["ts"] else None
        (cpu if match["name"] == CPU_SERIES else memory)[key] = (value, at)
    out: dict[ContainerKey, ContainerReading] = {}
    for key in cpu.keys() | memory.keys():
        c, m = cpu.get(key), memory.get(key)
        stamps = [s for s in (c and c[1], m and m[1]) if s is not None]
        out[key] = ContainerReading(
            cpu_seconds=c[0] if c else None,
            memory_bytes=m[0] if m else None,
            at=max(stamps) if stamps else None,
        )
    return out


@dataclass(frozen=True, slots=True)
class CpuCounter:
    seconds: float  # core-seconds used since the container started
    at: float  # when the kubelet read it, in seconds


def cpu_millicores(previous: CpuCounter | None, current: CpuCounter) -> float | None:
    """Mean CPU use between two readings of one container's counter, in millicores.
    None when it cannot be known: no earlier reading, the same reading again, or a
    counter that went back (the container restarted)."""
    if previous is None or current.at <= previous.at or current.seconds < previous.seconds:
        return None
    return (current.seconds - previous.seconds) / (current.at - previous.at) * 1000
