"""Play a precursor trace through the real risk score and count what it foresaw.

Each GPU is sampled every `RiskPolicy.sample_every_s` and scored on the window kept,
as the node agent does. Only the polls whose window holds a trace episode are scored:
a window of identical quiet readings scores 0 (nothing grows, nothing is hot, no XID,
no gap), which `quiet_scores_zero` checks through the same engine.

An alarm is a GPU going at risk (a score at or above the threshold after one below).
It is true when the GPU faults within `horizon_s` after it, false otherwise. A fault
is foreseen when an alarm came within `horizon_s` before it; its lead time is from the
first such alarm to the fault.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from egpu.engines.health.risk import RiskPolicy, risk_of
from egpu.engines.health.samples import EccCounts, GpuSample, XidEvent
from egpu.sim.precursors import QUIET_C, Episode, Fault, Kind, PrecursorTrace


def _share(e: Episode, t: float) -> int:
    if t < e.start_s:
        return 0
    if t >= e.end_s or e.end_s <= e.start_s:
        return e.amount
    return math.floor(e.amount * (t - e.start_s) / (e.end_s - e.start_s))


def _xid_times(e: Episode) -> list[float]:
    if e.amount <= 1:
        return [e.start_s] * e.amount
    step = (e.end_s - e.start_s) / (e.amount - 1)
    return [e.start_s + k * step for k in range(e.amount)]


def sample_at(episodes: Sequence[Episode], gpu: int, t: float, since: float) -> GpuSample | None:
    """The GPU's reading at `t` (XIDs after `since`), or None within a gap."""
    sbe = remap = 0
    hot = False
    xids: list[XidEvent] = []
    for e in episodes:
        if e.kind is Kind.GAP and e.start_s <= t < e.end_s:
            return None
        if e.kind is Kind.SBE:
            sbe += _share(e, t)
        elif e.kind is Kind.REMAP:
            remap += _share(e, t)
        elif e.kind is Kind.HOT:
            hot = hot or e.start_s <= t <= e.end_s
        elif e.kind is Kind.XID:
            xids.extend(XidEvent(e.xid, x) for x in _xid_times(e) if since < x <= t)
    return GpuSample(
        gpu,
        timestamp=t,
        temperature_c=87 if hot else QUIET_C,
        ecc_volatile=EccCounts(corrected=sbe, uncorrected=0),
        remapped_correctable=remap,
        nvlink_crc=0,
        nvlink_replay=0,
        xids=tuple(xids),
    )


def quiet_scores_zero(policy: RiskPolicy) -> bool:
    n = int(policy.window_s // policy.sample_every_s) + 1
    quiet = [
        sample_at((), 0, k * policy.sample_every_s, (k - 1) * policy.sample_every_s)
        for k in range(n)
    ]
    return risk_of([s for s in quiet if s], policy, (n - 1) * policy.sample_every_s).score == 0


def _spans(episodes: Sequence[Episode], window_s: float) -> list[tuple[float, float]]:
    """The stretches of time whose windows hold an episode, merged."""
    out: list[tuple[float, float]] = []
    for e in sorted(episodes, key=lambda e: e.start_s):
        lo, hi = e.start_s, e.end_s + window_s
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def alarms_of(
    episodes: Sequence[Episode], gpu: int, policy: RiskPolicy, end_s: float
) -> tuple[list[float], int]:
    """The times one GPU went at risk, and how many polls were scored."""
    every = policy.sample_every_s
    phase = (gpu * 7.0) % every  # every node polls on its own clock
    alarms: list[float] = []
    scored = 0
    for lo, hi in _spans(episodes, policy.window_s):
        first = math.floor((lo - policy.window_s - phase) / every)
        last = math.ceil((min(hi, end_s) - phase) / every)
        kept: list[GpuSample] = []
        was = False
        for k in range(max(first, 0), last + 1):
            t = phase + k * every
            s = sample_at(episodes, gpu, t, t - every)
            if s is None:
                continue
            kept.append(s)
            while kept and t - kept[0].timestamp > policy.window_s:
                kept.pop(0)
            if t < lo:
                continue
            scored += 1
            now = risk_of(kept, policy, t).at_risk(policy)
            if now and not was:
                alarms.append(t)
            was = now
    return alarms, scored


@dataclass(frozen=True, slots=True)
class Outcome:
    alarms: int
    true_alarms: int
    faults: int
    foreseen: int
    leads_s: tuple[float, ...]
    gpu_days: float
    scored_polls: int = 0

    @property
    def false_alarms(self) -> int:
        return self.alarms - self.true_alarms

    @property
    def precision(self) -> float | None:
        return self.true_alarms / self.alarms if self.alarms else None

    @property
    def recall(self) -> float | None:
        return self.foreseen / self.faults if self.faults else None

    @property
    def false_per_1000_gpu_days(self) -> float:
        return 1000 * self.false_alarms / self.gpu_days

    def lead_quantile(self, q: float) -> float | None:
        if not self.leads_s:
            return None
        if len(self.leads_s) == 1:
            return self.leads_s[0]
        cuts = statistics.quantiles(self.leads_s, n=100, method="inclusive")
        return cuts[max(0, min(98, round(q * 100) - 1))]


def count(
    alarms: dict[int, list[float]], faults: Iterable[Fault], horizon_s: float, gpu_days: float
) -> Outcome:
    """Tally alarms against faults (see the module docstring)."""
    by_gpu: dict[int, list[float]] = {}
    fault_list = list(faults)
    for f in fault_list:
        by_gpu.setdefault(f.gpu, []).append(f.at_s)
    for times in by_gpu.values():
        times.sort()
    true = 0
    n = 0
    for gpu, times in alarms.items():
        fts = by_gpu.get(gpu, [])
        for a in times:
            n += 1
            i = bisect.bisect_right(fts, a)
            true += i < len(fts) and fts[i] - a <= horizon_s
    leads: list[float] = []
    for f in fault_list:
        before = [a for a in alarms.get(f.gpu, []) if f.at_s - horizon_s <= a < f.at_s]
        if before:
            leads.append(f.at_s - before[0])
    return Outcome(n, true, len(fault_list), len(leads), tuple(sorted(leads)), gpu_days)


def evaluate(trace: PrecursorTrace, policy: RiskPolicy, horizon_s: float) -> Outcome:
    """Score every GPU of the trace and tally the alarms against its faults."""
    by_gpu: dict[int, list[Episode]] = {}
    for e in trace.episodes:
        by_gpu.setdefault(e.gpu, []).append(e)
    end = trace.days * 86400.0
    alarms: dict[int, list[float]] = {}
    scored = 0
    for gpu, eps in by_gpu.items():
        alarms[gpu], n = alarms_of(eps, gpu, policy, end)
        scored += n
    out = count(alarms, trace.faults, horizon_s, trace.gpu_days)
    return Outcome(
        out.alarms, out.true_alarms, out.faults, out.foreseen, out.leads_s, out.gpu_days, scored
    )
